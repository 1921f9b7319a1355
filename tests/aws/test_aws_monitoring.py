"""The scheduled jobs, their functions and the rollout commands against moto (S3,
CloudWatch, SNS, Lambda, CodeDeploy): reports, metrics, alerts, guarded transitions."""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import zipfile
from pathlib import Path

import boto3
import pytest
from ab_traffic import records
from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis, run_drift_check
from avsev.monitoring.query import write_records_parquet
from avsev.rollout.aliases import RolloutError, Rollouts, s3_audit, s3_audit_entries
from lambda_support import scheduled_event
from moto import mock_aws

BUCKET = "avsev-data"
AT = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)


@pytest.fixture()
def aws(fake_aws):
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sns = boto3.client("sns")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield {
            "s3": s3,
            "sns": sns,
            "topic": topic,
            "sqs": sqs,
            "queue": queue,
            "cloudwatch": boto3.client("cloudwatch"),
        }


def clients(aws) -> Clients:
    return Clients(aws["s3"], aws["cloudwatch"], aws["sns"])


def put_records(s3, recs, day: dt.date, name: str) -> None:
    """As the delivery streams write them: Parquet objects under the record type's day partition."""
    for kind in ("prediction", "outcome"):
        lines = [r.model_dump_json() for r in recs if r.record_type == kind]
        if lines:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"{name}.parquet"
                write_records_parquet(lines, f"{kind}s", path)
                s3.upload_file(str(path), BUCKET, f"{kind}s/dt={day.isoformat()}/{name}.parquet")


def rollup(aws, card=None, at=AT):
    """The hourly rollup job, with DuckDB standing in for Athena."""
    return rollup_with_duckdb(aws["s3"], BUCKET, card, at)


def alerts_received(aws) -> int:
    msgs = (
        aws["sqs"]
        .receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    return len(msgs)


def served_records(real_data, real_bundle, n: int, shift: float = 0.0):
    from avsev.serving.records import PredictionRecord

    out = []
    for i, row in enumerate(real_data.reports()[:n]):
        features = {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in row.items()
            if k != "ev_id"
        }
        if shift and "dec_latitude" in features:
            features["dec_latitude"] = min(90.0, features["dec_latitude"] + shift)
        out.append(
            PredictionRecord(
                request_id=f"r{i}",
                ev_id=row["ev_id"],
                timestamp=AT,
                model_name=real_bundle.name,
                model_version=real_bundle.version,
                function_version="3",
                features=features,
                probabilities={c: 0.25 for c in real_bundle.classes},
                predicted="None",
                latency_ms=0.1,
            )
        )
    return out


def test_drift_check_writes_report_metrics_and_alerts_once(aws, real_data, real_bundle):
    # Given a day of records whose latitude moved north by 5 degrees
    put_records(
        aws["s3"], served_records(real_data, real_bundle, 800, shift=5.0), AT.date(), "part-0001"
    )
    # When the rollup and the scheduled check run, and the same event is delivered again
    rollup(aws, real_bundle.card)
    first = run_drift_check(clients(aws), BUCKET, real_bundle.card, AT, topic_arn=aws["topic"])
    again = run_drift_check(clients(aws), BUCKET, real_bundle.card, AT, topic_arn=aws["topic"])
    # Then one report key for the window, the drift found, metrics published, one alert
    assert (
        first.keys == again.keys
        and first.keys["json"] == "reports/drift/2026-11-20/report.json"
    )
    report = json.loads(
        aws["s3"].get_object(Bucket=BUCKET, Key=first.keys["json"])["Body"].read()
    )
    assert report["rows"] == 800 and "dec_latitude" in report["drifted_features"]
    assert (
        "# Drift report"
        in aws["s3"]
        .get_object(Bucket=BUCKET, Key=first.keys["markdown"])["Body"]
        .read()
        .decode()
    )
    assert first.alert_sent and not again.alert_sent
    assert alerts_received(aws) == 1
    metrics = aws["cloudwatch"].list_metrics(Namespace="Avsev", MetricName="DriftScore")["Metrics"]
    assert {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "Feature"} >= {
        "dec_latitude",
        "make",
    }


def test_empty_bucket_gives_insufficient_data_reports(aws, real_bundle):
    rollup(aws, real_bundle.card)
    drift = run_drift_check(clients(aws), BUCKET, real_bundle.card, AT, topic_arn=aws["topic"])
    assert drift.report.status == "insufficient_data" and not drift.alert_sent
    ab = run_ab_analysis(clients(aws), BUCKET, AT, topic_arn=aws["topic"])
    assert ab.report.decision == "insufficient_data"
    assert aws["s3"].head_object(Bucket=BUCKET, Key=ab.keys["json"])
    assert alerts_received(aws) == 0


def test_ab_analysis_reads_partitions_publishes_and_alerts_on_rollback(aws):
    a_p, a_o = records("1.0.0", 1200, 0.65, 1)
    b_p, b_o = records("1.1.0", 600, 0.45, 2, start=10_000)
    day = AT.date()
    put_records(aws["s3"], a_p + b_p, day - dt.timedelta(days=1), "part-1")
    put_records(aws["s3"], a_o + b_o, day, "part-2")  # outcomes arrive a day later
    aws["s3"].put_object(Bucket=BUCKET, Key=f"predictions/dt={day}/garbage", Body=b"not json\n{}\n")
    rollup(aws)
    out = run_ab_analysis(clients(aws), BUCKET, AT, topic_arn=aws["topic"])
    report = out.report
    assert report.decision == "rollback"
    (skipped,) = report.skipped.skipped_objects
    assert skipped["object"] == f"predictions/dt={day}/garbage"
    assert "not a readable Parquet object" in skipped["reason"]
    assert report.versions["1.1.0"].labelled == 600
    assert out.keys["json"] == "reports/ab/2026-11-20T06/report.json"
    assert out.alert_sent and alerts_received(aws) == 1
    names = {m["MetricName"] for m in aws["cloudwatch"].list_metrics(Namespace="Avsev")["Metrics"]}
    assert {"AccuracyDelta", "WeightedF1Delta", "RollbackAdvised"} <= names
    assert not run_ab_analysis(clients(aws), BUCKET, AT, topic_arn=aws["topic"]).alert_sent


def test_the_controllers_parity_checks_are_recorded_but_counted_nowhere(
    aws, real_data, real_bundle
):
    """Each deploy's parity check sends the card's golden requests through the new version:
    they are records like any other, with request ids no API client can have, and the rollups
    (so drift and A/B) leave them out."""
    from avsev.constants import PARITY_CHECK_REQUESTS

    served = served_records(real_data, real_bundle, 300)
    parity = [
        r.model_copy(update={"request_id": f"{PARITY_CHECK_REQUESTS}7f3a#{i}"})
        for i, r in enumerate(served_records(real_data, real_bundle, 8))
    ]
    put_records(aws["s3"], served + parity, AT.date(), "p")
    rollup(aws, real_bundle.card)
    out = run_drift_check(clients(aws), BUCKET, real_bundle.card, AT, days=1)
    report = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=out.keys["json"])["Body"].read())
    assert report["rows"] == 300


