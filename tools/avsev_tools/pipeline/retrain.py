"""The data a retraining learns from: the training file, and the traffic with its outcomes.

Every served prediction record carries the report it answered (`features`); an outcome posted
to `/outcomes` later says what the severity was. Joined (the latest outcome of each event, by
the one rule `rollups.LATEST_OUTCOME_ORDER`; the latest served prediction of each event), they
are labelled rows of the world as it is now, which the training file, however large, does
not hold. A retraining therefore learns from the file's rows plus these, where an event in
both is taken from the traffic (its outcome is the newer truth), and keeps the newest
labelled traffic back as the window the gates judge the candidate on (never trained on).

The query runs on the record tables in SQL (DuckDB over the Parquet objects, the engine the
rollups use off Lambda), so a retraining reads exactly what the monitoring reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from avsev.constants import PARITY_CHECK_REQUESTS
from avsev.data import LABEL, LoadedData
from avsev.monitoring.query import Engine
from avsev.monitoring.rollups import latest_outcomes_sql
from avsev.monitoring.tables import feature_columns

HOLDOUT_SHARE = 0.25
"""The newest share of the labelled traffic kept back for the gates."""
MIN_HOLDOUT = 200
"""Below this many labelled rows of traffic, all of them are the holdout (none trained on)."""


def _day(d: dt.date) -> str:
    return d.isoformat()


def labelled_traffic_sql(first: dt.date, last: dt.date) -> str:
    """One row per event served between days `first` and `last` that has an outcome: the
    report of its latest served prediction (not a shadow, not a parity check), when it was
    served, and its latest outcome."""
    return f"""
WITH latest AS ({latest_outcomes_sql(first, last)}),
served AS (
  SELECT ev_id, features, "timestamp" AS served_at,
         row_number() OVER (PARTITION BY ev_id ORDER BY "timestamp" DESC, request_id DESC) AS newest
  FROM predictions
  WHERE dt >= '{_day(first)}' AND dt <= '{_day(last)}'
    AND NOT coalesce(shadow, false)
    AND request_id NOT LIKE '{PARITY_CHECK_REQUESTS}%'
)
SELECT s.ev_id, s.features, s.served_at, l.actual
FROM served AS s JOIN latest AS l ON s.ev_id = l.ev_id
WHERE s.newest = 1
ORDER BY s.served_at, s.ev_id"""


def labelled_traffic(engine: Engine, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The labelled traffic as canonical rows (`ev_id`, the report fields, `severity`,
    `served_at`), oldest served first."""
    names = [c.name for c in feature_columns()]
    rows = []
    for r in engine.query(labelled_traffic_sql(first, last)):
        features = r["features"] or {}
        rows.append(
            {
                "ev_id": r["ev_id"],
                **{n: features.get(n) for n in names},
                LABEL: r["actual"],
                "served_at": r["served_at"],
            }
        )
    frame = pd.DataFrame(rows, columns=["ev_id", *names, LABEL, "served_at"])
    if len(frame):
        frame["event_date"] = pd.to_datetime(frame["event_date"], errors="coerce").dt.date
    return frame


@dataclass
class RetrainingData:
    train: LoadedData
    """The file's rows (less the events the traffic relabels) and the older labelled traffic."""
    holdout: LoadedData
    """The newest labelled traffic: what the gates judge candidate and champion on."""
    lineage: dict[str, Any] = field(default_factory=dict)


def retraining_data(
    base: LoadedData,
    traffic: pd.DataFrame,
    *,
    holdout_share: float = HOLDOUT_SHARE,
    window: tuple[dt.date, dt.date] | None = None,
) -> RetrainingData:
    """Split the labelled traffic by when it was served (the newest `holdout_share` held out,
    all of it when there are fewer than `MIN_HOLDOUT` rows) and add the rest to the file's
    rows; an event in both is taken from the traffic."""
    traffic = traffic.sort_values(["served_at", "ev_id"], kind="stable").reset_index(drop=True)
    n = len(traffic)
    held = n if n < MIN_HOLDOUT else max(MIN_HOLDOUT, round(n * holdout_share))
    learn, hold = traffic.iloc[: n - held], traffic.iloc[n - held :]
    columns = list(base.frame.columns)
    relabelled = set(traffic["ev_id"])
    kept = base.frame[~base.frame["ev_id"].isin(relabelled)]
    frame = pd.concat([kept, learn[columns]], ignore_index=True)
    train = LoadedData(
        frame,
        path=f"{base.path} + labelled traffic",
        style=base.style,
        dropped=base.dropped,
        rows_read=len(frame),
    )
    holdout = LoadedData(
        hold[columns].reset_index(drop=True),
        path="labelled traffic (newest)",
        style=base.style,
        rows_read=len(hold),
    )
    lineage = {
        "file": base.path,
        "file_rows": len(base.frame),
        "file_rows_relabelled": int(len(base.frame) - len(kept)),
        "traffic_rows": n,
        "traffic_rows_trained": len(learn),
        "holdout_rows": len(hold),
        "outcome_window": [d.isoformat() for d in window] if window else None,
        "holdout_served": [str(hold["served_at"].min()), str(hold["served_at"].max())]
        if len(hold)
        else None,
        "snapshot_sha256": snapshot_sha256(frame),
    }
    return RetrainingData(train, holdout, lineage)


