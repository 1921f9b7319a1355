"""How a model ages: log loss against model age on the real NTSB data.

For every last training year Y (2008 … 2018), the shipped recipe (`avsev_tools.pipeline.train.train`:
early-stopped on its own newest rows, augmentation rate chosen on validation, refit on every
row up to Y) is fit on the reports dated up to the end of Y, then scored on each later year
Y+1 … Y+5 that the file has. A model scoring year Y+k is between k-1 and k years old.

Two figures per age k:
- the log loss itself, averaged over the target years (it mixes aging with how hard each year
  is);
- the **excess** log loss: on the same rows of a target year T, the k-year-old model (trained up
  to T-k) minus the freshest possible model (trained up to T-1). Paired row by row, so the year's
  own difficulty cancels; its 95% interval is the normal one of a mean of per-row differences
  (`avsev.monitoring.performance.estimate`), rows pooled over the target years.

The recommended maximum model age (`avsev.constants.MAX_MODEL_AGE_DAYS`) is the largest age k
such that at every age up to k the excess's 95% upper bound stays within `TOLERANCE`. Writes
bench/staleness_results.json (or --out), and with --plot a PNG; --replot recomputes the
recommendation and the picture from a results file without training. --quick is a smoke run
(fewer years, fewer trees), not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "staleness_results.json"
PLOT = ROOT / "docs" / "staleness.png"
Z95 = 1.959963984540054
MAX_AGE = 5
FIRST_YEAR = 2008
"""The first last-training-year: the file has under 3,000 dated rows after 1982 before it."""


TOLERANCE = 0.01
"""The excess log loss an aged model may carry: about three times the spread of one recipe
across augmentation seeds (±0.003, so a smaller excess is retraining noise), a fifth of the
A/B non-inferiority margin (0.05), and about 6% of what the model gains over the class prior
(1.095 → 0.94)."""


def recommended_age(by_age: dict[str, Any], tol: float = TOLERANCE) -> int:
    """The largest age k (years) such that the excess's 95% upper bound is within `tol` at
    every age up to k."""
    max_age = 0
    for a in range(1, MAX_AGE + 1):
        ex = by_age.get(str(a), {}).get("excess_over_fresh")
        if ex is None or ex["ci95"][1] > tol:
            break
        max_age = a
    return max_age


def per_row_nll(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    p = np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)
    return np.asarray(-np.log(p), dtype=float)


def mean_ci(values: np.ndarray) -> dict[str, Any]:
    """Mean of per-row values and its 95% interval (the project's estimate of a mean)."""
    from avsev.monitoring.performance import estimate

    n = len(values)
    est = estimate(
        "log_loss",
        np.array([[n]]),
        nll_sum=float(values.sum()),
        nll2_sum=float((values**2).sum()),
    )
    half = Z95 * math.sqrt(est.variance)
    return {"mean": est.value, "ci95": [est.value - half, est.value + half], "rows": n}


def run(quick: bool) -> dict[str, Any]:
    from avsev.data import default_data_path, load
    from avsev_tools.pipeline.train import dmatrix, matrix, train

    data = load(default_data_path())
    years = np.array(
        [d.year if d is not None and d == d else -1 for d in data.frame["event_date"]], dtype=int
    )
    labels = np.asarray(data.labels, dtype=int)
    last_year = int(years.max())
    ends = list(range(FIRST_YEAR, last_year))
    # one thread: on a shared machine two OpenMP threads spend most of their time waiting at
    # barriers (one fit took ten minutes)
    kw: dict[str, Any] = {"params": {"nthread": 1}}
    if quick:
        ends = ends[-3:]
        kw |= {"rounds": 30, "blank_rates": (0.0,)}
    nll: dict[tuple[int, int], np.ndarray] = {}  # (last training year, target year) → per row
    fits: dict[str, Any] = {}
    for end in ends:
        t0 = time.perf_counter()
        subset = dataclasses.replace(data, frame=data.frame[years <= end].reset_index(drop=True))
        fit = train(subset, **kw)
        for target in range(end + 1, min(end + MAX_AGE, last_year) + 1):
            idx = np.flatnonzero(years == target)
            rows = [data.report(int(i)) for i in idx]
            proba = fit.booster.predict(
                dmatrix(fit.spec, matrix(fit.spec, rows), categorical=False)
            )
            nll[(end, target)] = per_row_nll(labels[idx], proba)
        fits[str(end)] = {
            "rows": len(subset.frame),
            "n_trees": fit.info["n_trees"],
            "augmentation": fit.info["augmentation"]["rate"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"trained up to {end}: {fits[str(end)]}", file=sys.stderr)

    table = [
        {
            "trained_to": end,
            "target_year": target,
            "age_years": target - end,
            "rows": len(v),
            "log_loss": float(v.mean()),
        }
        for (end, target), v in sorted(nll.items())
    ]
    by_age: dict[str, Any] = {}
    for age in range(1, MAX_AGE + 1):
        pairs = [(e, t) for (e, t) in nll if t - e == age]
        if not pairs:
            continue
        level = np.concatenate([nll[p] for p in pairs])
        diffs = [nll[(t - age, t)] - nll[(t - 1, t)] for (_, t) in pairs if (t - 1, t) in nll]
        by_age[str(age)] = {
            "targets": sorted(t for _, t in pairs),
            "log_loss": mean_ci(level),
            "excess_over_fresh": mean_ci(np.concatenate(diffs)) if diffs else None,
        }
    return {
        "what": "log loss of the shipped recipe by model age: trained up to year Y, scored on "
        "Y+1 … Y+5 (age k: k-1 to k years old); excess = the k-year-old model minus the "
        "model trained up to the year before, on the same rows",
        "quick": quick,
        "tolerance": TOLERANCE,
        "recommended_max_age_years": recommended_age(by_age),
        "fits": fits,
        "table": table,
        "by_age": by_age,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ends = sorted({r["trained_to"] for r in results["table"]})
    cmap = plt.get_cmap("viridis")
    for k, end in enumerate(ends):
        pts = [r for r in results["table"] if r["trained_to"] == end]
        left.plot(
            [r["target_year"] for r in pts],
            [r["log_loss"] for r in pts],
            "o-",
            color=cmap(k / max(len(ends) - 1, 1)),
            label=f"to {end}",
            markersize=3,
        )
    left.set_xlabel("scored year")
    left.set_ylabel("log loss")
    left.set_title("Each model on the years after its training")
    left.legend(fontsize=7, ncol=2)
    ages = sorted(int(a) for a, v in results["by_age"].items() if v["excess_over_fresh"])
    ex = [results["by_age"][str(a)]["excess_over_fresh"] for a in ages]
    means = [e["mean"] for e in ex]
    lo = [e["mean"] - e["ci95"][0] for e in ex]
    hi = [e["ci95"][1] - e["mean"] for e in ex]
    right.errorbar(ages, means, yerr=[lo, hi], fmt="o-", capsize=4, label="excess (95% interval)")
    right.axhline(results["tolerance"], color="red", ls="--", label="tolerance")
    right.axhline(0, color="grey", lw=0.8)
    right.set_xticks(ages)
    right.set_xlabel("model age (years since its last training year)")
    right.set_ylabel("log loss − fresh model's, same rows")
    right.set_title("Excess log loss by age")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small sizes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=None, help=f"write the PNG (e.g. {PLOT})")
    parser.add_argument(
        "--replot", action="store_true", help="recompute from --out's results, no training"
    )
    args = parser.parse_args(argv)
    if args.replot:
        results = json.loads(args.out.read_text())
        results["tolerance"] = TOLERANCE
        results["recommended_max_age_years"] = recommended_age(results["by_age"])
    else:
        results = run(args.quick)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    for a, v in results["by_age"].items():
        ex = v["excess_over_fresh"]
        print(
            f"age {a}: log loss {v['log_loss']['mean']:.4f}"
            + (
                f", excess {ex['mean']:+.4f} [{ex['ci95'][0]:+.4f}, {ex['ci95'][1]:+.4f}]"
                if ex
                else ""
            )
        )
    print(f"recommended maximum age: {results['recommended_max_age_years']} year(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
