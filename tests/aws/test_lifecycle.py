"""The retraining loop's switch and memory (`avsev.rollout.lifecycle`) on moto's S3: what
triggers a retraining, the pause switch, one run in flight, the cool-down, a run that fails
(retried once, then an alert) and two deciders at once (S3 conditional writes)."""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

import boto3
import pytest
from avsev.rollout.lifecycle import (
    RUN_ID_VARIABLE,
    Lifecycle,
    Policy,
    Run,
    State,
    StateChanged,
    Trigger,
    build_end,
    codebuild_starter,
    triggers,
)
from aws_events import sample, scheduled
from card_support import card_with
from lambda_support import FakeContext, load_function
from moto import mock_aws

BUCKET = "lifecycle-test"
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
CARD = {
    "version": "1.0.0",
    "created": "2026-01-01T00:00:00+00:00",
    "metrics": {"test": {"accuracy": 0.60}},
    "data": None,  # no data window: age counts from `created`
}


@pytest.fixture()
def s3(fake_aws):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


class Clock:
    def __init__(self, at: dt.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


class Engine:
    """Stands in for CodeBuild: records the runs it was handed; may refuse."""

    def __init__(self, refuse: bool = False) -> None:
        self.started: list[Run] = []
        self.refuse = refuse

    def __call__(self, run: Run) -> str:
        if self.refuse:
            raise RuntimeError("AccountLimitExceededException")
        self.started.append(run)
        return f"build-{len(self.started)}"


def loop(s3, clock=None, engine=None, alerts=None, policy=None) -> Lifecycle:
    return Lifecycle(
        s3,
        BUCKET,
        start=engine if engine is not None else Engine(),
        alert=(lambda subject, message: alerts.append((subject, message)))
        if alerts is not None
        else None,
        policy=policy or Policy(),
        clock=clock or Clock(),
    )


def report(*, drift: bool = False, estimated: float | None = None, status: str = "checked"):
    return SimpleNamespace(
        status=status,
        dataset_drift=drift,
        drifted_features=["make"] if drift else [],
        window={"id": "2026-03-01"},
        performance_without_labels=SimpleNamespace(expected_accuracy=estimated)
        if estimated is not None
        else None,
    )


def kinds(found: list[Trigger]) -> set[str]:
    return {t.kind for t in found}


def test_each_trigger_fires_on_its_cause_only():
    policy = Policy(max_age=dt.timedelta(days=90), estimate_drop=0.05, every=dt.timedelta(days=30))
    fresh = card_with(**CARD | {"created": (T0 - dt.timedelta(days=10)).isoformat()})
    last = State(last_started_at=T0 - dt.timedelta(days=1))
    assert triggers(report(estimated=0.58), fresh, T0, last, policy) == []
    assert kinds(triggers(report(drift=True), fresh, T0, last, policy)) == {"drift"}
    # drift in a window without enough rows is not drift
    assert triggers(report(drift=True, status="insufficient_data"), fresh, T0, last, policy) == []
    assert kinds(triggers(report(estimated=0.54), fresh, T0, last, policy)) == {"estimate"}
    old = {**CARD, "created": (T0 - dt.timedelta(days=91)).isoformat()}
    assert kinds(triggers(None, card_with(**old), T0, last, policy)) == {"age"}
    # age counts from the newest report the model learned from, when the card says it
    built_late = {
        **old,
        "created": T0.isoformat(),
        "data": {"event_date_range": ["2001-01-01", "2025-11-01"]},
    }
    assert kinds(triggers(None, card_with(**built_late), T0, last, policy)) == {"age"}
    fresh_data = {**built_late, "data": {"event_date_range": ["2001-01-01", "2026-02-01"]}}
    assert triggers(None, card_with(**fresh_data), T0, last, policy) == []
    due = State(last_started_at=T0 - dt.timedelta(days=30))
    assert kinds(triggers(None, fresh, T0, due, policy)) == {"schedule"}
    assert kinds(triggers(None, fresh, T0, State(), Policy(max_age=dt.timedelta(days=90)))) == set()


def test_a_trigger_starts_one_run_and_a_second_waits_for_it(s3):
    engine = Engine()
    clock = Clock()
    lc = loop(s3, clock, engine)
    first = lc.consider([Trigger("drift", "dataset drift")])
    assert first.action == "started" and len(engine.started) == 1
    assert lc.state().run is not None and lc.state().run.handle == "build-1"
    clock.at += dt.timedelta(hours=1)
    second = lc.consider([Trigger("age", "old")])
    assert second.action == "skipped" and "in flight" in second.reason
    assert len(engine.started) == 1
    actions = [e["action"] for e in lc.audit()]
    assert actions == ["retrain-start", "retrain-skipped"]
    assert lc.audit()[0]["triggers"] == [{"kind": "drift", "reason": "dataset drift"}]


def test_the_cool_down_holds_triggers_but_not_a_person(s3):
    engine = Engine()
    clock = Clock()
    lc = loop(s3, clock, engine, policy=Policy(cooldown=dt.timedelta(days=3)))
    run = lc.consider([Trigger("drift", "d")]).run
    assert run is not None
    assert lc.finish(run.run_id, ok=True, detail={"version": "1.1.0"}).action == "ended"
    clock.at += dt.timedelta(days=2)
    held = lc.consider([Trigger("drift", "d")])
    assert held.action == "skipped" and "cooling down" in held.reason
    assert lc.consider([Trigger("manual", "asked")], by="alice").action == "started"
    clock.at += dt.timedelta(days=2)
    assert lc.finish(lc.state().run.run_id, ok=True, detail={}).action == "ended"
    clock.at += dt.timedelta(days=3, seconds=1)
    assert lc.consider([Trigger("drift", "d")]).action == "started"
    assert len(engine.started) == 3


def test_paused_nothing_starts_until_resumed_and_both_are_audited(s3):
    engine = Engine()
    lc = loop(s3, engine=engine)
    lc.pause("investigating the label feed", by="alice")
    assert lc.state().paused and lc.state().pause_reason == "investigating the label feed"
    skipped = lc.consider([Trigger("drift", "d")])
    assert skipped.action == "skipped" and "paused" in skipped.reason
    assert lc.consider([Trigger("manual", "asked")], by="bob").action == "skipped"
    assert engine.started == []
    lc.resume(by="alice")
    assert lc.consider([Trigger("drift", "d")]).action == "started"
    actions = [(e["action"], e["by"]) for e in lc.audit()]
    assert actions[0] == ("pause", "alice") and ("resume", "alice") in actions


def test_the_summary_reads_only_the_latest_entries_however_long_the_audit(s3):
    """`avsev lifecycle status`, `avsev rollout status` and the dashboard show the loop's
    latest entries: their cost must not grow with the loop's age (one GET per entry ever
    written would). The keys are listed; only the shown entries are read."""
    lc = loop(s3)
    for i in range(40):
        lc.pause(f"pause {i}", by="alice") if i % 2 == 0 else lc.resume(by="alice")
    gets: list[str] = []
    s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: gets.append(params["url_path"])
    )
    summary = lc.summary(recent=3)
    assert len(gets) == 1 + 3  # the state, then the three entries shown
    assert [e["action"] for e in summary["recent"]] == ["resume", "pause", "resume"]
    assert summary["recent"] == lc.audit()[-3:]


