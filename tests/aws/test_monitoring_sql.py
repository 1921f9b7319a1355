"""The rollup queries: one text in two dialects, Athena's client side against moto, how often a
record is scanned, late outcomes, and bad objects and records that are skipped with a reason."""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from pathlib import Path

import boto3
import pytest
import sqlglot
from ab_traffic import T0, records
from avsev.monitoring import rollups
from avsev.monitoring.jobs import (
    Clients,
    rollup_with_duckdb,
    run_ab_analysis,
    run_rollup,
    window_days,
)
from avsev.monitoring.query import (
    AthenaEngine,
    DuckDBEngine,
    local_engine,
    to_duckdb,
    write_records_parquet,
)
from avsev.serving.records import OutcomeRecord, outcome_records
from avsev.serving.schema import Outcome
from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module
from lambda_support import scheduled_event
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends

BUCKET = "avsev-data"


def test_every_query_parses_in_trino_and_duckdb_and_runs_in_duckdb(real_bundle):
    card = real_bundle.card
    queries = rollups.all_queries(card.reference().to_dict(), card.version, T0.date())
    engine = DuckDBEngine({})  # empty, typed tables
    for name, sql in queries.items():
        assert sqlglot.parse_one(sql, read="trino"), name
        duck = to_duckdb(sql)
        assert sqlglot.parse_one(duck, read="duckdb"), name
        assert engine.query(sql) is not None, name  # DuckDB plans and runs it
    assert "approx" not in " ".join(queries.values()).lower()  # exact counts only


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put(s3, recs, day: dt.date, name: str) -> None:
    for kind in ("prediction", "outcome"):
        lines = [r.model_dump_json() for r in recs if r.record_type == kind]
        if lines:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "x.parquet"
                write_records_parquet(lines, f"{kind}s", path)
                s3.upload_file(str(path), BUCKET, f"{kind}s/dt={day}/{name}.parquet")


class Counting:
    """An engine that counts the queries sent to it, by kind."""

    def __init__(self, inner):
        self.inner = inner
        self.skipped = inner.skipped
        self.sent: list[tuple[str, str]] = []

    def query(self, sql: str):
        kind = "labels" if "FROM outcomes" in sql else "drift" if "GROUPING" in sql else "served"
        found = re.search(r"dt = '([0-9-]+)'", sql)
        assert found, sql
        day = found.group(1)
        self.sent.append((kind, day))
        return self.inner.query(sql)


def test_each_record_is_scanned_a_bounded_number_of_times_and_late_outcomes_count(s3):
    # Given predictions on day 0, and their outcomes arriving on day 3
    day0 = T0.date()
    a_p, a_o = records("1.0.0", 300, 0.6, 1)
    b_p, b_o = records("1.1.0", 300, 0.7, 2, start=10_000)
    put(s3, a_p + b_p, day0, "p")
    late = [o.model_copy(update={"timestamp": T0 + dt.timedelta(days=3)}) for o in a_o + b_o]
    put(s3, late, day0 + dt.timedelta(days=3), "o")
    # When the hourly rollup runs for five days
    sent: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for hour in range(5 * 24):
            at = T0 + dt.timedelta(hours=hour, minutes=5)
            engine = Counting(local_engine(s3, BUCKET, window_days(at, 7), folder=Path(folder)))
            run_rollup(engine, s3, BUCKET, None, at, days=7)
            for key in engine.sent:
                sent[key] = sent.get(key, 0) + 1
            if hour == 24 * 3 - 1:  # the end of day 2: no outcome yet
                report = run_ab_analysis(
                    Clients(s3, boto3.client("cloudwatch"), None), BUCKET, at
                ).report
                assert report.records.labelled == 0
    # Then day 0's predictions were scanned for `served` each hour of day 0 and once after;
    # for `labels` each hour of days 0 and 1, then once a day (days 2, 3, 4)
    assert sent[("served", str(day0))] == 24 + 1
    assert sent[("labels", str(day0))] == 48 + 3
    # and the outcomes that came three days late count
    report = run_ab_analysis(
        Clients(s3, boto3.client("cloudwatch"), None), BUCKET, T0 + dt.timedelta(days=4)
    ).report
    assert report.records.labelled == 600
    assert report.versions["1.1.0"].labelled == 300


