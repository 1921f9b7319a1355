"""Compiling bundles and the ctypes runtime: parity with XGBoost, checks, errors."""

from __future__ import annotations

import copy
import ctypes
import json
import shutil

import numpy as np
import pytest
import xgboost as xgb
from avsev.monitoring.profile import SAMPLE_SIZE
from avsev.serving.bundle import BundleError, load_bundle, sha256_file
from avsev.serving.runtime import elf_arch, host_arch
from avsev_tools.pipeline.build import BuildError, build_bundle
from avsev_tools.pipeline.compile import crosscheck
from avsev_tools.pipeline.train import matrix
from conftest import have


def booster(model_dir) -> xgb.Booster:
    b = xgb.Booster()
    b.load_model(model_dir / "model.json")
    return b


@pytest.fixture(scope="module")
def real_rows(real_data, real_bundle):
    rows = real_data.reports()[-4000:]
    return matrix(real_bundle.spec, rows)


def test_runtime_matches_xgboost_on_real_rows_with_missing_values(
    real_bundle, real_model_dir, real_rows
):
    assert np.isnan(real_rows).any()
    expected = booster(real_model_dir).predict(
        xgb.DMatrix(real_rows, feature_names=real_bundle.spec.names)
    )
    got_batch = np.array(real_bundle.model.predict_many(real_rows.tolist()))
    got_single = np.array([real_bundle.model.predict(r) for r in real_rows[:300].tolist()])
    assert np.abs(got_batch - expected).max() < 1e-5
    assert np.abs(got_single - expected[:300]).max() < 1e-5
    assert np.allclose(got_batch.sum(axis=1), 1.0, atol=1e-5)


def test_runtime_matches_tl2cgen_predictor(real_bundle, real_model_dir, real_rows, tmp_path):
    import tl2cgen
    import treelite

    model = treelite.frontend.load_xgboost_model(str(real_model_dir / "model.json"))
    lib = tmp_path / "ref.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), params={})
    pred = tl2cgen.Predictor(str(lib), nthread=1)
    expected = pred.predict(tl2cgen.DMatrix(real_rows[:500], missing=np.nan)).reshape(500, -1)
    got = np.array(real_bundle.model.predict_many(real_rows[:500].tolist()))
    assert np.abs(got - expected).max() < 1e-6


def test_branch_free_evaluator_matches_xgboost_on_real_rows_with_missing_values(
    real_bundle, real_model_dir, real_rows
):
    # Given real rows with missing values, scored by XGBoost itself
    assert np.isnan(real_rows).any()
    b = booster(real_model_dir)
    expected = b.predict(xgb.DMatrix(real_rows, feature_names=real_bundle.spec.names))
    margins = b.predict(
        xgb.DMatrix(real_rows, feature_names=real_bundle.spec.names), output_margin=True
    )
    model = real_bundle.model
    assert "branch_free" in model.evaluators and "tl2cgen" in model.evaluators
    x = np.ascontiguousarray(real_rows, dtype=np.float32)

    def score(evaluator: str, rows: np.ndarray, **kw) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        out = model.predict_buffer(rows.reshape(-1), len(rows), evaluator=evaluator, **kw)
        return np.frombuffer(out, dtype=np.float32).reshape(len(rows), -1)

    # Then both evaluators give XGBoost's probabilities and margins (1e-6)
    for evaluator in ("branch_free", "tl2cgen", "auto"):
        assert np.abs(score(evaluator, x) - expected).max() <= 1e-6, evaluator
        assert np.abs(score(evaluator, x, margin=True) - margins).max() <= 1e-5, evaluator
    # And the branch-free evaluator gives the same answer whatever the call's shape: single
    # rows, partial blocks, two threads
    whole = score("branch_free", x)
    for size in (1, 3, 8, 63, 64, 65, 1000):
        assert np.array_equal(score("branch_free", x[:size]), whole[:size]), size
    assert np.array_equal(score("branch_free", x, threads=2), whole)
    single = np.array([model.predict(r) for r in real_rows[:200].tolist()])
    assert np.array_equal(single.astype(np.float32), whole[:200])


