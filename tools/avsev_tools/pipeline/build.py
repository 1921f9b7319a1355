"""Write a model bundle: compile, export trees, write the card, verify, then publish the
directory in one rename (nothing half-written is ever left under its final name)."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from avsev.serving.bundle import (
    LIBRARY_FILE,
    SEMVER,
    TREES_FILE,
    Bundle,
    load_bundle,
    sha256_file,
    write_card,
)
from avsev.serving.card import Card
from avsev.serving.features import FeatureSpec
from avsev.serving.runtime import ABI_VERSION, host_arch
from avsev.serving.schema import AccidentReport

from avsev_tools.pipeline.compile import DEFAULT_CFLAGS, compile_model, crosscheck
from avsev_tools.pipeline.train import load_trained, matrix

DEFAULT_NAME = "avsev-severity"
GOLDEN_TOLERANCE = 1e-5


class BuildError(Exception):
    """The bundle cannot be built as asked (nothing was written)."""


def bundle_dir(out_root: Path, name: str, version: str) -> Path:
    return out_root / f"{name}-{version}"


def build_bundle(
    model_dir: str | Path,
    version: str,
    *,
    out_root: str | Path = "layers/model/build",
    arch: str = "arm64",
    name: str = DEFAULT_NAME,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    parallel_comp: int = 0,
    verify_arch: bool = True,
) -> Path:
    """Build `<out_root>/<name>-<version>/` from a trained model directory."""
    if not SEMVER.match(version):
        raise BuildError(
            f"version {version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)"
        )
    out_root = Path(out_root)
    final = bundle_dir(out_root, name, version)
    if final.exists():
        raise BuildError(f"{final} already exists: versions are immutable, choose a new version")
    booster, training = load_trained(model_dir)
    spec = FeatureSpec.from_dict(training["feature_spec"])
    if booster.num_features() != len(spec) or (
        booster.feature_names is not None and list(booster.feature_names) != spec.names
    ):
        raise BuildError(
            f"{model_dir}: the model's features {booster.feature_names or booster.num_features()} "
            f"do not match its feature spec {spec.names}"
        )
    for g in training["golden"]:
        AccidentReport.model_validate({"ev_id": "golden", **g["request"]})

    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=out_root))
    try:
        facts = compile_model(
            Path(model_dir) / "model.json",
            staging,
            arch,
            cflags=cflags,
            parallel_comp=parallel_comp,
        )
        files = {f: sha256_file(staging / f) for f in (LIBRARY_FILE, TREES_FILE)}
        write_card(staging, _card(training, name=name, version=version, facts=facts, files=files))
        _verify(staging, training, spec, arch, verify_arch=verify_arch)
        staging.chmod(0o755)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _card(
    training: dict[str, Any],
    *,
    name: str,
    version: str,
    facts: dict[str, Any],
    files: dict[str, str],
) -> Card:
    """The bundle's card from the training output and the compiler's facts; raises CardError
    naming the field when the training output lacks or garbles one."""
    doc = {
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "arch": facts["arch"],
        "runtime_abi": ABI_VERSION,
        "classes": training["classes"],
        "feature_spec": training["feature_spec"],
        "model": {
            "kind": "xgboost multi:softprob, compiled with treelite + tl2cgen",
            "n_trees": facts["n_trees"],
            "max_depth": facts["max_depth"],
            "best_iteration": training["best_iteration"],
            "params": training["params"],
            "balanced": training.get("balanced", False),
            "compiler": facts["compiler"],
            "cflags": facts["cflags"],
            "evaluator": facts["evaluator"],
        },
        "metrics": training["metrics"],
        "importance": training.get("importance"),
        "calibration": training.get("calibration"),
        "data": training["data"],
        "split": training["split"],
        "reference_profile": training["reference_profile"],
        "prediction_mix": training["prediction_mix"],
        "golden": training["golden"],
        "files": files,
    }
    return Card.from_dict(doc)


def _verify(
    staging: Path, training: dict[str, Any], spec: FeatureSpec, arch: str, *, verify_arch: bool
) -> None:
    """The compiled library must reproduce the golden probabilities (XGBoost's)."""
    golden_rows = [_as_fields(g["request"]) for g in training["golden"]]
    expected = np.array([g["probabilities"] for g in training["golden"]])
    if arch == host_arch():
        worst = golden_difference(load_bundle(staging), training["golden"])
    elif verify_arch:
        got = crosscheck(staging / LIBRARY_FILE, matrix(spec, golden_rows), arch)
        worst = float(np.abs(got - expected).max())
    else:
        return
    if not worst <= GOLDEN_TOLERANCE:  # NaN (a library that gives NaN) fails too
        raise BuildError(f"compiled model differs from XGBoost on golden rows by {worst:.2e}")


def golden_difference(bundle: Bundle, golden: Sequence[Mapping[str, Any]]) -> float:
    """The largest |compiled − XGBoost| probability on the golden rows (requests and the
    probabilities XGBoost gave them at training); infinite when there are none."""
    if not golden:
        return math.inf
    rows = [_as_fields(g["request"]) for g in golden]
    expected = np.array([g["probabilities"] for g in golden], dtype=float)
    got = np.array(bundle.model.predict_many(bundle.spec.encode_many(rows)), dtype=float)
    return float(np.abs(got - expected).max())


def _as_fields(request: dict[str, Any]) -> dict[str, Any]:
    return AccidentReport.model_validate({"ev_id": "golden", **request}).fields()