def test_a_closed_day_is_rolled_up_once_more_and_then_left_alone(s3):
    day0 = T0.date()
    put(s3, records("1.0.0", 50, 0.6, 1)[0], day0, "p")
    at = T0 + dt.timedelta(days=1, hours=1)
    first = rollup_with_duckdb(s3, BUCKET, None, at, days=2).computed
    again = rollup_with_duckdb(s3, BUCKET, None, at + dt.timedelta(hours=1), days=2).computed
    assert rollups.rollup_key("served", day0) in first
    assert rollups.rollup_key("served", day0) not in again  # final: day 0 is over
    assert rollups.rollup_key("labels", day0) in again  # yesterday's labels: every run


def test_newer_schema_unknown_fields_empty_partitions_and_days_without_outcomes(s3):
    day0 = T0.date()
    preds, _ = records("1.0.0", 100, 0.6, 1)
    newer = [
        p.model_copy(update={"schema_version": 2, "request_id": f"n{p.request_id}"})
        for p in preds[:7]
    ]
    lines = [p.model_dump_json()[:-1] + ', "a_field_from_the_future": 1}' for p in newer]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.parquet"
        write_records_parquet(lines + [p.model_dump_json() for p in preds], "predictions", path)
        s3.upload_file(str(path), BUCKET, f"predictions/dt={day0}/mixed.parquet")
    s3.put_object(Bucket=BUCKET, Key=f"predictions/dt={day0 - dt.timedelta(days=1)}/", Body=b"")
    at = T0 + dt.timedelta(hours=2)
    rollup_with_duckdb(s3, BUCKET, None, at)
    report = run_ab_analysis(Clients(s3, boto3.client("cloudwatch"), None), BUCKET, at).report
    assert report.records.skipped_newer_schema == 7
    assert report.versions["1.0.0"].requests == 100  # the 7 newer records are not served rows
    assert report.records.labelled == 0  # a day with no outcomes is no error
    assert report.decision == "insufficient_data"
    skipped = report.skipped.skipped_objects
    assert [s["object"] for s in skipped] == [f"predictions/dt={day0 - dt.timedelta(days=1)}/"]


# ---- Athena's client side, against moto, with DuckDB computing what Athena would -----------


@pytest.fixture()
def athena_bridge(s3):
    """moto records Athena calls but runs no SQL: answer each query with DuckDB over the
    bucket's records, as Athena would over the Glue tables."""
    backend = athena_backends["123456789012"]["us-east-1"]
    original = backend.start_query_execution
    seen: list[str] = []

    def start(query, context, config, workgroup, execution_parameters):
        seen.append(query)
        with tempfile.TemporaryDirectory() as folder:
            engine = local_engine(
                s3, BUCKET, [T0.date(), T0.date() + dt.timedelta(days=1)], folder=Path(folder)
            )
            rows = engine.query(query)
        names = list(rows[0]) if rows else ["n"]
        header = {"Data": [{"VarCharValue": n} for n in names]}
        data = [
            {"Data": [{} if r[n] is None else {"VarCharValue": _text(r[n])} for n in names]}
            for r in rows
        ]
        info = [{"Name": n, "Type": _athena_type(rows, n)} for n in names]
        backend.query_results_queue.append(QueryResults(rows=[header, *data], column_info=info))
        return original(query, context, config, workgroup, execution_parameters)

    backend.start_query_execution = start
    athena = boto3.client("athena")
    athena.create_work_group(
        Name="avsev-monitoring",
        Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"}},
    )
    yield {"athena": athena, "seen": seen}
    del backend.start_query_execution


