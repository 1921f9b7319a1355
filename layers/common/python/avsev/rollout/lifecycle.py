"""The retraining loop's switch and memory: what calls for a new model, and when none may start.

A model ages: the world it scores moves away from the years it learned. Four things call for a
retraining (`triggers`): the drift report's dataset drift (plain or importance-weighted), a
fall of the label-free accuracy estimate below the model's test accuracy by more than a stated
bound, the model's age (since the newest report it learned from) past a maximum, and a schedule; a person may ask at any time
(`avsev lifecycle retrain`). `Lifecycle.consider` then decides whether one starts: never while
the loop is paused, never while one is in flight, never within the cool-down after the last.

Its state is one object in the data bucket (`lifecycle/state.json`), written with S3
conditional writes: If-None-Match on the first write and If-Match on the ETag read for every
later one, so two deciders (the scheduled check and a person) never both start a retraining;
the later writer gets 412 and changes nothing
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). Every trigger
and decision is one entry under `lifecycle/audit/`, named by when it was written.

A run that fails is started once more; a second failure ends the run and alerts. A run whose
end never arrives (the engine died with it) counts as failed after `Policy.run_timeout`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from avsev import clock as avsev_clock
from avsev.constants import LIFECYCLE_PREFIX, MAX_MODEL_AGE_DAYS
from avsev.serving.card import Card

STATE_KEY = f"{LIFECYCLE_PREFIX}state.json"
AUDIT_PREFIX = f"{LIFECYCLE_PREFIX}audit/"

TriggerKind = Literal["drift", "estimate", "age", "schedule", "manual"]


@dataclass(frozen=True)
class Policy:
    """When the loop retrains. The defaults are the shipped policy (see docs/model.md)."""

    max_age: dt.timedelta = dt.timedelta(days=MAX_MODEL_AGE_DAYS)
    """A model whose newest training report is older than this is retrained."""
    estimate_drop: float = 0.05
    """Retrain when the label-free accuracy estimate is this far below the test accuracy."""
    cooldown: dt.timedelta = dt.timedelta(days=3)
    """No new retraining starts within this time of the last one's start."""
    every: dt.timedelta | None = None
    """A schedule: retrain at least this often (None: no schedule)."""
    retries: int = 1
    """A failed run is started again this many times, then the loop alerts."""
    run_timeout: dt.timedelta = dt.timedelta(hours=8)
    """A run not ended after this long has failed (CodeBuild's longest build is 8 hours)."""


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    reason: str


class Run(BaseModel):
    """A retraining in flight."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    triggers: list[dict[str, str]]
    started_at: dt.datetime
    attempt: int = 1
    handle: str | None = None
    """What the engine calls it (a CodeBuild build id; locally a label)."""


class State(BaseModel):
    paused: bool = False
    pause_reason: str | None = None
    changed_by: str | None = None
    changed_at: dt.datetime | None = None
    run: Run | None = None
    last_started_at: dt.datetime | None = None
    last_result: dict[str, Any] | None = None


class StateChanged(Exception):
    """Someone else wrote the state since it was read: nothing was changed."""


def triggers(
    report: Any | None,
    card: Card,
    at: dt.datetime,
    state: State,
    policy: Policy = Policy(),
) -> list[Trigger]:
    """What calls for a retraining now, from the latest drift report (a `DriftReport`, or None
    when there is none), the serving model's card and the loop's state."""
    found: list[Trigger] = []
    if report is not None and report.status == "checked" and report.dataset_drift:
        found.append(
            Trigger(
                "drift",
                f"dataset drift in {report.window.get('id', 'the window')}: "
                f"drifted features {report.drifted_features}",
            )
        )
    estimated = (
        report.performance_without_labels.expected_accuracy
        if report is not None and report.performance_without_labels is not None
        else None
    )
    tested = card.metrics.test.accuracy
    if estimated is not None and tested is not None and tested - estimated > policy.estimate_drop:
        found.append(
            Trigger(
                "estimate",
                f"estimated accuracy {estimated:.3f} is {tested - estimated:.3f} below the test "
                f"accuracy {tested:.3f} (bound {policy.estimate_drop})",
            )
        )
    newest = model_data_end(card)
    if newest is not None:
        age = at - newest
        if age > policy.max_age:
            found.append(
                Trigger(
                    "age",
                    f"model {card.version} learned from reports up to {newest.date()}: "
                    f"{age.days} days old (max {policy.max_age.days})",
                )
            )
    if policy.every is not None and (
        state.last_started_at is None or at - state.last_started_at >= policy.every
    ):
        found.append(Trigger("schedule", f"scheduled every {policy.every.days} days"))
    return found


def model_data_end(card: Card) -> dt.datetime | None:
    """When a model's knowledge ends: the newest report date it trained on (what the
    staleness measurement counts age from), else when it was built."""
    return card.data_end()


class LifecycleSummary(TypedDict):
    """The loop's switch, its run in flight, its last result and its latest audit entries."""

    paused: bool
    pause_reason: str | None
    changed_by: str | None
    run_in_flight: dict[str, Any] | None
    last_started_at: str | None
    last_result: dict[str, Any] | None
    recent: list[dict[str, Any]]