def test_functions_run_on_a_scheduled_event(
    aws, real_data, real_bundle_dir, real_bundle, monkeypatch
):
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module

    put_records(aws["s3"], served_records(real_data, real_bundle, 300), AT.date(), "p")
    rollup(aws, real_bundle.card)
    event = scheduled_event(AT.isoformat().replace("+00:00", "Z"))
    env = {
        "DATA_BUCKET": BUCKET,
        "ALERTS_TOPIC_ARN": aws["topic"],
        "MODEL_BUNDLE_PATH": str(real_bundle_dir),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    drift = load_handler_module("drift_check", env).handler(
        event, LocalContext(function_name="drift")
    )
    assert drift["report"] == "reports/drift/2026-11-20/report.json"
    stored = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=drift["report"])["Body"].read())
    assert stored["rows"] == 300 and stored["dataset_drift"] is drift["dataset_drift"]
    assert drift["alert_sent"] is stored["drift_found"]
    # the handlers answer the same JSON as ever (the jobs' typed results converted)
    assert list(json.loads(json.dumps(drift))) == ["dataset_drift", "report", "alert_sent"]
    ab = load_handler_module("ab_analysis", env).handler(event, LocalContext(function_name="ab"))
    assert json.dumps(ab) == json.dumps(
        {
            "decision": "insufficient_data",
            "report": "reports/ab/2026-11-20T06/report.json",
            "alert_sent": False,
        }
    )


# ---- rollouts -----------------------------------------------------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return {}\n")
    return buf.getvalue()