def snapshot_sha256(frame: pd.DataFrame) -> str:
    """The training rows' fingerprint: the same rows in the same order give the same hash."""
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


# ---- one retraining, end to end ------------------------------------------------------------
OUTCOME_DAYS = 365
"""How far back a retraining reads the labelled traffic."""


class RetrainingFailed(RuntimeError):
    """The retraining could not produce a candidate (nothing was published)."""


def next_version(published: list[str], champion: str) -> str:
    """A retrain is a MINOR version: one above the highest MINOR of the champion's MAJOR."""
    major = int(champion.split(".")[0])
    minors = [int(v.split(".")[1]) for v in [*published, champion] if int(v.split(".")[0]) == major]
    return f"{major}.{max(minors) + 1}.0"


def run_retraining(
    *,
    s3: Any,
    bucket: str,
    registry: Any,
    data_path: Path,
    champion_bundle: Path,
    work: Path,
    at: dt.datetime,
    approval: str = "auto",
    outcome_days: int = OUTCOME_DAYS,
    seed: int = 0,
    run_id: str | None = None,
    train_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Learn from the file and the labelled traffic, compile, run every gate against the
    champion on the newest labelled traffic, publish the candidate with its lineage and gates,
    and let the registry approve it by `approval` (auto: all gates pass; manual: a person).

    Publishing is the last step: a retraining that stops anywhere before it leaves nothing in
    the registry. Raises RetrainingFailed when there is nothing to judge a candidate on.
    `train_options`: more arguments of `train` (a quicker fit in the tests)."""
    from avsev.data import load
    from avsev.monitoring.query import local_engine
    from avsev.serving.bundle import read_card

    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.gates import record, run_gates
    from avsev_tools.pipeline.train import save, train

    champion = read_card(champion_bundle)
    last = at.date()
    first = last - dt.timedelta(days=outcome_days - 1)
    days = [first + dt.timedelta(days=i) for i in range(outcome_days)]
    engine = local_engine(s3, bucket, days, folder=work / "records")
    try:
        traffic = labelled_traffic(engine, first, last)
    finally:
        engine.connection.close()
    if len(traffic) < MIN_HOLDOUT:
        raise RetrainingFailed(
            f"{len(traffic)} labelled rows of traffic from {first} to {last}: at least "
            f"{MIN_HOLDOUT} are needed to judge a candidate against model {champion.version}"
        )
    data = retraining_data(load(data_path), traffic, window=(first, last))

    def retrain(out: Path) -> Path:
        return save(train(data.train, seed=seed, **(train_options or {})), out)

    version = next_version(registry.versions(), champion.version)
    model_dir = retrain(work / "model")
    bundle = build_bundle(
        model_dir, version, out_root=work / "bundles", arch=champion.arch, parallel_comp=2
    )
    results = run_gates(
        bundle,
        champion_bundle,
        data.holdout,
        training=data.train,
        retrain=retrain,
        model_dir=model_dir,
        compile_arch=champion.arch,
        parallel_comp=2,
    )
    lineage = {
        **data.lineage,
        "champion": champion.version,
        "run_id": run_id,
        "seed": seed,
        "train_options": dict(train_options or {}),
    }
    entry = registry.publish(bundle, training_data=data_path, lineage={"retraining": lineage})
    decision = record(registry, version, results, policy=approval)  # type: ignore[arg-type]
    return {
        "version": version,
        "bundle": str(bundle),
        "published": entry.get("published", False),
        "decision": decision,
        "gates": [r.to_dict() for r in results],
        "lineage": lineage,
    }


def held_message(produced: Mapping[str, Any]) -> tuple[str, str]:
    """The alert for a candidate its gates hold: which failed, and why."""
    failed = [g for g in produced.get("gates", []) if not g.get("passed")]
    lines = [f"- {g['name']}: {g.get('reason')}" for g in failed] or [
        "- all gates passed; the policy waits for a person to approve"
    ]
    return (
        f"avsev retrained model {produced.get('version')} held",
        f"Model {produced.get('version')} is published but not approved:\n" + "\n".join(lines),
    )