def _text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _athena_type(rows, name: str) -> str:
    sample = next((r[name] for r in rows if r[name] is not None), "")
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, int):
        return "bigint"
    if isinstance(sample, float):
        return "double"
    return "varchar"


def test_athena_engine_sends_the_query_and_reads_typed_results(s3, athena_bridge):
    preds, outs = records("1.0.0", 200, 0.6, 1)
    put(s3, preds + outs, T0.date(), "p")
    engine = AthenaEngine(
        athena_bridge["athena"], "avsev-monitoring", "avsev_records", poll_seconds=0
    )
    with tempfile.TemporaryDirectory() as folder:
        local = local_engine(s3, BUCKET, [T0.date()], folder=Path(folder))
        for sql in (rollups.served_sql(T0.date()), rollups.labels_sql(T0.date(), T0.date())):
            # sums of doubles come in any order from parallel threads: equal to rounding
            key = lambda r: sorted(  # noqa: E731
                (k, f"{v:.9g}" if isinstance(v, float) else str(v)) for k, v in r.items()
            )
            assert sorted(map(key, engine.query(sql))) == sorted(map(key, local.query(sql)))
    assert athena_bridge["seen"][0] == rollups.served_sql(T0.date())  # Trino text, as written
    executions = athena_bridge["athena"].list_query_executions(WorkGroup="avsev-monitoring")
    assert len(executions["QueryExecutionIds"]) == 2


