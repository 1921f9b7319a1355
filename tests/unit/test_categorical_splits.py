"""Native categorical splits carried exactly by every evaluator of a compiled model: the
branch-free forest, tl2cgen's code and the C TreeSHAP, against XGBoost itself, on rows
that hit both sides of each split, missing values and values that are in no set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from avsev.serving.runtime import CompiledModel, host_arch
from avsev_tools.pipeline.compile import category_sets, category_words, compile_model, crosscheck
from conftest import have

N_CATS = 70
"""Categories seen in training: sets reach past one 32-bit word (and past 64)."""
ODD_VALUES = [
    # not a category XGBoost knows: negative, beyond every set, beyond 2^24
    -1.0, -0.5, 70.0, 75.0, 1e6, 16777215.0, 16777216.0, 3e9,
    # a category after all: -0.0 is 0, fractions are cut to their integer part
    -0.0, 0.5, 31.99, 32.0, 63.5, 64.0,
]  # fmt: skip


@pytest.fixture(scope="module")
def stumps(tmp_path_factory):
    """A softprob model of depth-1 trees, each a categorical split (a random set of the 70
    categories decides the class), with missing values sent left in some trees and right
    in others; compiled for this machine."""
    rng = np.random.default_rng(7)
    n = 6000
    cat = rng.integers(0, N_CATS, n).astype(np.float32)
    cat[rng.random(n) < 0.1] = np.nan
    noise = rng.normal(size=n).astype(np.float32)
    lucky = np.isin(cat, rng.choice(N_CATS, 30, replace=False))
    y = np.where(np.isnan(cat), 2, np.where(lucky, 1, 0))
    y = np.where(rng.random(n) < 0.2, rng.integers(0, 3, n), y)
    x = np.column_stack([cat, noise])
    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "max_depth": 1,
        "max_cat_to_onehot": 1,
        "max_cat_threshold": 64,
        "nthread": 1,
    }
    names, types = ["c", "q"], ["c", "q"]
    train = xgb.DMatrix(
        x, label=y, feature_names=names, feature_types=types, enable_categorical=True
    )
    booster = xgb.train(params, train, 8)
    doc = json.loads(booster.save_raw("json"))
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    for t, tree in enumerate(trees):  # both default directions, whatever training chose
        tree["default_left"][0] = t % 2
    out = tmp_path_factory.mktemp("stumps")
    (out / "model.json").write_text(json.dumps(doc))
    booster = xgb.Booster()
    booster.load_model(out / "model.json")
    facts = compile_model(out / "model.json", out, host_arch())
    return booster, trees, facts, CompiledModel(out / "model.so", out / "trees.bin"), out


def rows_to_score() -> np.ndarray:
    cats = [*map(float, range(N_CATS)), np.nan, *ODD_VALUES]
    return np.array([[c, q] for c in cats for q in (-1.0, 0.3)], dtype=np.float32)


def test_category_sets_read_from_xgboost_json_and_packed_as_words():
    tree = {
        "split_type": [1, 0, 1, 0, 0],
        "categories": [0, 31, 32, 69, 5],
        "categories_nodes": [0, 2],
        "categories_segments": [0, 4],
        "categories_sizes": [4, 1],
    }
    assert category_sets(tree) == {0: [0, 31, 32, 69], 2: [5]}
    assert category_words([0, 31, 32, 69]) == [1 | 1 << 31, 1, 1 << 5]
    assert category_words([]) == []
    with pytest.raises(ValueError, match="split type"):
        category_sets({**tree, "split_type": [2, 0, 1, 0, 0]})


def test_the_fixture_exercises_both_sides_missing_and_multiword_sets(stumps):
    _, trees, facts, _, _ = stumps
    assert facts["evaluator"]["batch"] == "branch-free (avsev_forest.c)"
    sets = [category_sets(t) for t in trees]
    assert all(list(s) == [0] for s in sets)  # every root is a categorical split
    assert {t["default_left"][0] for t in trees} == {0, 1}
    assert max(c for s in sets for c in s[0]) >= 64  # a set of three words
    x = rows_to_score()[:, 0]
    for s in sets:  # every split: rows in its set, not in it, and missing
        inside = np.isin(x, s[0])
        assert inside.any() and (~inside & ~np.isnan(x)).any() and np.isnan(x).any()


def test_compiled_evaluators_and_tree_shap_equal_xgboost(stumps):
    booster, _, _, model, _ = stumps
    x = rows_to_score()
    d = xgb.DMatrix(x, feature_names=["c", "q"])
    expected = booster.predict(d)
    margins = booster.predict(d, output_margin=True)
    contribs = booster.predict(d, pred_contribs=True)
    flat = np.ascontiguousarray(x).reshape(-1)
    for evaluator in ("branch_free", "tl2cgen"):
        got = np.frombuffer(
            model.predict_buffer(flat, len(x), evaluator=evaluator), dtype=np.float32
        ).reshape(len(x), -1)
        assert np.abs(got - expected).max() <= 1e-6, evaluator
    single = np.array([model.predict(r) for r in x.tolist()])
    assert np.abs(single - expected).max() <= 1e-6
    shap = np.array([model.shap(r) for r in x.tolist()])
    assert np.abs(shap - contribs).max() <= 1e-6
    assert np.abs(shap.sum(axis=2) - margins).max() <= 1e-6  # additivity


@pytest.mark.skipif(
    not (have("aarch64-linux-gnu-gcc") and have("qemu-aarch64")),
    reason="needs Debian's gcc-aarch64-linux-gnu and qemu-user (make sysdeps)",
)
def test_categorical_splits_on_arm64_under_qemu(stumps, tmp_path):
    booster, _, _, _, out = stumps
    compile_model(out / "model.json", tmp_path, "arm64")
    x = rows_to_score()
    expected = booster.predict(xgb.DMatrix(x, feature_names=["c", "q"]))
    for symbol in ("avsev_forest_rows", "avsev_tl2cgen_rows"):
        got = crosscheck(tmp_path / "model.so", x, "arm64", symbol=symbol)
        assert np.abs(got - expected).max() <= 1e-6, symbol


def test_a_tree_file_from_before_categorical_splits_still_reads(stumps, tmp_path):
    from avsev.serving.runtime import (
        TREES_ARRAYS_V1,
        TREES_HEADER,
        TREES_HEADER_V1,
        TREES_MAGIC_V1,
        read_trees,
    )

    *_, out = stumps
    header, arrays = read_trees(out / "trees.bin")
    assert header["n_cat_words"] > 0 and any(arrays["split_type"])
    # the same trees as an AVSEVTR1 file: the older header, the first eleven arrays
    size = sum(
        len(arrays[name]) * np.dtype(f"<{code}").itemsize for name, code, _ in TREES_ARRAYS_V1
    )
    body = (out / "trees.bin").read_bytes()[TREES_HEADER.size :][:size]
    values = [header[k] for k in ("n_trees", "n_nodes", "n_class", "n_feature", "max_depth")]
    old = tmp_path / "trees.bin"
    old.write_bytes(TREES_HEADER_V1.pack(TREES_MAGIC_V1, *values) + body)
    old_header, old_arrays = read_trees(old)
    assert old_header == {**header, "n_cat_words": 0}
    for name, _, _ in TREES_ARRAYS_V1:
        assert old_arrays[name][:] == arrays[name][:], name
    assert not any(old_arrays["split_type"]) and not any(old_arrays["cat_size"])
