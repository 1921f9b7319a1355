"""How well the drift check works: false alarms on unchanged data, and detection of a
known shift, over many seeds (tests/unit/test_drift.py holds them to their targets)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from avsev.monitoring.offline import drift_reports_of_rows
from avsev.monitoring.profile import reference_profile
from avsev.monitoring.reports import DriftReport
from avsev.serving.card import Card, ReferenceProfile
from avsev.serving.features import FeatureSpec

Row = dict[str, Any]


def split_reference(
    card: Card, rows: Sequence[Row], spec: FeatureSpec, seed: int = 0
) -> tuple[Card, list[Row]]:
    """A card whose reference profile is one random half of `rows`; the other half is returned."""
    reference, other = split_halves(len(rows), seed)
    profile = reference_profile([rows[i] for i in reference], spec, seed=seed)
    out = card.model_copy(update={"reference_profile": ReferenceProfile.model_validate(profile)})
    return out, [rows[i] for i in other]


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The row indices of `split_reference`'s two halves: the reference's, then the other."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def sample(rows: Sequence[Row], seed: int, n: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    return [dict(rows[i]) for i in rng.choice(len(rows), n, replace=False)]


def shift_number(field: str, sd: float, by: float = 0.5) -> Callable[[list[Row], int], None]:
    def apply(rows: list[Row], seed: int) -> None:
        for r in rows:
            if field in r:
                r[field] += by * sd

    return apply


def move_category_share(
    field: str, source: str, target: str, points: float = 0.15
) -> Callable[[list[Row], int], None]:
    """Relabel `points` of all rows from `source` to `target` (the target's share rises by that much)."""

    def apply(rows: list[Row], seed: int) -> None:
        rng = np.random.default_rng(10_000 + seed)
        pool = [r for r in rows if r.get(field) == source]
        for i in rng.choice(len(pool), int(points * len(rows)), replace=False):
            pool[i][field] = target

    return apply


def blank_field(field: str, share: float = 0.5) -> Callable[[list[Row], int], None]:
    """Blank `field` in `share` of the rows (as newer reports leave fields empty)."""

    def apply(rows: list[Row], seed: int) -> None:
        rng = np.random.default_rng(20_000 + seed)
        for i in rng.choice(len(rows), int(share * len(rows)), replace=False):
            rows[i][field] = None

    return apply


def top_feature(card: Card) -> str:
    """The profiled field the model leans on most (the card's importance)."""
    fields = card.reference().fields
    importance = card.importance or {}
    return max(fields, key=lambda f: float(importance.get(f, 0.0)))


def rates(
    card: Card,
    rows: Sequence[Row],
    *,
    seeds: int = 100,
    n: int = 1000,
    numeric: str = "dec_latitude",
    category: tuple[str, str, str] = ("weather_condition", "VMC", "IMC"),
) -> dict[str, Any]:
    """Dataset-drift false-alarm rate on unchanged samples, and how often a half-SD shift of
    one number and a 15-point change of one category's share are caught."""
    sd = card.reference().fields[numeric].std
    if sd is None:
        raise ValueError(f"{numeric} is not a number in the card's reference profile")
    scenarios: dict[
        str, tuple[Callable[[list[Row], int], None] | None, Callable[[DriftReport], bool]]
    ] = {
        "same_data_dataset_drift_rate": (None, lambda rep: rep.dataset_drift),
        f"{numeric}_half_sd_shift_caught_rate": (
            shift_number(numeric, sd),
            lambda rep: _drifted(rep, numeric),
        ),
        f"{category[0]}_15pt_share_change_caught_rate": (
            move_category_share(*category),
            lambda rep: _drifted(rep, category[0]),
        ),
    }
    if card.importance:
        top = top_feature(card)
        scenarios[f"{top}_half_blank_dataset_drift_rate"] = (
            blank_field(top),
            lambda rep: rep.dataset_drift,
        )
    out: dict[str, Any] = {"seeds": seeds, "rows_per_sample": n}
    samples: list[list[Row]] = []
    for change, _ in scenarios.values():
        for seed in range(seeds):
            current = sample(rows, seed, n)
            if change:
                change(current, seed)
            samples.append(current)
    reports = drift_reports_of_rows(card, samples)
    per_feature = []
    for report in reports[:seeds]:  # the unchanged samples
        checked = [f for f in (report.features or {}).values() if f.test != "skipped"]
        per_feature.append(sum(f.drift for f in checked) / max(len(checked), 1))
    out["same_data_per_feature_false_alarm_rate"] = float(np.mean(per_feature))
    for i, (name, (_, flagged)) in enumerate(scenarios.items()):
        hits = sum(bool(flagged(r)) for r in reports[i * seeds : (i + 1) * seeds])
        out[name] = hits / seeds
    return out


def _drifted(report: DriftReport, feature: str) -> bool:
    return bool(report.features and report.features[feature].drift)