@pytest.fixture()
def function(aws):
    """A function with three published versions (each its own model) and alias live → 1."""
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(
        FunctionName="predict",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": _zip()},
        Environment={"Variables": {}},
    )
    for v in ("1.0.0", "1.1.0", "2.0.0"):
        lam.update_function_configuration(
            FunctionName="predict",
            Environment={"Variables": {"MODEL_BUNDLE_PATH": f"/opt/avsev-severity-{v}"}},
        )
        lam.publish_version(FunctionName="predict")
    lam.create_alias(FunctionName="predict", Name="live", FunctionVersion="1")
    aws["cloudwatch"].put_metric_alarm(
        AlarmName="avsev-predict-new-version-errors",
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    return lam


def rollouts(aws, lam, audit, **kw) -> Rollouts:
    return Rollouts(
        lam,
        "predict",
        cloudwatch=aws["cloudwatch"],
        alarm_prefix="avsev-",
        audit=audit.append,
        **kw,
    )


def test_start_step_promote_and_rollback_move_the_weights(aws, function):
    audit: list[dict] = []
    r = rollouts(aws, function, audit)
    status = r.status()
    assert status["weights"] == {"1": 1.0} and status["model_versions"] == {"1": "1.0.0"}
    assert (
        list(status["alarms"]) == ["avsev-predict-new-version-errors"]
        and "ALARM" not in status["alarms"].values()
    )
    assert r.start("2", 0.1)["weights"] == {"1": 0.9, "2": 0.1}
    assert r.start("2", 0.1)["changed"] is False  # idempotent
    assert r.status()["model_versions"] == {"1": "1.0.0", "2": "1.1.0"}
    with pytest.raises(RolloutError, match="at most two versions"):
        r.start("3", 0.1)
    assert r.step(0.5)["weights"] == {"1": 0.5, "2": 0.5}
    back = r.rollback()
    assert back["weights"] == {"1": 1.0}
    alias = function.get_alias(FunctionName="predict", Name="live")
    assert alias["FunctionVersion"] == "1" and not (alias.get("RoutingConfig") or {}).get(
        "AdditionalVersionWeights"
    )
    assert r.rollback()["changed"] is False
    r.start("2", 0.2)
    assert r.promote()["weights"] == {"2": 1.0}
    assert [e["action"] for e in audit] == ["start", "step", "rollback", "start", "promote"]
    assert audit[-1]["before"] == {"1": 0.8, "2": 0.2} and audit[-1]["after"] == {"2": 1.0}


def test_guards_refuse_on_alarm_and_ab_rollback_unless_forced(aws, function):
    audit: list[dict] = []
    cw = aws["cloudwatch"]
    cw.set_alarm_state(
        AlarmName="avsev-predict-new-version-errors", StateValue="ALARM", StateReason="test"
    )
    r = rollouts(aws, function, audit)
    with pytest.raises(RolloutError, match="avsev-predict-new-version-errors is in ALARM"):
        r.start("2", 0.1)
    assert r.status()["weights"] == {"1": 1.0}
    forced = r.start("2", 0.1, force="hotfix approved by on-call")
    assert forced["audit"]["forced"] and forced["audit"]["overridden_guards"]
    with pytest.raises(RolloutError, match="refusing to promote"):
        r.promote()
    assert r.rollback()["weights"] == {"1": 1.0}  # rolling back is never refused
    cw.set_alarm_state(
        AlarmName="avsev-predict-new-version-errors", StateValue="OK", StateReason="test"
    )

    advice = rollouts(aws, function, audit, ab_advice=lambda: "rollback")
    with pytest.raises(RolloutError, match="A/B report advises rollback"):
        advice.start("2", 0.1)


def test_audit_goes_to_s3_and_the_cli_drives_it(aws, function, capsys):
    from avsev_tools.cli import main

    Rollouts(function, "predict", audit=s3_audit(aws["s3"], BUCKET)).start("2", 0.25)
    keys = [
        o["Key"]
        for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="reports/rollout/audit/")[
            "Contents"
        ]
    ]
    # the entry in the function's log (key ordered by the writer's clock) and the index
    index, entry = keys  # listed in key order
    assert entry.startswith("reports/rollout/audit/predict/log/")
    assert entry.rsplit("/", 1)[-1].split("-")[1] == "start"
    assert index == "reports/rollout/audit/predict/index.json"
    assert main(["rollout", "status", "--function", "predict", "--bucket", BUCKET]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == {"1": 0.75, "2": 0.25}
    assert main(["rollout", "rollback", "--function", "predict", "--bucket", BUCKET]) == 0
    capsys.readouterr()
    aws["cloudwatch"].set_alarm_state(
        AlarmName="avsev-predict-new-version-errors", StateValue="ALARM", StateReason="t"
    )
    assert (
        main(["rollout", "start", "--function", "predict", "--version", "2", "--bucket", BUCKET])
        == 3
    )
    assert "refused" in capsys.readouterr().err
    # the refused start wrote nothing
    assert [e["action"] for e in s3_audit_entries(aws["s3"], BUCKET, "predict")] == [
        "start",
        "rollback",
    ]


def test_offline_drift_command_on_an_export_file(real_bundle_dir, real_data_path, capsys):
    from avsev_tools.cli import main

    assert main(["drift", "--bundle", str(real_bundle_dir), "--data", str(real_data_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert isinstance(report["dataset_drift"], bool) and report["rows"] == 18_587
    assert report["features"]["make"]["test"] == "jensen_shannon"
    # the whole file spans 40 years; the reference is its older 70%: the event mix moved
    assert report["concept_drift"]["status"] == "checked"
