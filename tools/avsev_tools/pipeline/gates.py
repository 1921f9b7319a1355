"""Quality gates: the named checks a retrained model passes before it may serve.

Offline code (it trains, compiles and imports XGBoost): never imported by a Lambda handler.
Each gate returns a `GateResult` (name, passed, value, threshold, reason); `run_gates` runs them
all on a candidate bundle against the champion (the version serving now) on a held-out window
of the newest labelled rows, and `record` stores them with the version in the registry, which
approves by policy (`Registry.record_gates`).

The gates, and what each compares:
- `reproducible`: two trainings from the same inputs give the same model bytes (and, when
  asked, the same compiled library);
- `numerically_stable`: fuzzed reports and extreme encoded rows give finite probabilities in
  [0, 1] that sum to 1, through the compiled library;
- `parity`: the compiled library gives XGBoost's probabilities within `PARITY_TOLERANCE`, on
  the card's golden rows (the build's own check, `pipeline.build.golden_difference`) and, when
  the XGBoost model is given, on every held-out row;
- `not_worse_than_champion`: held-out log loss, the 95% interval of the paired per-row
  difference (`monitoring.performance.estimate`) at most `CHAMPION_MARGIN` worse (the A/B
  non-inferiority margin, `performance.MARGIN['log_loss']`);
- `prior_not_better` and `linear_not_better`: the training rows' class prior and a multinomial
  logistic regression on the same encoded features are not better on held-out log loss: the
  paired difference's 95% interval does not lie above zero (a simpler model shown better
  fails; a tie does not);
- `slices`: no slice (flight phase, engine type, purpose, number of engines, completeness band,
  year) worse than the champion by more than `SLICE_MARGIN` with its interval above 0; slices
  with fewer than `SLICE_MIN_ROWS` rows are skipped and listed;
- `calibration`: top-label ECE at most `ECE_MARGIN` above the champion's;
- `serving_cost`: single-row scoring time at most `TIME_RATIO_BUDGET` × the champion's
  (interleaved in the same run) and at most `TREE_RATIO_BUDGET` × its trees.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from avsev.data import LoadedData
from avsev.monitoring.performance import MARGIN, TRUST_Z, estimate
from avsev.serving.bundle import Bundle, BundleError, load_bundle
from avsev.serving.features import FeatureSpec
from avsev.serving.schema import SEVERITIES

from avsev_tools.pipeline.evaluate import calibration, predict_proba

PARITY_TOLERANCE = 1e-6
"""Largest |compiled − XGBoost| probability allowed (measured: 1.2e-7 on every real row)."""
CHAMPION_MARGIN = MARGIN["log_loss"]
"""How much worse than the champion's held-out log loss the candidate may be, with its interval
(the A/B rollout's non-inferiority margin: the same promise offline as online)."""
SLICE_MARGIN = 0.10
"""How much worse than the champion's log loss one slice may be (slices are small: a wider
margin than the whole window's, and the slice must also be worse beyond its interval)."""
SLICE_MIN_ROWS = 100
"""Slices with fewer held-out rows are skipped (their log loss is too noisy to judge)."""
SLICE_FIELDS = (
    "broad_phase_of_flight",
    "engine_type",
    "purpose_of_flight",
    "number_of_engines",
)
COMPLETENESS_BANDS = ((0.0, 0.5, "<0.5"), (0.5, 0.9, "0.5-0.9"), (0.9, 1.01, ">=0.9"))
"""The champion's completeness (its importance-weighted share of fields given) in bands."""
ECE_MARGIN = 0.02
"""How much higher the candidate's top-label ECE may be than the champion's."""
TIME_RATIO_BUDGET = 1.5
"""Single-row scoring time, candidate over champion, measured interleaved in one run."""
TREE_RATIO_BUDGET = 2.0
"""Trees in the candidate over trees in the champion."""
FUZZ_ROWS = 2000
Policy = Literal["auto", "manual"]
POLICIES: tuple[Policy, ...] = ("auto", "manual")


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: what was measured (`value`) against what is allowed (`threshold`)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- shared measurements -------------------------------------------------------------------


def per_row_log_loss(labels: Sequence[int], proba: np.ndarray) -> np.ndarray:
    """Each row's −log p(true class), clipped and renormalized as `metrics.log_loss` does."""
    p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    y = np.asarray(labels, dtype=int)
    return np.asarray(-np.log(p[np.arange(len(y)), y]), dtype=float)


@dataclass(frozen=True)
class Paired:
    """The mean of per-row differences (candidate − other) and its 95% interval."""

    mean: float
    low: float
    high: float
    rows: int


def paired(diff: np.ndarray) -> Paired:
    """`performance.estimate` of a mean over rows, on per-row log-loss differences; a fixed
    sample seen once, so the normal 95% interval (not the A/B's always-valid one)."""
    d = np.asarray(diff, dtype=float)
    if len(d) == 0:
        return Paired(math.nan, math.nan, math.nan, 0)
    est = estimate(
        "log_loss", np.array([[len(d)]]), nll_sum=float(d.sum()), nll2_sum=float((d**2).sum())
    )
    half = TRUST_Z * math.sqrt(est.variance)
    return Paired(est.value, est.value - half, est.value + half, len(d))


def _fmt(p: Paired) -> str:
    return f"{p.mean:+.4f} (95% interval {p.low:+.4f} to {p.high:+.4f}, {p.rows} rows)"


# ---- the gates -------------------------------------------------------------------------------


def reproducible(
    retrain: Callable[[Path], Path],
    *,
    compile_arch: str | None = None,
    reference_model: Path | None = None,
    reference_library: Path | None = None,
    parallel_comp: int = 0,
) -> GateResult:
    """Train twice with `retrain` (writes a model directory under the path it is given and
    returns it); the two `model.json` must be byte for byte the same, and with `compile_arch`
    the two compiled libraries too (compiled with `parallel_comp`). `reference_model`: a model
    directory `retrain` already made (the candidate), so one more training is enough;
    `reference_library`: its library, compiled with the same `parallel_comp`."""
    from avsev_tools.pipeline.compile import compile_model
    from avsev_tools.pipeline.train import MODEL_FILE

    digests: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="avsev-repro-") as tmp:
        for k in range(2):
            model_dir = (
                reference_model
                if k == 0 and reference_model is not None
                else retrain(Path(tmp) / f"run{k}")
            )
            d = {"model": _sha256(model_dir / MODEL_FILE)}
            if compile_arch is not None:
                if k == 0 and reference_model is not None and reference_library is not None:
                    d["library"] = _sha256(reference_library)
                else:
                    out = Path(tmp) / f"lib{k}"
                    out.mkdir()
                    compile_model(
                        model_dir / MODEL_FILE, out, compile_arch, parallel_comp=parallel_comp
                    )
                    d["library"] = _sha256(out / "model.so")
            digests.append(d)
    differ = [k for k in digests[0] if digests[0][k] != digests[1][k]]
    what = " and ".join(digests[0])
    return GateResult(
        "reproducible",
        not differ,
        float(len(differ)),
        0.0,
        f"two trainings from the same inputs gave the same {what} bytes"
        if not differ
        else f"two trainings from the same inputs gave different {' and '.join(differ)} bytes "
        f"(sha256 {digests[0][differ[0]][:12]} vs {digests[1][differ[0]][:12]}): "
        "a seed or a thread count is not fixed",
        {"runs": digests},
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fuzzed_reports(spec: FeatureSpec, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """`n` reports with every field drawn at random: blank, a known category, an unseen one,
    a number at or beyond the training range or far outside it, a date from 1900 to 2100."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for f in spec.features:
        for row in out:
            if rng.random() < 0.25:
                continue
            if f.kind == "categorical":
                row[f.source] = (
                    str(rng.choice(f.categories)) if rng.random() < 0.8 else "never-seen"
                )
            elif f.derive in ("year", "month"):
                row.setdefault(
                    f.source,
                    dt.date(int(rng.integers(1900, 2101)), int(rng.integers(1, 13)), 1),
                )
            else:
                lo, hi = float(f.lo or 0.0), float(f.hi or 1.0)
                span = max(hi - lo, 1.0)
                row[f.source] = float(
                    rng.choice(
                        [
                            rng.uniform(lo, hi),
                            lo,
                            hi,
                            lo - span * rng.uniform(0, 10),
                            hi + span * rng.uniform(0, 10),
                            float(rng.choice([-1e30, 1e30, -1e9, 1e9, 0.0])),
                        ]
                    )
                )
    return out


def extreme_rows(spec: FeatureSpec, n: int, *, seed: int = 0) -> np.ndarray:
    """Encoded rows of float32 extremes the encoder never makes (±max, ±tiny, NaN, big
    category indices): the compiled code must stay finite on them too."""
    rng = np.random.default_rng(seed)
    f32 = np.finfo(np.float32)
    choices = np.array(
        [np.nan, 0.0, -0.0, f32.max, -f32.max, f32.tiny, -f32.tiny, 1e9, -1e9, 255.0, 1e4],
        dtype=np.float32,
    )
    return choices[rng.integers(0, len(choices), size=(n, len(spec)))]


def numerically_stable(bundle: Bundle, *, rows: int = FUZZ_ROWS, seed: int = 0) -> GateResult:
    """Fuzzed reports through the one encoder, and extreme encoded rows, through the
    compiled library: every probability finite, in [0, 1], each row summing to 1 (±1e-4)."""
    encoded = np.asarray(
        bundle.spec.encode_many(fuzzed_reports(bundle.spec, rows, seed=seed)), dtype=np.float32
    )
    x = np.vstack([encoded, extreme_rows(bundle.spec, rows, seed=seed)])
    p = np.asarray(bundle.model.predict_many(x.tolist()), dtype=float)
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p > 1).any(axis=1)
    bad |= np.abs(np.nan_to_num(p, nan=9.0).sum(axis=1) - 1.0) > 1e-4
    n_bad = int(bad.sum())
    example = x[int(np.flatnonzero(bad)[0])].tolist() if n_bad else None
    return GateResult(
        "numerically_stable",
        n_bad == 0,
        float(n_bad),
        0.0,
        f"{len(x)} fuzzed rows gave finite probabilities summing to 1"
        if n_bad == 0
        else f"{n_bad} of {len(x)} fuzzed rows gave NaN, infinite or unnormalized "
        f"probabilities (first: {p[int(np.flatnonzero(bad)[0])].tolist()})",
        {"rows": len(x), "bad_rows": n_bad, "first_bad_input": example},
    )


def parity(
    bundle_dir: Path, holdout: LoadedData | None = None, *, model_dir: Path | None = None
) -> GateResult:
    """The compiled library against XGBoost: the card's golden rows (written by XGBoost at
    training) and, with `model_dir` (the trained model), every held-out row."""
    from avsev_tools.pipeline.build import golden_difference

    try:
        bundle = load_bundle(bundle_dir, explain=False)
    except BundleError as e:
        return GateResult("parity", False, None, PARITY_TOLERANCE, f"bundle does not load: {e}")
    worst = golden_difference(bundle, [g.to_dict() for g in bundle.card.golden])
    where = f"{len(bundle.card.golden)} golden rows"
    if model_dir is not None and holdout is not None:
        from avsev_tools.pipeline.train import dmatrix, load_trained, matrix

        booster, training = load_trained(model_dir)
        categorical = "c" in training.get("feature_types", [])
        x = matrix(bundle.spec, holdout.reports())
        expected = booster.predict(dmatrix(bundle.spec, x, categorical=categorical))
        worst = max(worst, float(np.abs(predict_proba(bundle, holdout) - expected).max()))
        where += f" and {len(x)} held-out rows"
    ok = worst <= PARITY_TOLERANCE
    return GateResult(
        "parity",
        ok,
        worst,
        PARITY_TOLERANCE,
        f"compiled = XGBoost within {worst:.1e} on {where}"
        if ok
        else f"compiled library differs from XGBoost by {worst:.1e} on {where} "
        f"(allowed {PARITY_TOLERANCE:.0e}): the library is not this model's",
    )


def not_worse_than_champion(
    candidate_nll: np.ndarray, champion_nll: np.ndarray, *, margin: float = CHAMPION_MARGIN
) -> GateResult:
    p = paired(candidate_nll - champion_nll)
    ok = p.high <= margin
    return GateResult(
        "not_worse_than_champion",
        bool(ok),
        p.high,
        margin,
        f"held-out log loss {candidate_nll.mean():.4f} vs champion {champion_nll.mean():.4f}: "
        f"difference {_fmt(p)}; " + ("within" if ok else "beyond") + f" the margin {margin}",
        {"candidate": float(candidate_nll.mean()), "champion": float(champion_nll.mean())}
        | asdict(p),
    )


def prior_proba(training_labels: Sequence[int], n: int) -> np.ndarray:
    """The training rows' class frequencies for every one of `n` rows (add-one smoothed)."""
    counts = np.bincount(np.asarray(training_labels, dtype=int), minlength=len(SEVERITIES))
    return np.tile((counts + 1) / (counts.sum() + len(SEVERITIES)), (n, 1))


class LinearModel:
    """Multinomial logistic regression on the one encoder's features (`FeatureSpec`): each
    categorical one-hot (blank: all zero), each number standardized on the training rows with
    a blank indicator (blank: 0). L2-penalized, fitted by full-batch gradient descent (Adam)."""

    def __init__(self, spec: FeatureSpec, *, l2: float = 1e-3, steps: int = 400) -> None:
        self.spec, self.l2, self.steps = spec, l2, steps
        self.mean = np.zeros(len(spec))
        self.std = np.ones(len(spec))
        self.w = np.zeros((0, len(SEVERITIES)))

    def design(self, x: np.ndarray) -> np.ndarray:
        cols = [np.ones((len(x), 1))]
        for j, f in enumerate(self.spec.features):
            v = x[:, j].astype(float)
            blank = np.isnan(v)
            if f.kind == "categorical":
                idx = np.where(blank, -1, v).astype(int)
                cols.append((idx[:, None] == np.arange(len(f.categories))[None, :]).astype(float))
            else:
                z = np.where(blank, 0.0, np.clip((v - self.mean[j]) / self.std[j], -5, 5))
                cols.append(np.column_stack([z, blank.astype(float)]))
        return np.hstack(cols)

    def fit(self, x: np.ndarray, y: Sequence[int]) -> LinearModel:
        with np.errstate(all="ignore"):
            self.mean = np.nan_to_num(np.nanmean(x, axis=0))
            self.std = np.nan_to_num(np.nanstd(x, axis=0), nan=1.0)
        self.std[self.std == 0] = 1.0
        a = self.design(x)
        t = np.eye(len(SEVERITIES))[np.asarray(y, dtype=int)]
        w = np.zeros((a.shape[1], len(SEVERITIES)))
        m, v = np.zeros_like(w), np.zeros_like(w)
        lr, b1, b2 = 0.05, 0.9, 0.999
        for k in range(1, self.steps + 1):
            g = a.T @ (_softmax(a @ w) - t) / len(a) + self.l2 * w
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            w -= lr * (m / (1 - b1**k)) / (np.sqrt(v / (1 - b2**k)) + 1e-8)
        self.w = w
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _softmax(self.design(x) @ self.w)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def simpler_not_better(
    name: str, candidate_nll: np.ndarray, simple_nll: np.ndarray, what: str
) -> GateResult:
    """The ML Test Score's "a simpler model is not better" (Breck et al., 2017), as a test with
    a stated error rate: fails when the simpler model's held-out log loss is lower than the
    candidate's beyond the paired 95% interval (its lower bound above zero). A candidate truly
    as good as the simpler model fails at most 2.5% of the time; one the simpler model beats by
    two standard errors fails half the time, by four almost always.

    Not "the candidate's mean is lower": on the NTSB data a boosted model and a logistic
    regression are within ~0.01 log loss of each other on the newest reports (either ahead,
    docs/model.md), a difference a window of ~700 labelled rows does not resolve (standard
    error ~0.007), so that rule would hold a candidate as good as the linear one by a coin
    flip."""
    p = paired(candidate_nll - simple_nll)
    ok = not p.low > 0
    return GateResult(
        name,
        bool(ok),
        p.low,
        0.0,
        f"held-out log loss {candidate_nll.mean():.4f} vs {what} {simple_nll.mean():.4f}: "
        f"difference {_fmt(p)}; "
        + (f"the {what} is not better" if ok else f"the {what} is better beyond the interval"),
        {"candidate": float(candidate_nll.mean()), "simpler": float(simple_nll.mean())} | asdict(p),
    )


def slice_labels(holdout: LoadedData, champion: Bundle) -> dict[str, list[str]]:
    """Each slicing dimension → the slice of every held-out row."""
    frame = holdout.frame
    out: dict[str, list[str]] = {}
    for column in SLICE_FIELDS:
        if column in frame:
            out[column] = [
                "(blank)" if v is None or v != v else (f"{v:g}" if isinstance(v, float) else str(v))
                for v in frame[column].tolist()
            ]
    out["year"] = [
        "(blank)" if d is None or d != d else str(d.year) for d in frame["event_date"].tolist()
    ]
    spec = champion.spec
    columns = {s: frame[s].tolist() if s in frame else [None] * len(frame) for s in spec.sources}
    columns = {s: [None if v != v else v for v in vs] for s, vs in columns.items()}
    completeness, _ = champion.inputs.assess(columns, spec.encode_columns(columns), len(frame))
    out["completeness"] = [
        next(name for lo, hi, name in COMPLETENESS_BANDS if lo <= c < hi) for c in completeness
    ]
    return out


def slices(
    candidate_nll: np.ndarray,
    champion_nll: np.ndarray,
    labels: Mapping[str, Sequence[str]],
    *,
    margin: float = SLICE_MARGIN,
    min_rows: int = SLICE_MIN_ROWS,
) -> GateResult:
    diff = candidate_nll - champion_nll
    table: list[dict[str, Any]] = []
    skipped: list[str] = []
    worse: list[str] = []
    for dim, values in labels.items():
        arr = np.asarray(values)
        for value in sorted(set(values)):
            idx = np.flatnonzero(arr == value)
            name = f"{dim}={value}"
            if len(idx) < min_rows:
                skipped.append(f"{name} ({len(idx)} rows)")
                continue
            p = paired(diff[idx])
            bad = p.mean > margin and p.low > 0
            table.append({"slice": name, "bad": bool(bad)} | asdict(p))
            if bad:
                worse.append(f"{name}: {_fmt(p)}")
    worst = max((t["mean"] for t in table), default=0.0)
    reason = (
        f"{len(table)} slices within {margin} of the champion's log loss"
        if not worse
        else f"worse than the champion by more than {margin}: " + "; ".join(worse)
    )
    if skipped:
        reason += f"; skipped (under {min_rows} rows): {', '.join(skipped)}"
    return GateResult(
        "slices",
        not worse,
        float(worst),
        margin,
        reason,
        {"slices": table, "skipped": skipped, "min_rows": min_rows},
    )


def calibrated(
    labels: Sequence[int],
    candidate_proba: np.ndarray,
    champion_proba: np.ndarray,
    *,
    margin: float = ECE_MARGIN,
) -> GateResult:
    cand = float(calibration(labels, candidate_proba)["top_label_ece"])
    champ = float(calibration(labels, champion_proba)["top_label_ece"])
    ok = cand <= champ + margin
    return GateResult(
        "calibration",
        ok,
        cand,
        champ + margin,
        f"top-label ECE {cand:.4f} vs champion {champ:.4f} (+{margin} allowed)"
        + ("" if ok else ": the probabilities no longer match how often they are right"),
        {"candidate_ece": cand, "champion_ece": champ},
    )


def serving_cost(
    candidate: Bundle,
    champion: Bundle,
    reports: Sequence[Mapping[str, Any]],
    *,
    time_budget: float = TIME_RATIO_BUDGET,
    tree_budget: float = TREE_RATIO_BUDGET,
    repeats: int = 31,
) -> GateResult:
    """Single-row scoring time (the API's path: one encoded row into the compiled library),
    candidate and champion interleaved repeat by repeat on the same reports, each encoded by
    its own spec, after one warm-up pass; the ratio of the fastest repeats (the least
    disturbed by other processes: on a shared machine a median still carries their time
    slices). And the tree counts (the cards')."""
    bundles = {"candidate": candidate, "champion": champion}
    encoded = {who: b.spec.encode_many(reports) for who, b in bundles.items()}
    times: dict[str, list[float]] = {"candidate": [], "champion": []}
    for k in range(repeats + 1):
        for who, b in bundles.items():
            predict, rows = b.model.predict, encoded[who]
            t0 = time.perf_counter()
            for r in rows:
                predict(r)
            if k:  # the first pass warms the caches
                times[who].append((time.perf_counter() - t0) / max(len(rows), 1))
    ratio = min(times["candidate"]) / min(times["champion"])
    trees = {who: b.card.model.n_trees or 0 for who, b in bundles.items()}
    tree_ratio = trees["candidate"] / max(trees["champion"], 1)
    problems = []
    if ratio > time_budget:
        problems.append(f"single-row time ×{ratio:.2f} the champion's (budget ×{time_budget})")
    if tree_ratio > tree_budget:
        problems.append(
            f"{trees['candidate']} trees, ×{tree_ratio:.2f} the champion's {trees['champion']} "
            f"(budget ×{tree_budget})"
        )
    return GateResult(
        "serving_cost",
        not problems,
        ratio,
        time_budget,
        "; ".join(problems)
        if problems
        else f"single-row time ×{ratio:.2f} and trees ×{tree_ratio:.2f} the champion's",
        {
            "time_ratio": ratio,
            "tree_ratio": tree_ratio,
            "trees": trees,
            "seconds_per_row": {k: min(v) for k, v in times.items()},
        },
    )


# ---- all of them ------------------------------------------------------------------------------


def run_gates(
    candidate_bundle: str | Path,
    champion_bundle: str | Path,
    holdout: LoadedData,
    *,
    training: LoadedData,
    retrain: Callable[[Path], Path] | None = None,
    model_dir: str | Path | None = None,
    compile_arch: str | None = None,
    timing_rows: int = 50,
    parallel_comp: int = 0,
) -> list[GateResult]:
    """Every gate, in order. `holdout`: the newest labelled rows, none of them seen by the
    candidate's held-out fit; `training`: the rows the simpler models are fitted on (the
    candidate's training rows); `retrain`: the candidate's training, run twice (without it
    `reproducible` fails: unchecked); `model_dir`: the candidate's XGBoost model, for parity
    on every held-out row and as the first of the two trainings `reproducible` compares (its
    library compiled with `parallel_comp`, as the candidate's bundle was)."""
    from avsev_tools.pipeline.train import matrix

    results: list[GateResult] = []
    if retrain is None:
        results.append(
            GateResult(
                "reproducible", False, None, 0.0, "not checked: no retraining was given to repeat"
            )
        )
    else:
        results.append(
            reproducible(
                retrain,
                compile_arch=compile_arch,
                reference_model=Path(model_dir) if model_dir else None,
                reference_library=Path(candidate_bundle) / "model.so" if model_dir else None,
                parallel_comp=parallel_comp,
            )
        )
    try:
        cand = load_bundle(candidate_bundle, explain=False)
        champ = load_bundle(champion_bundle, explain=False)
    except BundleError as e:
        results.append(GateResult("loads", False, None, None, f"bundle does not load: {e}"))
        return results
    results.append(numerically_stable(cand))
    results.append(
        parity(Path(candidate_bundle), holdout, model_dir=Path(model_dir) if model_dir else None)
    )
    y = holdout.labels
    p_cand, p_champ = predict_proba(cand, holdout), predict_proba(champ, holdout)
    nll_cand, nll_champ = per_row_log_loss(y, p_cand), per_row_log_loss(y, p_champ)
    results.append(not_worse_than_champion(nll_cand, nll_champ))
    results.append(
        simpler_not_better(
            "prior_not_better",
            nll_cand,
            per_row_log_loss(y, prior_proba(training.labels, len(y))),
            "class prior",
        )
    )
    linear = LinearModel(cand.spec).fit(matrix(cand.spec, training.reports()), training.labels)
    results.append(
        simpler_not_better(
            "linear_not_better",
            nll_cand,
            per_row_log_loss(y, linear.predict_proba(matrix(cand.spec, holdout.reports()))),
            "linear model",
        )
    )
    results.append(slices(nll_cand, nll_champ, slice_labels(holdout, champ)))
    results.append(calibrated(y, p_cand, p_champ))
    results.append(serving_cost(cand, champ, holdout.reports()[:timing_rows]))
    return results


def record(
    registry: Any, version: str, results: Sequence[GateResult], *, policy: Policy = "manual"
) -> dict[str, Any]:
    """Store the gates with the version in the registry; it approves by `policy`."""
    return dict(registry.record_gates(version, [r.to_dict() for r in results], policy=policy))
