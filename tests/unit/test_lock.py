"""One lock (uv.lock) for every environment: the tests run what it pins, every file it names has
a hash, and the Lambda layers carry the same versions (tools/layer_pins.py)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import layer_pins  # noqa: E402

unlocked = pytest.mark.skipif(
    os.environ.get("AVSEV_UNLOCKED") == "1",
    reason="make deps-latest runs the suite on the newest releases, not the lock, on purpose",
)


def test_the_layers_pin_what_the_lock_pins():
    assert layer_pins.disagreements() == []


def test_a_layer_pin_that_drifts_from_the_lock_is_named(tmp_path):
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    for req in (ROOT / "layers").glob("*/requirements.txt"):
        (tmp_path / "layers" / req.parent.name).mkdir(parents=True)
        shutil.copy(req, tmp_path / "layers" / req.parent.name / "requirements.txt")
    analysis = tmp_path / "layers/analysis/requirements.txt"
    analysis.write_text(analysis.read_text().replace("numpy==", "numpy==1.0.0.dev0+"))
    (problem,) = layer_pins.disagreements(tmp_path)
    assert problem.startswith("layers/analysis/requirements.txt:") and "numpy==1.0.0" in problem

    assert layer_pins.write(tmp_path) == 1  # `make lock` puts it back
    assert layer_pins.disagreements(tmp_path) == []


@unlocked
def test_the_sdk_the_jobs_ship_is_the_one_the_tests_run():
    pins = {name: version for _, _, name, version in layer_pins.layer_pins()}
    for package in ("boto3", "botocore", "s3transfer"):
        assert pins[package] == importlib.metadata.version(package), package


@unlocked
def test_the_environment_is_the_lock():
    """Every installed package the lock knows is at a version the lock holds: `make` built this
    environment with `uv sync --locked`, not from the ranges in pyproject.toml."""
    locked = layer_pins.locked_versions()
    installed = {
        layer_pins.canonical(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
    }
    off = {n: (v, sorted(locked[n])) for n, v in installed.items() if n in locked and v not in locked[n]}
    assert off == {}
    for key in ("xgboost-cpu", "treelite", "tl2cgen", "boto3", "moto", "duckdb", "pydantic"):
        assert key in installed and key in locked, key


def test_every_locked_file_has_a_hash():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    unhashed = [
        f"{p['name']} {p.get('version')}: {f.get('url', f.get('path'))}"
        for p in lock["package"]
        for f in [*p.get("wheels", []), *([p["sdist"]] if "sdist" in p else [])]
        if not f.get("hash", "").startswith("sha256:")
    ]
    assert unhashed == []
    assert sum(len(p.get("wheels", [])) for p in lock["package"]) > 100