def test_rollup_function_on_a_scheduled_event(
    s3, athena_bridge, real_bundle, real_bundle_dir, monkeypatch
):
    preds, outs = records("1.0.0", 120, 0.6, 1)
    put(s3, preds + outs, T0.date(), "p")
    env = {
        "DATA_BUCKET": BUCKET,
        "ATHENA_WORKGROUP": "avsev-monitoring",
        "GLUE_DATABASE": "avsev_records",
        "MODEL_BUNDLE_PATH": str(real_bundle_dir),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    event = scheduled_event((T0 + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"))
    module = load_handler_module("rollup", env)
    module.AthenaEngine = lambda client, wg, db: AthenaEngine(client, wg, db, poll_seconds=0)
    out = module.handler(event, LocalContext(function_name="rollup"))
    assert list(json.loads(json.dumps(out))) == ["computed", "bytes_scanned"]
    assert isinstance(out["bytes_scanned"], int)
    assert rollups.rollup_key("served", T0.date()) in out["computed"]
    assert rollups.rollup_key("drift", T0.date(), real_bundle.version) in out["computed"]
    report = run_ab_analysis(
        Clients(s3, boto3.client("cloudwatch"), None), BUCKET, T0 + dt.timedelta(hours=1)
    ).report
    assert report.versions["1.0.0"].labelled == 120


def test_an_object_athena_cannot_read_is_left_out_and_reported(s3, athena_bridge, monkeypatch):
    engine = AthenaEngine(
        athena_bridge["athena"], "avsev-monitoring", "avsev_records", poll_seconds=0
    )
    calls: list[str] = []

    def run(sql):
        calls.append(sql)
        if len(calls) == 1:
            from avsev.monitoring.query import QueryFailed

            raise QueryFailed(
                "Athena query q1 failed: HIVE_BAD_DATA: Not valid Parquet file: "
                "s3://avsev-data/predictions/dt=2026-11-20/bad.parquet expected magic number"
            )
        return [{"n": 1}]

    monkeypatch.setattr(engine, "_run", run)
    assert engine.query(rollups.served_sql(T0.date())) == [{"n": 1}]
    assert "\"$path\" NOT IN ('s3://avsev-data/predictions/dt=2026-11-20/bad.parquet')" in calls[1]
    assert engine.skipped.objects[0]["object"].endswith("bad.parquet")
    assert sqlglot.parse_one(calls[1], read="trino")


def test_outcome_records_are_the_latest_per_event(s3):
    preds, outs = records("1.0.0", 40, 0.6, 1)
    put(s3, preds + outs, T0.date(), "p")
    wrong = [
        OutcomeRecord(
            request_id="w",
            ev_id=p.ev_id,
            timestamp=T0 + dt.timedelta(hours=1),
            actual_severity="Fatal" if p.predicted != "Fatal" else "None",
        )
        for p in preds
    ]
    put(s3, wrong, T0.date(), "w")
    rollup_with_duckdb(s3, BUCKET, None, T0 + dt.timedelta(hours=2))
    report = run_ab_analysis(
        Clients(s3, boto3.client("cloudwatch"), None), BUCKET, T0 + dt.timedelta(hours=2)
    ).report
    assert report.versions["1.0.0"].accuracy == 0.0  # every later outcome says it was wrong


def _wrong(severity: str) -> str:
    return "Fatal" if severity != "Fatal" else "None"


def _labels(rows) -> dict[tuple[str, str], int]:
    """(predicted, actual) → served predictions, from the labels query's rows."""
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["kind"] == "served":
            out[(r["predicted"], r["actual"])] = out.get((r["predicted"], r["actual"]), 0) + r["n"]
    return out


def test_of_two_conflicting_outcomes_in_one_body_the_later_wins(s3, athena_bridge):
    # Given predictions, and one body naming each event twice: wrong first, then right
    preds, _ = records("1.0.0", 40, 0.6, 1)
    put(s3, preds, T0.date(), "p")
    body = [
        Outcome(ev_id=p.ev_id, actual_severity=s)
        for p in preds
        for s in (_wrong(p.predicted), p.predicted)
    ]
    outs = [
        o.model_copy(update={"timestamp": T0 + dt.timedelta(hours=1)})
        for o in outcome_records(body, "one-request")
    ]
    # half the events stored in body order, half reversed (the answer is not the storage order)
    put(s3, outs[:40] + outs[40:][::-1], T0.date(), "o")
    sql = rollups.labels_sql(T0.date(), T0.date())
    with tempfile.TemporaryDirectory() as folder:
        local = local_engine(s3, BUCKET, [T0.date()], folder=Path(folder))
        answers = [_labels(local.query(sql)) for _ in range(3)]
    # Then every event is labelled by the later outcome of the body, on every run
    assert answers[0] == answers[1] == answers[2]
    assert all(predicted == actual for predicted, actual in answers[0])
    assert sum(answers[0].values()) == 40
    # and Athena is sent that very text (DuckDB runs its transpilation) and answers the same
    athena = AthenaEngine(
        athena_bridge["athena"], "avsev-monitoring", "avsev_records", poll_seconds=0
    )
    assert _labels(athena.query(sql)) == answers[0]
    assert athena_bridge["seen"] == [sql]
    assert rollups.LATEST_OUTCOME_ORDER in sql


def test_a_later_received_outcome_wins_whatever_time_its_client_gives(s3):
    preds, _ = records("1.0.0", 30, 0.6, 1)
    put(s3, preds, T0.date(), "p")
    first = [
        OutcomeRecord(
            request_id="z-first",
            ev_id=p.ev_id,
            timestamp=T0 + dt.timedelta(hours=1),
            actual_severity=_wrong(p.predicted),
            observed_at=dt.datetime(9999, 12, 31, tzinfo=dt.UTC) if i % 2 else T0,
            seq=0,
        )
        for i, p in enumerate(preds)
    ]
    later = [
        OutcomeRecord(
            request_id="a-later",  # a smaller request id: the received time decides first
            ev_id=p.ev_id,
            timestamp=T0 + dt.timedelta(hours=2),
            actual_severity=p.predicted,
            observed_at=T0 - dt.timedelta(days=30),
            seq=0,
        )
        for p in preds
    ]
    put(s3, later + first, T0.date(), "o")
    with tempfile.TemporaryDirectory() as folder:
        local = local_engine(s3, BUCKET, [T0.date()], folder=Path(folder))
        labels = _labels(local.query(rollups.labels_sql(T0.date(), T0.date())))
    assert all(predicted == actual for predicted, actual in labels)
    assert sum(labels.values()) == 30