@dataclass(frozen=True)
class Decision:
    action: Literal["started", "restarted", "skipped", "ended", "failed", "paused", "resumed"]
    reason: str
    run: Run | None = None


class Lifecycle:
    """The loop's state in S3 and the decisions on it. `start(run)` hands a run to the
    engine (CodeBuild in AWS, the local runner) and returns its handle."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        start: Callable[[Run], str] | None = None,
        alert: Callable[[str, str], None] | None = None,
        policy: Policy = Policy(),
        clock: Callable[[], dt.datetime] = avsev_clock.now,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self._start = start
        self._alert = alert
        self.policy = policy
        self.clock = clock

    # ---- state ------------------------------------------------------------------------
    def read(self) -> tuple[State, str | None]:
        """The state and the ETag it was read at (None: never written)."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=STATE_KEY)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return State(), None
            raise
        return State.model_validate_json(obj["Body"].read()), obj["ETag"]

    def state(self) -> State:
        return self.read()[0]

    def _write(self, state: State, etag: str | None) -> None:
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=STATE_KEY,
                Body=state.model_dump_json().encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
                "412",
            ):
                raise StateChanged("the loop's state changed since it was read") from e
            raise

    def _audit(self, action: str, by: str, **detail: Any) -> dict[str, Any]:
        at = self.clock()
        entry = {"at": at.isoformat(), "action": action, "by": by, **detail}
        # Named by the real time of writing (the clock may be simulated): listed in order.
        key = f"{AUDIT_PREFIX}{avsev_clock.now_ns():020d}-{secrets.token_hex(3)}.json"
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=json.dumps(entry, default=str).encode()
        )
        return entry

    def audit(self, last: int | None = None) -> list[dict[str, Any]]:
        """Every entry, oldest first (for people: it pages through the whole history), or the
        `last` few: the keys are listed, only those entries are read."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=AUDIT_PREFIX
        ):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        keys.sort()
        return [
            json.loads(self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read())
            for k in (keys if last is None else keys[-last:] if last > 0 else [])
        ]

    def summary(self, recent: int = 5) -> LifecycleSummary:
        """What `avsev lifecycle status`, `avsev rollout status` and the dashboard show."""
        state = self.state()
        return LifecycleSummary(
            paused=state.paused,
            pause_reason=state.pause_reason,
            changed_by=state.changed_by,
            run_in_flight=state.run.model_dump(mode="json") if state.run else None,
            last_started_at=state.last_started_at.isoformat() if state.last_started_at else None,
            last_result=state.last_result,
            recent=self.audit(last=recent),
        )

    # ---- the switch ---------------------------------------------------------------------
    def pause(self, reason: str, by: str) -> Decision:
        return self._switch(True, reason, by)

    def resume(self, by: str, reason: str = "") -> Decision:
        return self._switch(False, reason, by)

    def _switch(self, paused: bool, reason: str, by: str) -> Decision:
        """Pause (with its reason, shown to whoever finds the loop paused) or resume."""
        state, etag = self.read()
        update = {
            "paused": paused,
            "pause_reason": reason if paused else None,
            "changed_by": by,
            "changed_at": self.clock(),
        }
        self._write(state.model_copy(update=update), etag)
        self._audit("pause" if paused else "resume", by, reason=reason)
        return Decision("paused" if paused else "resumed", reason)

    # ---- decisions ----------------------------------------------------------------------
    def consider(self, found: list[Trigger], *, by: str = "schedule") -> Decision:
        """Start a retraining for these triggers, or say why not (in the audit either way
        when there is a trigger). A run past its timeout is failed first."""
        state, etag = self.read()
        now = self.clock()
        if state.run is not None and now - state.run.started_at > self.policy.run_timeout:
            self._fail(state, etag, f"no end after {self.policy.run_timeout}", by=by)
            state, etag = self.read()
        if not found:
            return Decision("skipped", "nothing calls for a retraining")
        listed = [{"kind": t.kind, "reason": t.reason} for t in found]
        why_not = self._blocked(state, now, manual=any(t.kind == "manual" for t in found))
        if why_not:
            self._audit("retrain-skipped", by, triggers=listed, reason=why_not)
            return Decision("skipped", why_not)
        run = Run(run_id=_run_id(now), triggers=listed, started_at=now)
        return self._launch(state, etag, run, by=by, action="started")

    def _blocked(self, state: State, now: dt.datetime, *, manual: bool) -> str | None:
        if state.paused:
            return f"the loop is paused: {state.pause_reason or 'no reason given'}"
        if state.run is not None:
            return f"retraining {state.run.run_id} is in flight since {state.run.started_at.isoformat()}"
        if (
            not manual
            and state.last_started_at is not None
            and now - state.last_started_at < self.policy.cooldown
        ):
            return (
                f"cooling down: the last retraining started {state.last_started_at.isoformat()}, "
                f"the cool-down is {self.policy.cooldown}"
            )
        return None

    def _launch(
        self, state: State, etag: str | None, run: Run, *, by: str, action: str
    ) -> Decision:
        # The state is claimed before the engine starts: a second decider meets the run.
        self._write(state.model_copy(update={"run": run, "last_started_at": run.started_at}), etag)
        state, etag = self.read()
        try:
            if self._start is None:
                raise RuntimeError("no engine to start a retraining with")
            handle = self._start(run)
        except Exception as e:  # the engine refused: a failed attempt like any other
            return self._fail(state, etag, f"the engine did not start: {e}", by=by)
        run = run.model_copy(update={"handle": handle})
        self._write(state.model_copy(update={"run": run}), etag)
        self._audit(
            "retrain-start" if action == "started" else "retrain-restart",
            by,
            run_id=run.run_id,
            attempt=run.attempt,
            handle=handle,
            triggers=run.triggers,
        )
        return Decision(action, f"retraining {run.run_id} started ({handle})", run)  # type: ignore[arg-type]

    def finish(
        self, run_id: str, *, ok: bool, detail: Mapping[str, Any], by: str = "engine"
    ) -> Decision:
        """The engine's word on a run: published (ok) or failed. A failure is retried up to
        `Policy.retries` times, then ends the run and alerts. An unknown run changes nothing."""
        state, etag = self.read()
        if state.run is None or state.run.run_id != run_id:
            self._audit("finish-ignored", by, run_id=run_id, ok=ok, detail=dict(detail))
            return Decision("skipped", f"run {run_id} is not the one in flight")
        if ok:
            self._write(
                state.model_copy(
                    update={"run": None, "last_result": {"run_id": run_id, "ok": True, **detail}}
                ),
                etag,
            )
            self._audit("retrain-end", by, run_id=run_id, ok=True, detail=dict(detail))
            return Decision("ended", f"retraining {run_id} published", state.run)
        return self._fail(state, etag, str(detail.get("reason", "failed")), by=by, detail=detail)

    def candidate(
        self,
        run_id: str,
        version: str,
        outcome: Literal["deployed", "held", "deploy-failed"],
        *,
        by: str = "engine",
        **detail: Any,
    ) -> dict[str, Any]:
        """What became of a run's candidate after its gates: deployed (handed to the rollout
        autopilot, whose audit takes it from there), held by a gate or a person's approval
        (it never serves), or a deploy that failed and rolled back."""
        return self._audit(f"candidate-{outcome}", by, run_id=run_id, version=version, **detail)

    def _fail(
        self,
        state: State,
        etag: str | None,
        reason: str,
        *,
        by: str,
        detail: Mapping[str, Any] = {},
    ) -> Decision:
        run = state.run
        assert run is not None
        self._audit(
            "retrain-failed",
            by,
            run_id=run.run_id,
            attempt=run.attempt,
            reason=reason,
            detail=dict(detail),
        )
        if run.attempt <= self.policy.retries and not state.paused:
            again = run.model_copy(
                update={"attempt": run.attempt + 1, "started_at": self.clock(), "handle": None}
            )
            return self._launch(state, etag, again, by=by, action="restarted")
        self._write(
            state.model_copy(
                update={
                    "run": None,
                    "last_result": {"run_id": run.run_id, "ok": False, "reason": reason},
                }
            ),
            etag,
        )
        message = (
            f"Retraining {run.run_id} failed {run.attempt} times; the loop gave up on it. "
            f"Last reason: {reason}. Triggers: {run.triggers}"
        )
        if self._alert is not None:
            self._alert(f"avsev retraining {run.run_id} failed", message)
        self._audit("retrain-gave-up", by, run_id=run.run_id, reason=reason)
        return Decision("failed", message, run)


def _run_id(at: dt.datetime) -> str:
    return f"retrain-{at.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


# ---- the engine: CodeBuild in AWS ----------------------------------------------------------
RUN_ID_VARIABLE = "AVSEV_RUN_ID"
"""The environment variable that tells a retraining build which run it is."""
TRIGGERS_VARIABLE = "AVSEV_TRIGGERS"
CHAMPION_VARIABLE = "AVSEV_CHAMPION"
"""The model version serving when the run started: the one a candidate must beat."""
ENDED_STATUSES = {"SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"}
"""A build's final statuses (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_Build.html)."""


