"""Per-field profiles of accident rows: the drift reference a bundle's card carries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from avsev.serving.features import OTHER, FeatureSpec

SAMPLE_SIZE = 5000
"""Values of each number kept as its drift reference (all of them when fewer). The distances
of large windows compare a window with this sample, so its own sampling error is a floor
under every distance: for the real latitude and longitude, whose spread is uneven (the
continental US, Alaska, abroad), a sample of 1,000 put unchanged windows at a normalised
Wasserstein distance of 0.04 on average and up to 0.08, next to the 0.1 threshold, at any
window size; 5,000 values halve that spread (avsev.monitoring.drift; tests/unit/test_drift.py
checks the floor)."""
N_BINS = 10


def numeric_values(rows: Sequence[Mapping[str, Any]], field: str) -> tuple[np.ndarray, int]:
    """The present values of a numeric field (bool as 0/1) and the missing count."""
    raw = [r.get(field) for r in rows]
    present = [float(v) for v in raw if v is not None and v == v]
    return np.asarray(present, dtype=float), len(raw) - len(present)


def category_values(rows: Sequence[Mapping[str, Any]], field: str) -> tuple[list[str], int]:
    raw = [r.get(field) for r in rows]
    present = [str(v) for v in raw if v is not None and v == v]
    return present, len(raw) - len(present)


def bucket_open_categories(values: list[str], known: Sequence[str]) -> list[str]:
    """Values of an open category outside the known set become `other`."""
    keep = set(known)
    return [v if v in keep else OTHER for v in values]


def profile_fields(spec: FeatureSpec) -> dict[str, str]:
    """The report fields that drift is checked on, and their kind (dates left out: time
    always moves)."""
    out: dict[str, str] = {}
    for f in spec.features:
        if f.source == "event_date":
            continue
        out[f.source] = f.kind
    return out


def reference_profile(
    rows: Sequence[Mapping[str, Any]], spec: FeatureSpec, *, seed: int = 0
) -> dict[str, Any]:
    """Bins, shares, missing rates and a sample of every drift-checked field."""
    rng = np.random.default_rng(seed)
    fields: dict[str, Any] = {}
    for name, kind in profile_fields(spec).items():
        if kind == "numeric":
            values, missing = numeric_values(rows, name)
            edges = np.unique(np.quantile(values, np.linspace(0, 1, N_BINS + 1)))
            counts = (
                np.histogram(values, bins=edges)[0] if len(edges) > 1 else np.array([len(values)])
            )
            sample = rng.choice(values, size=min(SAMPLE_SIZE, len(values)), replace=False)
            fields[name] = {
                "kind": "numeric",
                "n": len(values),
                "missing_rate": missing / max(len(rows), 1),
                "mean": float(values.mean()),
                "std": float(values.std()),
                "bin_edges": edges.tolist(),
                "bin_shares": (counts / max(counts.sum(), 1)).tolist(),
                "sample": sorted(float(v) for v in sample),
            }
        else:
            cats, missing = category_values(rows, name)
            feature = next(f for f in spec.features if f.source == name)
            if OTHER in feature.categories:
                cats = bucket_open_categories(cats, feature.categories)
            tally = Counter(cats)
            fields[name] = {
                "kind": "categorical",
                "n": len(cats),
                "missing_rate": missing / max(len(rows), 1),
                "shares": {c: n / max(len(cats), 1) for c, n in tally.most_common()},
            }
    return {"rows": len(rows), "fields": fields}
