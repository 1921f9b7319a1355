"""The rollout metrics the autopilot puts each tick (the CloudWatch dashboard's alias weights
and autopilot step): from the handler on moto, as CloudWatch then holds them."""

from __future__ import annotations

import datetime as dt

import pytest
from avsev.rollout.metrics import rollout_metrics
from avsev.serving.observability import SERVICE
from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module
from lambda_support import scheduled_event
from test_autopilot import World
from test_aws_monitoring import BUCKET, aws, function  # noqa: F401  (fixtures)

EVENT = scheduled_event("2026-11-20T08:05:00Z")


def values(data: list[dict]) -> dict[tuple[str, str | None], float]:
    return {
        (
            d["MetricName"],
            next((x["Value"] for x in d["Dimensions"] if x["Name"] == "FunctionVersion"), None),
        ): d["Value"]
        for d in data
    }


def test_metrics_of_a_canary_and_of_no_canary():
    running = {"autopilot": "running", "held_minutes": 12.5, "candidate_version": "2"}
    data = rollout_metrics("fn", {"1": 0.9, "2": 0.1}, running, service="stage")
    assert values(data) == {
        ("AliasWeight", "1"): 90.0,
        ("AliasWeight", "2"): 10.0,
        ("CandidateWeight", None): 10.0,
        ("AutopilotRunning", None): 1.0,
        ("AutopilotHeldMinutes", None): 12.5,
    }
    assert all(
        {"Name": "FunctionName", "Value": "fn"} in d["Dimensions"]
        and {"Name": "service", "Value": "stage"} in d["Dimensions"]
        for d in data
    )
    # 50/50: the candidate is the second version the alias lists, not the larger weight
    half = rollout_metrics("fn", {"1": 0.5, "2": 0.5}, running, service="s")
    assert values(half)[("CandidateWeight", None)] == 50.0
    done = rollout_metrics(
        "fn", {"1": 1.0}, {"autopilot": "idle"}, service="s", previous_versions=("1", "2")
    )
    assert values(done) == {
        ("AliasWeight", "1"): 100.0,
        ("AliasWeight", "2"): 0.0,  # the rolled-back candidate's line ends at 0
        ("CandidateWeight", None): 0.0,
        ("AutopilotRunning", None): 0.0,
    }


def cloudwatch_value(cw, name: str, **dims: str) -> float | None:
    now = dt.datetime.now(dt.UTC)
    points = cw.get_metric_statistics(
        Namespace="Avsev",
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(hours=1),
        Period=3600,
        Statistics=["Minimum"],
    )["Datapoints"]
    return min(p["Minimum"] for p in points) if points else None


@pytest.fixture()
def handler(monkeypatch):
    env = {"DATA_BUCKET": BUCKET, "PREDICT_FUNCTION_NAME": "predict", "ALARM_PREFIX": "avsev-"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return lambda: load_handler_module("autopilot", env).handler(
        EVENT, LocalContext(function_name="ap")
    )


def test_each_tick_puts_the_weights_and_the_step(aws, function, handler):  # noqa: F811
    world = World(aws, function)
    world.now = dt.datetime.now(dt.UTC)  # the handler's clock is the real one
    world.controller().start("2")  # 10%, now
    assert handler()["state"] == "holding"
    cw = aws["cloudwatch"]
    dims = {"FunctionName": "predict", "service": SERVICE}  # the stage's, from the environment
    assert cloudwatch_value(cw, "AliasWeight", FunctionVersion="1", **dims) == 90.0
    assert cloudwatch_value(cw, "AliasWeight", FunctionVersion="2", **dims) == 10.0
    assert cloudwatch_value(cw, "CandidateWeight", **dims) == 10.0
    assert cloudwatch_value(cw, "AutopilotRunning", **dims) == 1.0

    # the A/B job advises rollback: the tick rolls back, and says so in the metrics
    world.ab("rollback", reason="the candidate is slower")
    world.report.as_of = dt.datetime.now(dt.UTC).isoformat()
    aws["s3"].put_object(
        Bucket=BUCKET, Key="reports/ab/latest.json", Body=world.report.model_dump_json()
    )
    assert handler()["state"] == "rolled_back"
    assert cloudwatch_value(cw, "AliasWeight", FunctionVersion="2", **dims) == 0.0
    assert cloudwatch_value(cw, "CandidateWeight", **dims) == 0.0
    assert cloudwatch_value(cw, "AutopilotRunning", **dims) == 0.0