def test_a_failed_run_is_retried_once_then_alerts(s3):
    engine, alerts, clock = Engine(), [], Clock()
    lc = loop(s3, clock, engine, alerts)
    run = lc.consider([Trigger("drift", "d")]).run
    again = lc.finish(run.run_id, ok=False, detail={"reason": "killed half-way"})
    assert again.action == "restarted" and again.run.attempt == 2 and len(engine.started) == 2
    assert alerts == []
    gave_up = lc.finish(again.run.run_id, ok=False, detail={"reason": "killed again"})
    assert gave_up.action == "failed" and len(engine.started) == 2
    assert len(alerts) == 1 and "killed again" in alerts[0][1]
    state = lc.state()
    assert state.run is None and state.last_result == {
        "run_id": run.run_id,
        "ok": False,
        "reason": "killed again",
    }
    assert [e["action"] for e in lc.audit()] == [
        "retrain-start",
        "retrain-failed",
        "retrain-restart",
        "retrain-failed",
        "retrain-gave-up",
    ]


def test_a_run_that_never_ends_fails_after_the_timeout(s3):
    engine, alerts, clock = Engine(), [], Clock()
    lc = loop(s3, clock, engine, alerts, Policy(run_timeout=dt.timedelta(hours=8), retries=0))
    lc.consider([Trigger("drift", "d")])
    clock.at += dt.timedelta(hours=8, minutes=1)
    lc.consider([])
    assert lc.state().run is None and len(alerts) == 1 and "no end after" in alerts[0][1]


