"""Headless Chromium (Debian's `chromium`, installed by `make sysdeps`) for the pages a person
looks at, offline: every host but loopback fails to resolve, so a CDN asset would not load."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(
    url: str, profile: Path, *mode: str, budget_ms: int = 8000, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    """Open `url` in a fresh profile and run `mode` (`--dump-dom`, `--screenshot=...`)."""
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
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={budget_ms}",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
