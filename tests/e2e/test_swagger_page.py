"""The Swagger UI page of the local stack works offline: headless Chromium (Debian's
`chromium`, installed by `make sysdeps`), with every host but loopback unreachable, draws
the page and lists every operation. A screenshot is kept in demo-output/swagger.png."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from avsev.serving.routes import ROUTES
from browser import CHROMIUM, chromium
from stack_support import serving

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")


@pytest.fixture(scope="module")
def stack(real_bundle_dir):
    yield from serving(real_bundle_dir)


def test_the_page_loads_nothing_from_elsewhere(stack):
    with urllib.request.urlopen(f"{stack.base_url}/docs", timeout=30) as page:
        html = page.read().decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    for source in sources:
        with urllib.request.urlopen(f"{stack.base_url}{source}", timeout=30) as asset:
            assert asset.status == 200 and len(asset.read()) > 1000


def test_chromium_draws_every_operation(stack, tmp_path):
    dom = chromium(
        f"{stack.base_url}/docs", tmp_path / "profile1", "--dump-dom", budget_ms=15000, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom.stdout))
    assert drawn == {path for path, _, _ in ROUTES}, dom.stdout[:2000]
    assert "Aviation accident severity API" in dom.stdout

    shot = ROOT / "demo-output" / "swagger.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    out = chromium(
        f"{stack.base_url}/docs",
        tmp_path / "profile2",
        f"--screenshot={shot}",
        "--window-size=1280,1600",
        budget_ms=15000,
        timeout=120,
    )
    assert out.returncode == 0 and shot.stat().st_size > 20_000, out.stderr[-2000:]