def test_an_engine_that_refuses_is_a_failed_attempt(s3):
    alerts: list = []
    lc = loop(s3, engine=Engine(refuse=True), alerts=alerts)
    decision = lc.consider([Trigger("manual", "asked")], by="alice")
    assert decision.action == "failed" and "AccountLimitExceeded" in decision.reason
    assert lc.state().run is None and len(alerts) == 1


def test_the_end_of_a_run_not_in_flight_changes_nothing(s3):
    lc = loop(s3)
    run = lc.consider([Trigger("drift", "d")]).run
    assert lc.finish("retrain-someone-else", ok=True, detail={}).action == "skipped"
    assert lc.state().run == run


def test_two_deciders_cannot_both_write_the_state(s3):
    """S3 conditional writes: a put with If-Match on a stale ETag gets 412 and changes nothing
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)."""
    lc = loop(s3)
    lc.pause("one", by="a")
    state, etag = lc.read()
    lc.resume(by="b")  # another decider writes in between
    with pytest.raises(StateChanged):
        lc._write(state.model_copy(update={"paused": True}), etag)
    assert lc.state().paused is False
    # and the first write of all is If-None-Match: a second "first" write is refused
    other = Lifecycle(s3, BUCKET, clock=Clock())
    with pytest.raises(StateChanged):
        other._write(State(), None)


# ---- in AWS: the decider function, CodeBuild as the engine --------------------------------
PROJECT = "avsev-prod-retrain"


def build_event(run_id: str | None, status: str) -> dict:
    """AWS's build state change sample with the run's variable and a status."""
    event = copy.deepcopy(sample("codebuildStateChangeEvent"))
    event["detail"]["build-status"] = status
    if run_id is not None:
        event["detail"]["additional-information"]["environment"]["environment-variables"] = [
            {"name": RUN_ID_VARIABLE, "type": "PLAINTEXT", "value": run_id}
        ]
    return event


def test_a_build_end_names_its_run_and_whether_it_succeeded():
    assert build_end(build_event("retrain-1", "SUCCEEDED")) == build_end(
        build_event("retrain-1", "SUCCEEDED")
    )
    ok = build_end(build_event("retrain-1", "SUCCEEDED"))
    assert ok is not None and ok.run_id == "retrain-1" and ok.ok
    for status in ("FAILED", "FAULT", "STOPPED", "TIMED_OUT"):
        end = build_end(build_event("retrain-1", status))
        assert end is not None and not end.ok and status in end.detail["reason"]
    assert build_end(build_event("retrain-1", "IN_PROGRESS")) is None
    assert build_end(build_event(None, "SUCCEEDED")) is None  # a build no run started


@pytest.fixture()
def decider(s3, synthetic_bundle_dir, monkeypatch):
    codebuild = boto3.client("codebuild", region_name="us-east-1")
    codebuild.create_project(
        name=PROJECT,
        source={"type": "S3", "location": f"{BUCKET}/source.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "ARM_CONTAINER",
            "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
            "computeType": "BUILD_GENERAL1_LARGE",
        },
        serviceRole="arn:aws:iam::123456789012:role/retrain",
    )
    env = {
        "DATA_BUCKET": BUCKET,
        "MODEL_BUNDLE_PATH": str(synthetic_bundle_dir),
        "RETRAIN_PROJECT": PROJECT,
        "MAX_MODEL_AGE_DAYS": "100000",
    }
    return load_function("lifecycle", env, monkeypatch), codebuild


def drift_report_of(version: str, *, drift: bool) -> dict:
    return {
        "report": "drift",
        "generated_at": "2026-03-01T02:00:00+00:00",
        "model": {"name": "avsev-severity", "version": version},
        "window": {"id": "2026-03-01"},
        "rows": 900,
        "method": "test",
        "status": "checked",
        "dataset_drift": drift,
        "drifted_features": ["make"] if drift else [],
        "drift_found": drift,
    }