def codebuild_starter(codebuild: Any, project: str, champion: str) -> Callable[[Run], str]:
    """Start the retraining project for a run; the build id is its handle. The run id goes
    in as an environment variable, which the build's end event carries back
    (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_StartBuild.html)."""

    def start(run: Run) -> str:
        build = codebuild.start_build(
            projectName=project,
            environmentVariablesOverride=[
                {"name": RUN_ID_VARIABLE, "value": run.run_id, "type": "PLAINTEXT"},
                {"name": TRIGGERS_VARIABLE, "value": json.dumps(run.triggers), "type": "PLAINTEXT"},
                {"name": CHAMPION_VARIABLE, "value": champion, "type": "PLAINTEXT"},
            ],
        )["build"]
        return str(build["id"])

    return start


@dataclass(frozen=True)
class BuildEnd:
    run_id: str
    ok: bool
    detail: dict[str, Any]


def build_end(event: Mapping[str, Any]) -> BuildEnd | None:
    """The run a CodeBuild "Build State Change" event ends (EventBridge; its fields:
    https://docs.aws.amazon.com/codebuild/latest/userguide/sample-build-notifications.html#sample-build-notifications-ref),
    or None: a build still running, or one no run started. A build that succeeded has
    published its candidate (or stored why a gate held it); any other end is a failure."""
    detail = event.get("detail") or {}
    status = detail.get("build-status")
    if status not in ENDED_STATUSES:
        return None
    variables = ((detail.get("additional-information") or {}).get("environment") or {}).get(
        "environment-variables"
    ) or []
    run_id = next((v.get("value") for v in variables if v.get("name") == RUN_ID_VARIABLE), None)
    if not run_id:
        return None
    return BuildEnd(
        str(run_id),
        status == "SUCCEEDED",
        {"build": detail.get("build-id"), "status": status, "reason": f"build {status}"},
    )


def check(lifecycle: Lifecycle, card: Card, at: dt.datetime) -> Decision:
    """The scheduled look: the latest drift report (when it is about the serving model), the
    model's age and the schedule; a retraining starts if they call for one and nothing holds
    it. A report about another model version says nothing about this one."""
    from avsev.constants import DRIFT_REPORTS
    from avsev.monitoring.reports import DriftReport
    from avsev.monitoring.store import read_latest

    latest = read_latest(lifecycle.s3, lifecycle.bucket, DRIFT_REPORTS)
    report = DriftReport.model_validate(latest) if latest else None
    if report is not None and report.model.version != card.version:
        report = None
    found = triggers(report, card, at, lifecycle.state(), lifecycle.policy)
    return lifecycle.consider(found)
