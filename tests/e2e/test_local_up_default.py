"""`avsev local up` with no --bundle: the newest bundle built for this machine, or one built
now from the shipped data; it says which."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from avsev.serving.runtime import host_arch
from avsev_tools.commands.local import _local_bundle

AVSEV = Path(sys.executable).parent / "avsev"


def _copy(bundle: Path, to: Path, when: float) -> Path:
    shutil.copytree(bundle, to)
    os.utime(to / "card.json", (when, when))
    return to


def test_the_newest_bundle_for_this_machine_is_taken(real_bundle_dir, tmp_path):
    root = tmp_path / "build"
    _copy(real_bundle_dir, root / host_arch() / "old", 1000)
    newest = _copy(real_bundle_dir, root / host_arch() / "new", 3000)
    foreign = _copy(real_bundle_dir, root / "other" / "newer", 5000)
    card = json.loads((foreign / "card.json").read_text())
    card["arch"] = "arm64" if host_arch() != "arm64" else "x86_64"
    (foreign / "card.json").write_text(json.dumps(card))
    os.utime(foreign / "card.json", (5000, 5000))
    (root / host_arch() / "broken").mkdir()
    (root / host_arch() / "broken" / "card.json").write_text("{not json")

    path, how = _local_bundle(root)
    assert path == newest and "newest of 2 bundle(s)" in how


@pytest.mark.slow
def test_with_nothing_built_one_is_built_from_the_shipped_data(tmp_path):
    path, how = _local_bundle(tmp_path / "model" / "build")
    assert path.parent == tmp_path / "model" / "build" / host_arch()
    assert (path / "card.json").is_file() and (tmp_path / "model" / "train").is_dir()
    assert "built now from" in how and "ntsb_us_airplane_accidents.csv.xz" in how


def test_local_up_without_bundle_says_which_and_serves(real_bundle_dir, tmp_path):
    root = tmp_path / "build"
    chosen = _copy(real_bundle_dir, root / host_arch() / real_bundle_dir.name, 3000)
    env = {**os.environ, "AVSEV_LOCAL_STATE": str(tmp_path / "local.json")}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen(
        [
            str(AVSEV),
            "local",
            "up",
            "--build-root",
            str(root),
            "--port",
            "0",
            "--log",
            str(tmp_path / "fn.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        said = proc.stderr.readline()
        assert said.startswith(f"bundle: {chosen} (the newest of 1 bundle(s) built for"), said
        base = proc.stdout.readline().split(": ", 1)[1].strip()
        key = proc.stdout.readline().split(": ", 1)[1].split()[0]
        request = urllib.request.Request(
            f"{base}/predict",
            data=json.dumps({"ev_id": "UP1"}).encode(),
            headers={"X-Api-Key": key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
