"""The Swagger UI page of the local stack works offline: headless Chromium (Debian's
`chromium`, installed by `make sysdeps`), with every host but loopback unreachable, draws
the page and lists every operation. A screenshot is kept in demo-output/swagger.png."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from avsev.serving.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")


@pytest.fixture(scope="module")
def stack(real_bundle_dir):
    from avsev.local.stack import LocalStack

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        with LocalStack([real_bundle_dir]) as s:
            yield s


def chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            # offline: any host but loopback fails to resolve (a CDN asset would not load)
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_page_loads_nothing_from_elsewhere(stack):
    with urllib.request.urlopen(f"{stack.base_url}/docs", timeout=30) as page:
        html = page.read().decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    for source in sources:
        with urllib.request.urlopen(f"{stack.base_url}{source}", timeout=30) as asset:
            assert asset.status == 200 and len(asset.read()) > 1000


def test_chromium_draws_every_operation(stack, tmp_path):
    dom = chromium(f"{stack.base_url}/docs", tmp_path / "profile1", "--dump-dom")
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
    )
    assert out.returncode == 0 and shot.stat().st_size > 20_000, out.stderr[-2000:]