def test_rounded_answers_equal_python_round(real_bundle, real_rows):
    model = real_bundle.model
    # ties (j/128 for odd j is exactly half way at 6 decimals), tiny values, real outputs
    ties = [j / 128 for j in range(1, 128, 2)]
    real = np.frombuffer(
        model.predict_buffer(
            np.ascontiguousarray(real_rows, dtype=np.float32).reshape(-1), len(real_rows)
        ),
        dtype=np.float32,
    ).tolist()
    values = [*ties, 0.0, 1.0, 5e-7, 4.9999997e-07, 1.5e-6, 0.9999995, *real]
    values += [0.0] * (-len(values) % model.n_class)
    buf = (ctypes.c_float * len(values))(*values)
    rounded, best = model.decide(buf, len(values) // model.n_class, digits=6)
    as_float32 = [float(np.float32(v)) for v in values]
    assert rounded == [round(v, 6) for v in as_float32]
    rows = [as_float32[i : i + model.n_class] for i in range(0, len(values), model.n_class)]
    assert best == [max(range(len(r)), key=r.__getitem__) for r in rows]
    # and a library from before avsev_round_rows gets the same from the Python fallback
    older = copy.copy(model)
    older.lib = object()
    assert older.decide(buf, len(rows), digits=6) == (rounded, best)


def test_models_outside_the_branch_free_evaluator_fall_back_to_tl2cgen(real_model_dir, tmp_path):
    from avsev_tools.pipeline.compile import FOREST_FILE, compile_library, generate_forest

    # Given a model with another objective (categorical splits are in: test_categorical_splits)
    doc = json.loads((real_model_dir / "model.json").read_text())
    doc["learner"]["objective"]["name"] = "multi:softmax"
    other = tmp_path / "softmax.json"
    other.write_text(json.dumps(doc))
    source, why = generate_forest(other)
    assert "multi:softmax" in why
    # or trees deeper than the evaluator takes (every node is computed for every row)
    from avsev_tools.pipeline.compile import FOREST_MAX_DEPTH, _depth

    doc = json.loads((real_model_dir / "model.json").read_text())
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    assert max(_depth(t) for t in trees) <= FOREST_MAX_DEPTH  # the default model is in
    tree = trees[0]
    leaf = next(i for i, c in enumerate(tree["left_children"]) if c == -1)
    for _ in range(FOREST_MAX_DEPTH):  # hang a chain of splits under one leaf
        n = len(tree["left_children"])
        tree["left_children"][leaf], tree["right_children"][leaf] = n, n + 1
        for key, value in (("left_children", -1), ("right_children", -1)):
            tree[key] += [value, value]
        for key in tree:
            if isinstance(tree[key], list) and len(tree[key]) == n:
                tree[key] += [tree[key][leaf], tree[key][leaf]]
        leaf = n
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps(doc))
    assert generate_forest(deep)[1] == f"trees deeper than {FOREST_MAX_DEPTH}"
    # Then its evaluator is a stub that says so (avsev_predict_rows then takes tl2cgen's)
    (tmp_path / FOREST_FILE).write_text(source)
    lib = compile_library([tmp_path / FOREST_FILE], tmp_path / "stub.so", host_arch())
    stub = ctypes.CDLL(str(lib))
    assert stub.avsev_forest_available() == 0
    assert stub.avsev_forest_rows(None, 0, 0, 0, None) == -2


def test_card_describes_the_bundle(real_bundle_dir, real_bundle):
    card = json.loads((real_bundle_dir / "card.json").read_text())
    assert card["version"] == "1.0.0" and card["arch"] == host_arch()
    assert card["classes"] == ["Fatal", "Serious", "Minor", "None"]
    for name, digest in card["files"].items():
        assert sha256_file(real_bundle_dir / name) == digest
    assert card["metrics"]["test"]["weighted_f1"] > 0.4
    profile = card["reference_profile"]["fields"]
    assert "dec_latitude" in profile and "make" in profile and "event_date" not in profile
    assert len(profile["dec_latitude"]["sample"]) == min(SAMPLE_SIZE, profile["dec_latitude"]["n"])
    assert card["golden"] and len(card["golden"][0]["probabilities"]) == 4
    # the golden rows reproduce through the runtime
    for g in card["golden"]:
        from avsev.serving.schema import AccidentReport

        fields = AccidentReport.model_validate({"ev_id": "g", **g["request"]}).fields()
        got = real_bundle.model.predict(real_bundle.spec.encode(fields))
        assert np.abs(np.array(got) - g["probabilities"]).max() < 1e-5


