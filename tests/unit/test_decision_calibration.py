"""A small version of `make bench-stats` (bench/stats.py): the A/B decision rule simulated on
the real model's probabilities, read at each of 500 hourly looks. Identical arms are rolled
back or called better, and a candidate worse by the margin is promoted, in at most 5% of
experiments (upper Wilson 95% bound ≤ 6%); a candidate better by twice the margin is
promoted in most."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from avsev_tools.pipeline.train import time_split

_SPEC = importlib.util.spec_from_file_location(
    "bench_stats", Path(__file__).resolve().parents[2] / "bench" / "stats.py"
)
assert _SPEC and _SPEC.loader
bench_stats = importlib.util.module_from_spec(_SPEC)
sys.modules["bench_stats"] = bench_stats  # dataclasses look their module up
_SPEC.loader.exec_module(bench_stats)


@pytest.fixture(scope="module")
def pool(real_data, real_bundle):
    rows = real_data.reports()
    test = time_split([r.get("event_date") for r in rows]).test
    proba = np.asarray(
        real_bundle.model.predict_many(real_bundle.spec.encode_many([rows[i] for i in test]))
    ).reshape(len(test), -1)
    return bench_stats.Pool(card={}, rows=[], proba=proba, spec=None, booster=None)


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "expected_cost"])
def test_every_decision_metric_keeps_its_promise_at_500_looks(pool, metric):
    sizes = bench_stats.Sizes(ab_experiments=200, looks=(500,), chunk=100)
    result = bench_stats.ab_scenarios(pool, sizes, (metric,))[metric]
    assert result["vectorized_checked_looks"] > 0
    for split in ("50%", "10%"):
        for scenario in ("identical", "worse_by_margin"):
            r = result[f"{split}_candidate/{scenario}"]["500_looks"]
            assert r["ci95"][1] <= 0.06, (split, scenario, r)
    power = result["50%_candidate/better_by_2_margins"]["500_looks"]["rate"]
    assert power >= 0.5, power