def test_the_decider_starts_codebuild_on_drift_and_ends_the_run_on_its_event(decider):
    module, codebuild = decider
    from avsev.constants import DRIFT_REPORTS
    from avsev.monitoring.reports import DriftReport
    from avsev.monitoring.store import write_report

    s3 = boto3.client("s3")
    version = module.CARD.version
    # a drift report about another model version says nothing about this one
    write_report(
        s3,
        BUCKET,
        DRIFT_REPORTS,
        "2026-02-28",
        DriftReport.model_validate(drift_report_of("0.0.1", drift=True)),
        "",
    )
    quiet = module.handler(scheduled("2026-03-01T03:00:00Z"), FakeContext())
    assert quiet["action"] == "skipped" and not codebuild.list_builds()["ids"]

    write_report(
        s3,
        BUCKET,
        DRIFT_REPORTS,
        "2026-03-01",
        DriftReport.model_validate(drift_report_of(version, drift=True)),
        "",
    )
    started = module.handler(scheduled("2026-03-01T03:00:00Z"), FakeContext())
    assert started["action"] == "started"
    builds = codebuild.list_builds_for_project(projectName=PROJECT)["ids"]
    assert len(builds) == 1
    run = Lifecycle(s3, BUCKET).state().run
    assert run is not None and run.handle == builds[0] and run.triggers[0]["kind"] == "drift"

    failed = module.handler(build_event(run.run_id, "FAILED"), FakeContext())
    assert failed["action"] == "restarted"
    assert len(codebuild.list_builds_for_project(projectName=PROJECT)["ids"]) == 2
    run = Lifecycle(s3, BUCKET).state().run
    ended = module.handler(build_event(run.run_id, "SUCCEEDED"), FakeContext())
    assert ended["action"] == "ended" and Lifecycle(s3, BUCKET).state().run is None
    assert (
        module.handler(build_event("retrain-unknown", "SUCCEEDED"), FakeContext())["action"]
        == "skipped"
    )


def test_the_starter_sends_the_run_id_codebuild_hands_back(s3):
    """The run id rides in `environmentVariablesOverride`; botocore validates the call
    against CodeBuild's API model (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_StartBuild.html)."""
    from botocore.stub import Stubber

    codebuild = boto3.client("codebuild", region_name="us-east-1")
    run = Run(run_id="retrain-x", triggers=[{"kind": "manual", "reason": "asked"}], started_at=T0)
    with Stubber(codebuild) as stub:
        stub.add_response(
            "start_build",
            {"build": {"id": f"{PROJECT}:1"}},
            {
                "projectName": PROJECT,
                "environmentVariablesOverride": [
                    {"name": RUN_ID_VARIABLE, "value": "retrain-x", "type": "PLAINTEXT"},
                    {
                        "name": "AVSEV_TRIGGERS",
                        "value": '[{"kind": "manual", "reason": "asked"}]',
                        "type": "PLAINTEXT",
                    },
                    {"name": "AVSEV_CHAMPION", "value": "1.0.0", "type": "PLAINTEXT"},
                ],
            },
        )
        assert codebuild_starter(codebuild, PROJECT, "1.0.0")(run) == f"{PROJECT}:1"


def test_an_operator_watches_pauses_and_resumes_the_loop_from_the_cli(s3, capsys, monkeypatch):
    import json

    from avsev_tools.cli import main

    monkeypatch.setenv("AVSEV_USER", "alice")
    assert main(["lifecycle", "pause", "--bucket", BUCKET]) == 2  # a pause says why
    assert "--reason" in capsys.readouterr().err
    assert main(["lifecycle", "pause", "--bucket", BUCKET, "--reason", "label feed broken"]) == 0
    capsys.readouterr()
    assert main(["lifecycle", "status", "--bucket", BUCKET]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["paused"] and status["pause_reason"] == "label feed broken"
    assert status["changed_by"] == "alice" and status["recent"][-1]["action"] == "pause"
    # paused, a retraining asked by hand is refused, and says why
    assert main(["lifecycle", "retrain", "--bucket", BUCKET, "--project", PROJECT]) == 0
    assert "paused" in json.loads(capsys.readouterr().out)["reason"]
    assert main(["lifecycle", "resume", "--bucket", BUCKET]) == 0
    capsys.readouterr()
    assert main(["lifecycle", "audit", "--bucket", BUCKET]) == 0
    actions = [e["action"] for e in json.loads(capsys.readouterr().out)]
    assert actions == ["pause", "retrain-skipped", "resume"]
