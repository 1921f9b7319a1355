"""`make model` is safe to repeat: with the same data and version there is nothing to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def make(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    overrides = [
        f"DATA={tmp / 'data.csv'}",
        f"MODEL_DIR={tmp / 'train'}",
        f"BUILD_ROOT={tmp / 'build'}",
        f"STAMP={tmp / 'stamp'}",
        f"VENV={tmp / 'venv'}",
        "ARCH=x86_64",
        "VERSION=1.0.0",
    ]
    return subprocess.run(
        ["make", "-C", str(ROOT), *args, *overrides], capture_output=True, text=True, check=False
    )


def touch(path: Path, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (when, when))


def test_model_targets_are_up_to_date_when_nothing_changed(tmp_path):
    card = tmp_path / "build/x86_64/avsev-severity-1.0.0/card.json"
    touch(tmp_path / "stamp", 4e9)  # newer than pyproject.toml: installed
    touch(tmp_path / "data.csv", 1000)
    touch(tmp_path / "train/model.json", 2000)
    touch(card, 3000)
    assert make(tmp_path, "-q", str(card)).returncode == 0  # nothing to do

    touch(tmp_path / "data.csv", 4000)  # new data: retrain, then refuse to overwrite 1.0.0
    dry = make(tmp_path, "-n", str(card))
    assert "avsev train --data" in dry.stdout and "versions are immutable" in dry.stdout


def test_the_default_data_is_the_shipped_file():
    out = subprocess.run(
        ["make", "-C", str(ROOT), "-pn", "help"], capture_output=True, text=True, check=False
    ).stdout
    assert "DATA ?= data/ntsb_us_airplane_accidents.csv.xz" in out or (
        "DATA := data/ntsb_us_airplane_accidents.csv.xz" in out
        or "DATA = data/ntsb_us_airplane_accidents.csv.xz" in out
    )
    assert (ROOT / "data/ntsb_us_airplane_accidents.csv.xz").is_file()
