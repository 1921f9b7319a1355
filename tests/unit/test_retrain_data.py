"""What a retraining learns from (`avsev_tools.pipeline.retrain`): real NTSB reports served as
records, outcomes posted later, both written as the record tables and read back by SQL in
DuckDB; the file's rows plus the labelled traffic, the newest held out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from avsev.constants import PARITY_CHECK_REQUESTS
from avsev.monitoring.offline import write_tables
from avsev.monitoring.query import DuckDBEngine
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.schema import SEVERITIES, AccidentReport
from avsev_tools.pipeline.retrain import MIN_HOLDOUT, labelled_traffic, retraining_data

DAY = dt.datetime(2026, 5, 4, 8, tzinfo=dt.UTC)


def served(
    report: dict, at: dt.datetime, *, request_id: str, shadow: bool = False
) -> PredictionRecord:
    parsed = AccidentReport.model_validate(report)
    return PredictionRecord(
        request_id=request_id,
        ev_id=parsed.ev_id,
        timestamp=at,
        model_name="avsev-severity",
        model_version="1.0.0",
        function_version="1",
        shadow=shadow,
        features=parsed.model_dump(mode="json", exclude={"ev_id"}),
        probabilities={s: 0.25 for s in SEVERITIES},
        predicted="None",
        latency_ms=1.0,
    )


def outcome(
    ev_id: str, severity: str, at: dt.datetime, request_id: str = "o-1", seq: int = 0
) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=request_id, ev_id=ev_id, timestamp=at, actual_severity=severity, seq=seq
    )


@pytest.fixture()
def traffic_rows(real_data):
    reports = real_data.reports()
    return reports[-600:], list(real_data.frame["severity"])[-600:]


def test_the_labelled_traffic_is_the_served_reports_with_their_latest_outcome(
    real_data, traffic_rows, tmp_path: Path
):
    reports, truth = traffic_rows
    records = []
    for i, r in enumerate(reports[:50]):
        records.append(served(r, DAY + dt.timedelta(minutes=i), request_id=f"r-{i}"))
    # only the first 40 get an outcome; the first one is corrected by a later outcome
    records += [
        outcome(reports[i]["ev_id"], truth[i], DAY + dt.timedelta(hours=2)) for i in range(40)
    ]
    wrong = next(s for s in SEVERITIES if s != truth[0])
    records.insert(0, outcome(reports[0]["ev_id"], wrong, DAY + dt.timedelta(hours=1), "o-0"))
    # a shadow prediction and a parity check are not traffic
    records.append(served(reports[50], DAY, request_id="s-1", shadow=True))
    records.append(served(reports[51], DAY, request_id=f"{PARITY_CHECK_REQUESTS}x"))
    records += [
        outcome(reports[i]["ev_id"], truth[i], DAY + dt.timedelta(hours=2), "o-2") for i in (50, 51)
    ]
    write_tables(tmp_path, records)

    frame = labelled_traffic(DuckDBEngine.over_folder(tmp_path), DAY.date(), DAY.date())
    assert list(frame["ev_id"]) == [r["ev_id"] for r in reports[:40]]
    assert list(frame["severity"]) == truth[:40]  # the correction (received later) won
    # the report's fields come back as they were served
    for column in ("make", "number_of_engines", "broad_phase_of_flight", "event_date"):
        expected = real_data.frame[column].iloc[-600:-560].tolist()
        got = frame[column].tolist()
        assert [None if e != e else e for e in expected] == [None if g != g else g for g in got], (
            column
        )


def test_the_newest_traffic_is_held_out_and_relabelled_events_come_from_the_traffic(real_data):
    import pandas as pd

    n = 1000
    traffic = real_data.frame.iloc[-n:].copy()
    traffic["served_at"] = [DAY + dt.timedelta(minutes=i) for i in range(n)]
    traffic["severity"] = "Fatal"  # the traffic's truth differs from the file's
    traffic = traffic.sample(frac=1, random_state=3)  # in no particular order
    data = retraining_data(real_data, traffic, holdout_share=0.25)
    assert len(data.holdout.frame) == 250
    newest = set(real_data.frame["ev_id"].iloc[-250:])
    assert set(data.holdout.frame["ev_id"]) == newest
    assert not newest & set(data.train.frame["ev_id"])
    trained = data.train.frame.set_index("ev_id")
    for ev_id in real_data.frame["ev_id"].iloc[-n:-250]:
        assert trained.loc[ev_id, "severity"] == "Fatal"
    assert len(data.train.frame) == len(real_data.frame) - 250
    assert data.lineage["traffic_rows"] == n and data.lineage["file_rows_relabelled"] == n
    assert isinstance(data.train.frame, pd.DataFrame) and data.train.labels  # trainable
    # a small amount of traffic is all held out: nothing to learn from yet
    small = retraining_data(real_data, traffic.iloc[: MIN_HOLDOUT - 1])
    assert len(small.holdout.frame) == MIN_HOLDOUT - 1
    assert small.lineage["traffic_rows_trained"] == 0
    # the snapshot fingerprint is the rows': the same rows give the same hash
    assert (
        retraining_data(real_data, traffic).lineage["snapshot_sha256"]
        == data.lineage["snapshot_sha256"]
    )


def test_an_event_served_many_times_is_learned_or_judged_once_as_last_served(
    real_data, traffic_rows, tmp_path: Path
):
    """Clients send the same accident again (a later report of it, fields left blank): the
    labelled traffic holds each event once, with the report last served and its latest
    outcome, so the split never puts one event both in the trained rows and in the holdout."""
    reports, truth = traffic_rows
    blanks = ("broad_phase_of_flight", "purpose_of_flight", "weather_condition")
    n = 400
    records: list[PredictionRecord | OutcomeRecord] = []
    for lap in range(3):  # the same 400 events served three times, in a different order
        order = range(n) if lap != 1 else reversed(range(n))
        for k, i in enumerate(order):
            at = DAY + dt.timedelta(hours=lap, seconds=k)
            report = (
                reports[i]
                if lap == 0
                else {f: v for f, v in reports[i].items() if f not in blanks or (i + lap) % 5 == 0}
            )
            records.append(served(report, at, request_id=f"r-{lap}-{i}"))
        records += [
            outcome(
                reports[i]["ev_id"],
                truth[i],
                DAY + dt.timedelta(hours=lap, minutes=30),
                f"o-{lap}",
                seq=i,
            )
            for i in range(n)
        ]
    write_tables(tmp_path, records)

    frame = labelled_traffic(DuckDBEngine.over_folder(tmp_path), DAY.date(), DAY.date())
    assert len(frame) == n and frame["ev_id"].is_unique
    index = {r["ev_id"]: i for i, r in enumerate(reports[:n])}
    for _, row in frame.iterrows():  # the report as served last (lap 2), not the first
        i = index[row["ev_id"]]
        kept = (i + 2) % 5 == 0
        for f in blanks:
            got = None if row[f] != row[f] else row[f]
            assert got == (reports[i].get(f) if kept else None), (row["ev_id"], f)
    assert list(frame["served_at"]) == sorted(frame["served_at"])
    data = retraining_data(real_data, frame)
    held, trained = set(data.holdout.frame["ev_id"]), data.train.frame["ev_id"]
    assert len(held) == len(data.holdout.frame) == MIN_HOLDOUT
    assert not held & set(trained) and trained.is_unique
    assert len(data.train.frame) + len(held) == len(real_data.frame)