def test_bad_semver_and_existing_version_leave_nothing(real_model_dir, real_bundle_dir):
    root = real_bundle_dir.parent
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(BuildError, match="semantic version"):
        build_bundle(real_model_dir, "1.0", out_root=root, arch=host_arch())
    with pytest.raises(BuildError, match="already exists"):
        build_bundle(real_model_dir, "1.0.0", out_root=root, arch=host_arch())
    assert sorted(p.name for p in root.iterdir()) == before


def test_model_whose_features_do_not_match_its_spec_is_refused(real_model_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(real_model_dir, broken)
    doc = json.loads((broken / "training.json").read_text())
    doc["feature_spec"]["features"] = doc["feature_spec"]["features"][:-1]
    (broken / "training.json").write_text(json.dumps(doc))
    with pytest.raises(BuildError, match="do not match"):
        build_bundle(broken, "2.0.0", out_root=tmp_path / "out", arch=host_arch())
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_missing_and_foreign_libraries_are_clear_errors(bundle_copy):
    (bundle_copy / "model.so").write_bytes(b"\x7fELF garbage")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match=r"ELF|cannot load"):
        load_bundle(bundle_copy, verify=False)
    (bundle_copy / "model.so").unlink()
    with pytest.raises(BundleError, match=r"model\.so: missing"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(bundle_copy / "nope")


@pytest.mark.skipif(
    not (have("aarch64-linux-gnu-gcc") and have("qemu-aarch64")),
    reason="needs Debian's gcc-aarch64-linux-gnu and qemu-user (make sysdeps)",
)
def test_arm64_bundle_gives_the_same_answers_under_qemu(
    real_model_dir, real_bundle, real_rows, tmp_path
):
    # Given the same model built for arm64 (the build itself checks the golden rows)
    arm = build_bundle(real_model_dir, "1.0.0", out_root=tmp_path, arch="arm64", parallel_comp=2)
    assert elf_arch(arm / "model.so") == "arm64"
    # When it scores real rows under qemu-aarch64
    rows = real_rows[:400]
    got = crosscheck(arm / "model.so", rows, "arm64")
    # Then the answers equal the x86_64 build's (printed with 9 significant digits)
    expected = np.array(real_bundle.model.predict_many(rows.tolist()))
    assert np.abs(got - expected).max() < 1e-7
    # And each evaluator (the branch-free one vectorized with NEON) gives XGBoost's answers
    assert np.isnan(rows).any()
    reference = booster(real_model_dir).predict(
        xgb.DMatrix(rows, feature_names=real_bundle.spec.names)
    )
    for symbol in ("avsev_forest_rows", "avsev_tl2cgen_rows"):
        on_arm = crosscheck(arm / "model.so", rows, "arm64", symbol=symbol)
        assert np.abs(on_arm - reference).max() <= 1e-6, symbol
    # And this machine refuses to load it, naming both architectures
    if host_arch() != "arm64":
        with pytest.raises(BundleError, match=r"built for arm64, this machine is"):
            load_bundle(arm)


def test_library_needs_only_libc_and_libm(real_bundle_dir):
    import subprocess

    if not have("objdump"):
        pytest.skip("objdump not installed")
    out = subprocess.run(
        ["objdump", "-p", str(real_bundle_dir / "model.so")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    needed = {line.split()[-1] for line in out.splitlines() if "NEEDED" in line}
    assert needed <= {"libc.so.6", "libm.so.6"}
    versions = [v for v in out.split() if v.startswith("GLIBC_")]
    newest = max(tuple(int(x) for x in v[6:].split(".")) for v in versions)
    assert newest <= (2, 34), "Lambda python3.12+ runs glibc 2.34"
