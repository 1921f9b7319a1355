"""The rollout autopilot against moto (Lambda alias, CloudWatch alarms, S3 audit)
on a simulated clock: 10% → 50% → 100% on evidence, rollback on advice or alarm, a stop when
inconclusive, refusals, and a controller that picks up where it was (its state is the alias
and the audit, so every tick below uses a new controller)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from avsev.monitoring.reports import (
    ABReport,
    AccuracyTest,
    Comparison,
    LatencyTest,
    RecordCounts,
    ShadowMcNemar,
)
from avsev.rollout.aliases import (
    Experiment,
    RolloutError,
    Rollouts,
    current_experiment,
    s3_audit,
    s3_audit_entries,
)
from avsev.rollout.autopilot import Autopilot, AutopilotConfig
from lambda_support import scheduled_event
from test_aws_monitoring import BUCKET, aws, function  # noqa: F401  (fixtures)

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def comparison(always_valid_p: float, still_needed: float) -> Comparison:
    """A comparison whose numbers the autopilot reads (the p-value, the rows still needed)."""
    return Comparison(
        decision_metric="log_loss",
        metric_champion=0.9,
        metric_candidate=0.88,
        metric_gain=0.02,
        metric_gain_ci95=(-0.01, 0.05),
        always_valid_p=always_valid_p,
        accuracy_delta=0.01,
        accuracy_delta_ci95=(-0.02, 0.04),
        accuracy_test=AccuracyTest(method="two_proportion_z", z=0.8, p_value=0.4),
        weighted_f1_delta=0.01,
        weighted_f1_delta_ci95=(-0.02, 0.04),
        latency=LatencyTest(test="mann_whitney_u", p_value=0.5, p95_ratio=1.0, p95_diff_ms=0.0),
        labelled_per_arm_needed=800.0,
        labelled_per_arm_still_needed=still_needed,
    )


class World:
    """The simulated clock, the latest A/B report and the alerts, shared by the controllers."""

    def __init__(self, services, lam, **rollout_kwargs):
        self.aws, self.lam = services, lam
        self.now = T0
        self.report: ABReport | None = None
        self.alerts: list[tuple[str, str]] = []
        self.rollout_kwargs = rollout_kwargs

    def later(self, minutes: float) -> None:
        self.now += dt.timedelta(minutes=minutes)

    def ab(self, decision: str, minutes_ago: float = 0.0, reason: str = "evidence") -> None:
        """The hourly A/B job wrote a report for this champion and candidate."""
        self.report = ABReport(
            generated_at=self.now.isoformat(),
            window={},
            records=RecordCounts(predictions=2000, labelled=800, skipped_newer_schema=0),
            champion="1.0.0",
            candidate="1.1.0",
            decision_metric="log_loss",
            versions={},
            comparison=comparison(always_valid_p=0.2, still_needed=400.0),
            decision=decision,
            reason=reason,
            as_of=(self.now - dt.timedelta(minutes=minutes_ago)).isoformat(),
        )

    def controller(self) -> Autopilot:
        s3 = self.aws["s3"]
        rollouts = Rollouts(
            self.lam,
            "predict",
            cloudwatch=self.aws["cloudwatch"],
            alarm_prefix="avsev-",
            audit=s3_audit(s3, BUCKET),
            clock=lambda: self.now,
            **self.rollout_kwargs,
        )
        return Autopilot(
            rollouts,
            index=lambda: s3_audit(s3, BUCKET).index("predict", store=True),
            ab_report=lambda: self.report,
            alert=lambda subject, message: self.alerts.append((subject, message)),
        )

    def weights(self) -> dict[str, float]:
        return self.controller().r.state().weights

    def actions(self) -> list[str]:
        return [e["action"] for e in s3_audit_entries(self.aws["s3"], BUCKET, "predict")]


@pytest.fixture()
def world(aws, function):  # noqa: F811
    return World(aws, function)


def test_a_better_candidate_walks_10_50_100_on_evidence(world):
    world.controller().start("2", AutopilotConfig(min_minutes=60))
    assert world.weights() == {"1": 0.9, "2": 0.1}
    world.later(20)
    world.ab("promote")
    held = world.controller().tick()
    assert held["state"] == "holding" and "40 more minutes" in held["reason"]
    world.later(45)  # 65 minutes at 10%, and the evidence is there
    world.ab("promote", minutes_ago=5)
    assert world.controller().tick()["state"] == "stepped"
    assert world.weights() == {"1": 0.5, "2": 0.5}
    world.later(35)  # the report read now was made before the 50% step: not evidence for it
    status = world.controller().status()
    assert status["step"] == "50%" and status["held_minutes"] == 35.0
    assert status["waiting_for"] == "an A/B report made after this step began"
    assert world.controller().tick()["state"] == "holding"
    world.ab("promote")
    promoted = world.controller().tick()
    assert promoted["state"] == "promoted" and world.weights() == {"2": 1.0}
    assert world.actions() == ["start", "autopilot-start", "step", "promote", "autopilot-end"]
    assert world.controller().tick()["state"] == "idle"  # repeating changes nothing


def test_a_worse_candidate_is_rolled_back_at_once_and_alerts(world):
    world.controller().start("2")
    world.later(5)  # long before the minimum hold
    world.ab("rollback", reason="the candidate is less accurate by -0.128")
    out = world.controller().tick()
    assert out["state"] == "rolled_back" and "less accurate" in out["reason"]
    assert world.weights() == {"1": 1.0}
    assert world.alerts and "rolled back" in world.alerts[0][0]
    assert world.actions()[-2:] == ["rollback", "autopilot-end"]


def test_an_alarm_rolls_back(world):
    world.controller().start("2")
    world.aws["cloudwatch"].set_alarm_state(
        AlarmName="avsev-predict-new-version-errors", StateValue="ALARM", StateReason="test"
    )
    out = world.controller().tick()
    assert out["state"] == "rolled_back" and "new-version-errors" in out["reason"]
    assert world.weights() == {"1": 1.0}


def test_inconclusive_past_max_hours_stops_for_a_person(world):
    world.controller().start("2", AutopilotConfig(min_minutes=60, max_hours=6))
    for _ in range(7):
        world.later(60)
        world.ab("continue")
        out = world.controller().tick()
    assert out["state"] == "stopped" and out["reason"].startswith("inconclusive: a person decides")
    assert world.weights() == {"1": 0.9, "2": 0.1}  # stays where it was
    assert world.alerts and world.controller().tick()["state"] == "idle"


def test_refusals_and_hand_changes(world):
    world.controller().start("2")
    with pytest.raises(RolloutError, match="an autopilot already rolls out version 2"):
        world.controller().start("3")
    # a person rolls back by hand: the run ends on the next tick
    world.controller().r.rollback()
    assert world.controller().tick()["state"] == "ended"
    assert world.controller().tick()["state"] == "idle"


def test_the_autopilot_function_ticks_on_a_scheduled_event(aws, function, monkeypatch):  # noqa: F811
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module

    world = World(aws, function)
    world.controller().start("2", AutopilotConfig(min_minutes=0))
    world.ab("rollback", reason="the candidate is slower")
    world.aws["s3"].put_object(
        Bucket=BUCKET, Key="reports/ab/latest.json", Body=world.report.model_dump_json()
    )
    env = {
        "DATA_BUCKET": BUCKET,
        "PREDICT_FUNCTION_NAME": "predict",
        "ALARM_PREFIX": "avsev-",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    event = scheduled_event("2026-11-20T08:05:00Z")
    out = load_handler_module("autopilot", env).handler(event, LocalContext(function_name="ap"))
    assert out["state"] == "rolled_back" and "slower" in out["reason"]
    assert world.weights() == {"1": 1.0}


def _shadow(world, rows: int, only_a: int, only_b: int, significant: bool) -> None:
    world.ab("continue")
    world.report.shadow_mcnemar = ShadowMcNemar(
        served_version="1.0.0",
        shadow_version="1.1.0",
        rows=rows,
        only_a_correct=only_a,
        only_b_correct=only_b,
        both_correct=rows - only_a - only_b,
        both_wrong=0,
        method="chi-square, continuity corrected",
        statistic=0.0,
        p_value=0.01 if significant else 0.5,
        alpha=0.05,
        significant=significant,
        verdict=f"{only_a} rows in the served model's favour, {only_b} in the shadow's",
    )


def test_after_shadow_the_first_step_waits_for_paired_evidence(world):
    started = world.controller().start("2", AutopilotConfig(after_shadow=True))
    assert started["phase"] == "shadow" and world.weights() == {"1": 1.0}  # no traffic yet
    world.later(60)
    _shadow(world, rows=40, only_a=3, only_b=5, significant=False)
    waiting = world.controller().tick()
    assert waiting["state"] == "shadow" and "40 of 100" in waiting["reason"]
    world.later(60)
    _shadow(world, rows=400, only_a=20, only_b=31, significant=False)
    assert world.controller().tick()["state"] == "started"
    assert world.weights() == {"1": 0.9, "2": 0.1}
    world.later(61)
    world.ab("promote")
    assert world.controller().tick()["state"] == "stepped"  # then the usual walk


def test_a_candidate_worse_in_shadow_never_serves(world):
    world.controller().start("2", AutopilotConfig(after_shadow=True))
    world.later(60)
    _shadow(world, rows=400, only_a=60, only_b=20, significant=True)
    out = world.controller().tick()
    assert out["state"] == "rejected_in_shadow" and world.weights() == {"1": 1.0}
    assert world.alerts and world.controller().tick()["state"] == "idle"


class RevisionedLambda:
    """The Lambda client, with `UpdateAlias`'s `RevisionId` as AWS documents it (moto 5.2.6
    accepts the parameter and ignores it): an alias's `RevisionId` changes with every update,
    and an update naming another revision fails with `PreconditionFailedException`
    (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html). `before_write` runs
    once, just before the first `UpdateAlias` reaches Lambda: another writer, first."""

    def __init__(self, client, revisions: dict[str, int], before_write=None):
        self._client, self._revisions, self._before_write = client, revisions, before_write
        self.updates: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_alias(self, **kw):
        alias = self._client.get_alias(**kw)
        alias["RevisionId"] = str(self._revisions.setdefault(kw["Name"], 0))
        return alias

    def update_alias(self, **kw):
        from botocore.exceptions import ClientError

        self.updates.append(kw)
        if self._before_write is not None:
            before_write, self._before_write = self._before_write, None
            before_write()
        current = str(self._revisions.setdefault(kw["Name"], 0))
        if kw.get("RevisionId") not in (None, current):
            raise ClientError(
                {"Error": {"Code": "PreconditionFailedException", "Message": "revision"}},
                "UpdateAlias",
            )
        out = self._client.update_alias(**{k: v for k, v in kw.items() if k != "RevisionId"})
        self._revisions[kw["Name"]] += 1
        return out


def test_of_two_overlapping_ticks_the_later_writer_changes_nothing(world):
    """Without reserved concurrency two ticks may overlap: each writes only the alias it read
    at its start, so of two that read the same alias and decided the same step, the later
    writer ends `superseded`, with no change and no audit entry of its own."""
    world.controller().start("2", AutopilotConfig(min_minutes=60))
    world.later(65)
    world.ab("promote")
    revisions: dict[str, int] = {}
    first = world.controller()
    first.r.lambda_ = RevisionedLambda(world.lam, revisions)
    ticks: list[dict] = []
    later = world.controller()
    later.r.lambda_ = RevisionedLambda(
        world.lam, revisions, before_write=lambda: ticks.append(first.tick())
    )
    out = later.tick()
    assert ticks[0]["state"] == "stepped"
    assert out["state"] == "superseded" and "changed since it was read" in out["reason"]
    assert all(u.get("RevisionId") for u in later.r.lambda_.updates + first.r.lambda_.updates)
    assert world.weights() == {"1": 0.5, "2": 0.5}
    assert world.actions() == ["start", "autopilot-start", "step"]


class Calls:
    """The AWS requests the clients send, by service and operation (botocore's `before-call`
    event fires once per API call, before it is sent); a boto3 session counts the requests of
    every client made from it afterwards."""

    def __init__(self, *clients) -> None:
        self.counts: dict[str, int] = {}
        for client in clients:
            events = client.events if hasattr(client, "events") else client.meta.events
            events.register("before-call", self._count)

    def _count(self, model, **_) -> None:
        name = f"{model.service_model.service_name}.{model.name}"
        self.counts[name] = self.counts.get(name, 0) + 1

    def reset(self) -> None:
        self.counts.clear()


def _earlier_runs(s3, entries: int) -> None:
    """`entries` (a multiple of 5) audit entries of earlier runs, as the controller writes them
    (a deploy's handover, a canary started at 10%, then rolled back and its run ended), all
    before T0."""
    audit = s3_audit(s3, BUCKET)
    at = T0 - dt.timedelta(days=400)
    actions: list[tuple[str, dict[str, Any]]] = [
        ("handover", {"candidate_version": "2", "model_version": "1.1.0"}),
        ("start", {"before": {"1": 1.0}, "after": {"1": 0.9, "2": 0.1}}),
        ("autopilot-start", {"candidate_version": "2", "config": {}}),
        ("rollback", {"before": {"1": 0.9, "2": 0.1}, "after": {"1": 1.0}}),
        ("autopilot-end", {"candidate_version": "2", "outcome": "rolled back"}),
    ]
    for i in range(entries):
        action, details = actions[i % len(actions)]
        at += dt.timedelta(minutes=5)
        audit(
            {
                "at": at.isoformat(timespec="seconds"),
                "seq": int(at.timestamp() * 1e9),
                "action": action,
                "function": "predict",
                "alias": "live",
                **details,
            }
        )


HOLDING_TICK = {
    "s3.GetObject": 1,  # the audit's index
    "s3.ListObjectsV2": 1,  # entries written after the index (none)
    "lambda.GetAlias": 1,
    "lambda.GetFunctionConfiguration": 2,  # the models of the two versions
    "cloudwatch.DescribeAlarms": 1,
}
STEPPING_TICK = HOLDING_TICK | {
    "lambda.UpdateAlias": 1,
    "s3.PutObject": 2,  # the entry, then the index
    "s3.GetObject": 2,
    "s3.ListObjectsV2": 2,
}


@pytest.mark.parametrize("earlier", [10, 1000])
def test_a_tick_costs_the_same_requests_whatever_the_age_of_the_audit(world, earlier):
    """A tick reads the alias once and the audit's index once: with 10 or 1,000 earlier audit
    entries it sends the same requests, a handful of them."""
    s3 = world.aws["s3"]
    _earlier_runs(s3, earlier)
    world.controller().start("2", AutopilotConfig(min_minutes=60))
    calls = Calls(s3, world.lam, world.aws["cloudwatch"])
    world.later(20)
    world.ab("promote")
    calls.reset()
    assert world.controller().tick()["state"] == "holding"
    assert calls.counts == HOLDING_TICK
    world.later(45)
    world.ab("promote", minutes_ago=5)
    calls.reset()
    assert world.controller().tick()["state"] == "stepped"
    assert calls.counts == STEPPING_TICK
    assert world.weights() == {"1": 0.5, "2": 0.5}


def _legacy_entry(s3, at: dt.datetime, action: str, **details) -> None:
    """An audit entry as an earlier version of the controller wrote it: directly under the
    audit prefix, the time stamp and the function in the key, no index."""
    import json
    import uuid

    from avsev.constants import AUDIT_PREFIX

    stamp = at.isoformat(timespec="seconds").replace(":", "")
    entry = {
        "at": at.isoformat(timespec="seconds"),
        "seq": int(at.timestamp() * 1e9),
        "action": action,
        "function": "predict",
        "alias": "live",
        **details,
    }
    key = f"{AUDIT_PREFIX}{stamp}-predict-{action}-{uuid.uuid4().hex[:8]}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(entry).encode())


def test_an_audit_written_before_the_index_is_read_once_in_full_then_by_its_index(world):
    """A bucket whose audit has no index (written by an earlier controller, mid-rollout): the
    first tick rebuilds the index from the whole record and stores it; the next ones read the
    index only, and the record keeps both layouts in write order."""
    s3 = world.aws["s3"]
    world.lam.update_alias(
        FunctionName="predict",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    at = T0 - dt.timedelta(days=30)
    for _ in range(5):
        _legacy_entry(s3, at, "start", after={"1": 0.9, "2": 0.1})
        _legacy_entry(s3, at + dt.timedelta(minutes=1), "autopilot-start", candidate_version="2")
        _legacy_entry(s3, at + dt.timedelta(minutes=2), "rollback", after={"1": 1.0})
        _legacy_entry(s3, at + dt.timedelta(minutes=3), "autopilot-end", candidate_version="2")
        at += dt.timedelta(days=1)
    _legacy_entry(s3, T0, "start", before={"1": 1.0}, after={"1": 0.9, "2": 0.1})
    _legacy_entry(
        s3,
        T0 + dt.timedelta(seconds=1),
        "autopilot-start",
        candidate_version="2",
        config={"min_minutes": 60},
    )
    calls = Calls(s3, world.lam, world.aws["cloudwatch"])
    world.later(20)
    first = world.controller().tick()
    assert first["state"] == "holding" and "40 more minutes" in first["reason"]
    assert calls.counts["s3.GetObject"] > 20  # every entry, once
    calls.reset()
    world.later(1)
    assert world.controller().tick()["state"] == "holding"
    assert calls.counts == HOLDING_TICK
    world.later(45)
    world.ab("promote", minutes_ago=5)
    assert world.controller().tick()["state"] == "stepped"
    assert world.actions()[-3:] == ["start", "autopilot-start", "step"]
    assert len(world.actions()) == 23


def test_the_autopilot_function_reads_the_audit_and_the_alias_once_per_tick(
    aws,  # noqa: F811
    function,  # noqa: F811
    monkeypatch,
):
    """The scheduled function: a tick that holds, then the status it publishes for the
    dashboard from what the tick read: one read of the index, the alias, the report."""
    import boto3
    from avsev_tools.local.lambda_runtime import LocalContext, load_handler_module

    world = World(aws, function)
    _earlier_runs(aws["s3"], 1000)
    world.now = dt.datetime.now(dt.UTC)  # the function runs on the real clock
    world.controller().start("2", AutopilotConfig(min_minutes=60))
    world.ab("continue")
    aws["s3"].put_object(
        Bucket=BUCKET, Key="reports/ab/latest.json", Body=world.report.model_dump_json()
    )
    env = {"DATA_BUCKET": BUCKET, "PREDICT_FUNCTION_NAME": "predict", "ALARM_PREFIX": "avsev-"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    module = load_handler_module("autopilot", env)
    calls = Calls(boto3._get_default_session())  # the clients the handler makes
    out = module.handler(scheduled_event("2026-11-20T08:05:00Z"), LocalContext(function_name="ap"))
    assert out["state"] == "holding"
    assert calls.counts == HOLDING_TICK | {
        "s3.GetObject": 2,  # the index, the latest A/B report
        "cloudwatch.PutMetricData": 1,
    }


def test_the_ab_jobs_read_the_experiment_from_the_alias_and_the_steps_start(world):
    """The scheduled A/B function, `avsev local tick ab` and the demo compare the alias's two
    versions over the current step only (`current_experiment`); without a rollout, nothing."""
    s3 = world.aws["s3"]
    assert current_experiment(world.lam, s3, BUCKET, "predict") == Experiment()
    world.controller().start("2", AutopilotConfig(min_minutes=60))
    world.later(65)
    world.ab("promote", minutes_ago=5)
    assert world.controller().tick()["state"] == "stepped"
    state = world.controller().r.state()
    experiment = current_experiment(world.lam, s3, BUCKET, "predict")
    assert experiment.champion == state.model_versions[state.stable_version]
    assert experiment.candidate == state.model_versions["2"]
    step = s3_audit_entries(s3, BUCKET, "predict")[-1]
    assert step["action"] == "step" and experiment.since is not None
    assert experiment.since == dt.datetime.fromtimestamp(step["seq"] / 1e9, dt.UTC)
