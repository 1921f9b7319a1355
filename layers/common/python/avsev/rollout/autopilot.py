"""The rollout autopilot: takes a candidate version through 10% → 50% → 100% on evidence.

A controller run on a schedule (a Lambda function every few minutes in AWS, `avsev local tick
rollout` locally), and the one owner of alias `live`: a deploy only hands it the new version
(`hand_over`, called by the stack's custom resource after the parity check), and it starts the
run at 10%. It keeps no state of its own: what serves is what the alias says, when a step began
and how the run was configured is what the audit says (read from its index, avsev.rollout.audit:
a tick costs the same few requests however long the audit has grown), so a restarted controller
picks up where it was. Each tick does at most one thing:

- the alias no longer canaries the run's candidate (a person acted) → end the run;
- any alarm on the candidate version in ALARM → roll back at once, alert;
- the latest A/B report (newer than the step, for this champion and candidate) says
  `rollback` → roll back, alert;
- the step has held its minimum time and the report says `promote` (the sequential test has
  enough evidence) → 10% → 50%, or 50% → 100% (promote) and end the run; a candidate that
  serves the same model as the stable version (a code change: the parity check proved the
  same answers) needs no A/B evidence, only each step's hold without an alarm;
- the step has held past `max_hours` without a decision → stop at the current weight,
  "inconclusive: a person decides", alert;
- otherwise → wait, and say for what.

Why a scheduled Lambda and not Step Functions: the alias and the audit already are the state;
a state machine would keep a second copy that can disagree with them (a person's rollback by
hand), and Step Functions cannot run in the local stack (no Docker). A tick is idempotent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict

from avsev import clock
from avsev.rollout.aliases import (
    AliasChanged,
    AliasState,
    RolloutError,
    Rollouts,
    WeightChange,
)
from avsev.rollout.audit import ENDED, HANDOVER, STARTED, AuditIndex

if TYPE_CHECKING:
    from avsev.monitoring.reports import ABReport

__all__ = [
    "ENDED",
    "HANDOVER",
    "STARTED",
    "Autopilot",
    "AutopilotConfig",
    "AutopilotStatus",
    "HandoverResult",
    "StartResult",
    "TickResult",
    "autopilot_for",
]

FIRST_WEIGHT = 0.1
SECOND_WEIGHT = 0.5


@dataclass(frozen=True)
class AutopilotConfig:
    min_minutes: float = 60.0
    """The 10% step holds at least this long."""
    second_step_minutes: float = 30.0
    """The 50% step holds at least this long."""
    max_hours: float = 24.0
    """A step still inconclusive after this long stops for a person to decide."""
    after_shadow: bool = False
    """Start the 10% step only once the candidate, scored as the shadow beside the served
    model, is not significantly worse on the paired rows (McNemar) of the A/B report."""


SHADOW_MIN_PAIRS = 100
"""Labelled served/shadow pairs the shadow gate waits for."""

TickState = Literal[
    "idle",
    "superseded",
    "shadow",
    "rejected_in_shadow",
    "started",
    "ended",
    "rolled_back",
    "holding",
    "stepped",
    "promoted",
    "stopped",
]


class Moved(TypedDict, total=False):
    """A `Transition`'s fields, in a result whose command moved the alias (absent otherwise):
    avsev.rollout.aliases.Transition."""

    action: str
    changed: bool
    weights: dict[str, float]
    audit: WeightChange


class TickResult(Moved, total=False):
    """What one tick decided: its `state` and why; when it moved the alias, the transition's
    `action`, `changed`, `weights` and `audit` entry (avsev.rollout.aliases.Transition)."""

    state: Required[TickState]
    reason: str
    weight: float
    held_minutes: float
    waiting_for: str
    followers: dict[str, str]
    """Functions that followed a promoted model, and the version each took."""


class StartResult(Moved, total=False):
    """A run begun: at 10% (the transition's fields), or in shadow (`phase`, with no traffic
    until the shadow gate passes)."""

    autopilot: Required[str]
    config: dict[str, Any]
    phase: str
    reason: str


class HandoverResult(Moved, total=False):
    """What a deploy's handover did with its version: `created` (the alias, on the first
    deploy), `serving` (it is the stable version, or
    a follower's that carries the model served), `in rollout` (already), `canary` (a run begun,
    with the start's fields) or `waiting` (a follower's, until its leader promotes its model)."""

    handover: Required[str]
    version: str
    autopilot: str
    config: dict[str, Any]
    phase: str
    reason: str


class AutopilotStatus(TypedDict, total=False):
    """The alias's weights and the run, its step, how long it has held, and what evidence it
    still waits for."""

    weights: Required[dict[str, float]]
    autopilot: Required[Literal["idle", "running"]]
    candidate_version: str
    step: str
    held_minutes: float
    minimum_minutes: float
    max_hours: float
    waiting_for: str


class Autopilot:
    def __init__(
        self,
        rollouts: Rollouts,
        *,
        index: Callable[[], AuditIndex],
        ab_report: Callable[[], ABReport | None],
        alert: Callable[[str, str], None] | None = None,
        followers: Mapping[str, Rollouts] | None = None,
        follower_index: Callable[[str], AuditIndex] | None = None,
    ) -> None:
        self.r = rollouts
        self.index = index
        """What the controller needs of this function's audit (avsev.rollout.audit): the run,
        when its step began; the same few requests however long the audit has grown."""
        self.ab_report = ab_report
        self.alert = alert
        self.followers = dict(followers or {})
        """Functions whose alias follows this one's model (explain follows predict): each takes
        the version handed over for a model when this alias promotes that model."""
        self.follower_index = follower_index
        self._seen: tuple[AuditIndex, AliasState, ABReport | None] | None = None
        """What the last tick read, when it changed nothing (its status needs no new read)."""
        self._held: tuple[ABReport | None] | None = None
        """The report a tick that changed nothing read (set by `_waiting`)."""

    # ---- the run, as the audit tells it -------------------------------------------------
    def current_run(self) -> dict[str, Any] | None:
        """The latest autopilot start not followed by its end."""
        return self.index().run

    @staticmethod
    def _step_started(index: AuditIndex, candidate: str) -> dt.datetime:
        """When the alias last changed weight for this candidate (start or step)."""
        since = index.step_at(candidate)
        if since is None:
            raise RolloutError(f"no audited start of version {candidate}")
        return since

    def _write(self, action: str, *, on: Rollouts | None = None, **details: Any) -> dict[str, Any]:
        """One audit entry of this alias's controller, about `on`'s function (this one's by
        default: a follower's handover is audited under the follower)."""
        rollouts = on or self.r
        entry = {
            "at": self.r.clock().isoformat(timespec="seconds"),
            "seq": clock.now_ns(),
            "action": action,
            "function": rollouts.function,
            "alias": rollouts.alias,
            **details,
        }
        if rollouts.audit:
            rollouts.audit(entry)
        return entry

    # ---- commands -----------------------------------------------------------------------
    def start(
        self, version: str, config: AutopilotConfig | None = None, *, force: str | None = None
    ) -> StartResult:
        """Begin at 10% (every guard of a manual start applies) and hand over to the ticks."""
        if self.r.audit is None:
            raise RolloutError("the autopilot needs an audit trail (its state): give the bucket")
        run = self.current_run()
        if run is not None:
            raise RolloutError(
                f"an autopilot already rolls out version {run['candidate_version']} on "
                f"{self.r.function}: one at a time (end it with a promote or rollback)"
            )
        config = config or AutopilotConfig()
        if config.after_shadow:
            model = self._model_of(version)
            self._write(STARTED, candidate_version=version, config=asdict(config), phase="shadow")
            return StartResult(
                autopilot="started",
                phase="shadow",
                config=asdict(config),
                reason=f"waiting for {SHADOW_MIN_PAIRS} labelled shadow pairs of model {model}",
            )
        started = self.r.start(version, FIRST_WEIGHT, force=force)
        self._write(STARTED, candidate_version=version, config=asdict(config))
        return StartResult(autopilot="started", config=asdict(config), **started)

    def hand_over(self, version: str, model_version: str | None = None) -> HandoverResult:
        """A deploy published `version` and its parity check passed: it becomes the candidate.

        - already the stable version (a stack rolled back to what serves) → any run for another
          candidate ends and that candidate is rolled back: the deploy that brought it is undone;
        - a run for this version already → nothing (CloudFormation may repeat a request);
        - a run for another candidate → that one is rolled back and its run ends, "superseded":
          the newest deploy wins, and its evidence starts from nothing (evidence about one
          version says nothing about another);
        - then the handover is audited and the run starts at 10% (the alarms of this version and
          the A/B report decide from there).
        """
        state = self.r.state()
        run = self.current_run()
        if version == state.stable_version:
            if run is not None:
                self.r.rollback(state=state)
                self._write(
                    ENDED,
                    candidate_version=run["candidate_version"],
                    outcome="rolled back: its deploy was rolled back",
                )
            return HandoverResult(
                handover="serving", version=version, weights=self.r.state().weights
            )
        if run is not None and run["candidate_version"] == version:
            return HandoverResult(handover="in rollout", version=version, weights=state.weights)
        if run is not None or (state.candidate_version and state.candidate_weight > 0):
            superseded = run["candidate_version"] if run else state.candidate_version
            self.r.rollback(state=state)
            self._write(
                ENDED, candidate_version=superseded, outcome=f"superseded by version {version}"
            )
        self._write(HANDOVER, candidate_version=version, model_version=model_version)
        started = self.start(version)
        return HandoverResult(handover="canary", version=version, **started)

    def hand_over_follower(
        self, function: str, version: str, model_version: str | None
    ) -> HandoverResult:
        """A follower's new version (explain): it serves at once when it carries the model this
        alias serves (a code change of the follower), else it waits for this alias to promote
        its model (and is dropped if that model is rolled back)."""
        follower = self.followers[function]
        state = self.r.state()
        stable_model = state.model_versions.get(state.stable_version)
        self._write(
            HANDOVER,
            on=follower,
            candidate_version=version,
            model_version=model_version,
            follows=self.r.function,
        )
        if model_version == stable_model:
            return HandoverResult(handover="serving", **follower.switch(version))
        return HandoverResult(
            handover="waiting",
            reason=f"serves when {self.r.function} promotes model {model_version}",
        )

    def _followers_take(self, model_version: str | None) -> dict[str, str]:
        """Each follower switches to its newest version handed over for the promoted model."""
        taken = {}
        for function, follower in self.followers.items():
            if self.follower_index is None:
                continue
            version = self.follower_index(function).handed_over(model_version)
            if version is not None:
                follower.switch(version, action="follow")
                taken[function] = version
        return taken

    def _model_of(self, version: str) -> str | None:
        from avsev.rollout.aliases import model_version_of

        config = self.r.lambda_.get_function_configuration(
            FunctionName=self.r.function, Qualifier=version
        )
        return model_version_of(config)

    def _shadow_gate(self, run: Mapping[str, Any], state: AliasState) -> TickResult:
        """Before any traffic: the candidate scored in shadow must not be worse."""
        candidate = run["candidate_version"]
        model = self._model_of(candidate)
        report = self.ab_report()
        pairs = report.shadow_mcnemar if report else None
        as_of = report.as_of if report else None
        fresh = as_of and dt.datetime.fromisoformat(as_of) >= dt.datetime.fromisoformat(run["at"])
        if not pairs or not fresh or pairs.shadow_version != model:
            return TickResult(
                state="shadow",
                reason=f"waiting for an A/B report with shadow pairs of model {model}",
            )
        if pairs.rows < SHADOW_MIN_PAIRS:
            return TickResult(
                state="shadow",
                reason=f"{pairs.rows} of {SHADOW_MIN_PAIRS} labelled shadow pairs of model {model}",
            )
        if pairs.significant and pairs.only_a_correct > pairs.only_b_correct:
            reason = f"worse in shadow, never served: {pairs.verdict}"
            self._write(
                ENDED, candidate_version=candidate, outcome="rejected in shadow", reason=reason
            )
            self._notify(f"avsev autopilot: {model} worse in shadow", reason)
            return TickResult(state="rejected_in_shadow", reason=reason)
        result = self.r.start(candidate, FIRST_WEIGHT, state=state)
        return TickResult(state="started", reason=f"shadow passed: {pairs.verdict}", **result)

    def tick(self) -> TickResult:
        """One decision on the alias as it was at the tick's start: every write names that
        revision, so of two ticks that overlap (no reserved concurrency keeps them apart) the
        later writer finds the alias changed, makes no change and no audit entry, and ends
        as `superseded` (the next tick decides on the new state).

        It reads the audit's index once and the alias once (avsev.rollout.audit): its cost does
        not grow with the audit."""
        self._seen = None
        self._held = None
        index = self.index()
        run = index.run
        if run is None:
            return TickResult(state="idle", reason="no autopilot run")
        state = self.r.state()
        try:
            with self.r.pinned(state.revision):
                out = self._tick(run, index, state)
        except AliasChanged as e:
            return TickResult(state="superseded", reason=str(e))
        if self._held is not None:
            self._seen = (index, state, self._held[0])
        return out

    def _tick(self, run: dict[str, Any], index: AuditIndex, state: AliasState) -> TickResult:
        candidate = run["candidate_version"]
        config = AutopilotConfig(**run.get("config", {}))
        if run.get("phase") == "shadow" and not index.run_has_traffic:
            return self._shadow_gate(run, state)
        if state.candidate_version != candidate or state.candidate_weight <= 0:
            self._write(
                ENDED, candidate_version=candidate, outcome="ended: the alias was changed by hand"
            )
            return TickResult(state="ended", reason="the alias no longer canaries the candidate")
        now = self.r.clock()
        since = self._step_started(index, candidate)
        held_min = (now - since).total_seconds() / 60
        weight = state.candidate_weight
        alarms = [name for name, s in state.alarms.items() if s == "ALARM"]
        if alarms:
            return self._roll_back(candidate, f"alarm {', '.join(alarms)} in ALARM", state)
        report = self._fresh_report(state, since)
        decision = report.decision if report else None
        if report and decision == "rollback":
            return self._roll_back(
                candidate, f"the A/B report advises rollback: {report.reason}", state
            )
        minimum = config.min_minutes if weight <= FIRST_WEIGHT else config.second_step_minutes
        if held_min < minimum:
            return self._waiting(
                weight,
                held_min,
                f"holding {weight:.0%} for {minimum - held_min:.0f} more minutes",
                report,
            )
        same_model = state.model_versions.get(candidate) == state.model_versions.get(
            state.stable_version
        )
        if same_model and decision != "promote":
            report, decision = None, "promote"
        if decision == "promote":
            reason = (
                report.reason
                if report
                else f"the same model as the stable version (a code change): held {held_min:.0f} "
                "minutes without an alarm"
            )
            if weight < SECOND_WEIGHT:
                result = self.r.step(SECOND_WEIGHT, state=state)
                return TickResult(state="stepped", weight=SECOND_WEIGHT, reason=reason, **result)
            result = self.r.promote(state=state)
            self._write(ENDED, candidate_version=candidate, outcome="promoted", reason=reason)
            followed = self._followers_take(state.model_versions.get(candidate))
            return TickResult(state="promoted", reason=reason, followers=followed, **result)
        if held_min > config.max_hours * 60:
            reason = (
                f"inconclusive: a person decides (held {weight:.0%} for {held_min / 60:.1f} h "
                f"past the {config.max_hours:g} h limit; last A/B decision {decision or 'none'})"
            )
            self._write(
                ENDED, candidate_version=candidate, outcome="stopped", reason=reason, weight=weight
            )
            self._notify(f"avsev autopilot stopped: {self.r.function}", reason)
            return TickResult(state="stopped", weight=weight, reason=reason)
        return self._waiting(weight, held_min, "waiting for evidence", report)

    def status(self, *, after_tick: bool = False) -> AutopilotStatus:
        """The step, how long it has held, and what evidence it still waits for. With
        `after_tick`, from what the last tick read when it changed nothing (no new request)."""
        seen, self._seen = self._seen, None
        if after_tick and seen is not None:
            index, state, report = seen
        else:
            index, state, report = self.index(), self.r.state(), None
        run = index.run
        if run is None:
            return AutopilotStatus(weights=state.weights, autopilot="idle")
        candidate = run["candidate_version"]
        if run.get("phase") == "shadow" and not index.run_has_traffic:
            return AutopilotStatus(
                weights=state.weights,
                autopilot="running",
                candidate_version=candidate,
                step="shadow (no traffic)",
            )
        since = self._step_started(index, candidate)
        report = report if seen is not None and after_tick else self._fresh_report(state, since)
        config = AutopilotConfig(**run.get("config", {}))
        weight = state.candidate_weight
        minimum = config.min_minutes if weight <= FIRST_WEIGHT else config.second_step_minutes
        held = (self.r.clock() - since).total_seconds() / 60
        return AutopilotStatus(
            weights=state.weights,
            autopilot="running",
            candidate_version=candidate,
            step=f"{weight:.0%}",
            held_minutes=round(held, 1),
            minimum_minutes=minimum,
            max_hours=config.max_hours,
            waiting_for=_evidence(report, held, minimum),
        )

    # ---- helpers ------------------------------------------------------------------------
    def _fresh_report(self, state: AliasState, since: dt.datetime) -> ABReport | None:
        """The latest A/B report if it compares this champion and candidate and was made
        for a time after the step began."""
        report = self.ab_report()
        if not report:
            return None
        champion = state.model_versions.get(state.stable_version)
        candidate = state.model_versions.get(state.candidate_version or "")
        if (report.champion, report.candidate) != (champion, candidate):
            return None
        as_of = report.as_of
        if not as_of or dt.datetime.fromisoformat(as_of) < since:
            return None
        return report

    def _roll_back(self, candidate: str, reason: str, state: AliasState) -> TickResult:
        result = self.r.rollback(state=state)
        self._write(ENDED, candidate_version=candidate, outcome="rolled back", reason=reason)
        self._notify(f"avsev autopilot rolled back {self.r.function}", reason)
        return TickResult(state="rolled_back", reason=reason, **result)

    def _waiting(
        self, weight: float, held: float, reason: str, report: ABReport | None
    ) -> TickResult:
        """A tick that changes nothing: what it read stays for its status (`_held`)."""
        self._held = (report,)
        return TickResult(
            state="holding",
            weight=weight,
            held_minutes=round(held, 1),
            reason=reason,
            waiting_for=_evidence(report, held, 0),
        )

    def _notify(self, subject: str, message: str) -> None:
        if self.alert is not None:
            self.alert(subject, message)


def _evidence(report: ABReport | None, held: float, minimum: float) -> str:
    if held < minimum:
        return f"the minimum hold ({minimum - held:.0f} more minutes)"
    if report is None:
        return "an A/B report made after this step began"
    c = report.comparison
    if report.decision == "insufficient_data" or not c:
        return f"labelled predictions of both versions ({report.reason})"
    if report.decision == "continue":
        still = c.labelled_per_arm_still_needed
        return (
            f"a significant difference (always-valid p = {c.always_valid_p:.3g}); "
            f"about {still or 0:.0f} more labelled predictions per version"
        )
    return f"nothing: the A/B decision is {report.decision}"


def autopilot_for(
    *,
    lambda_client: Any,
    s3: Any,
    bucket: str,
    function: str,
    cloudwatch: Any = None,
    alarm_prefix: str | None = None,
    sns: Any = None,
    topic_arn: str | None = None,
    followers: Mapping[str, str | None] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> Autopilot:
    """The controller of one function's alias, wired to its bucket (audit, A/B reports),
    alarms and alerts topic, with the functions that follow its model (name → their alarm
    prefix): what the Lambda function, the CLI and the local stack build."""
    from avsev.monitoring.store import latest_ab_report
    from avsev.rollout.aliases import s3_audit

    audit = s3_audit(s3, bucket)

    def rollouts_of(name: str, prefix: str | None) -> Rollouts:
        return Rollouts(
            lambda_client,
            name,
            cloudwatch=cloudwatch,
            alarm_prefix=prefix,
            audit=audit,
            clock=clock,
        )

    rollouts = rollouts_of(function, alarm_prefix)
    follower_rollouts = {name: rollouts_of(name, p) for name, p in (followers or {}).items()}

    def alert(subject: str, message: str) -> None:
        if sns is not None and topic_arn:
            sns.publish(TopicArn=topic_arn, Subject=subject[:100], Message=message)

    return Autopilot(
        rollouts,
        index=lambda: audit.index(function, store=True),
        ab_report=lambda: latest_ab_report(s3, bucket),
        alert=alert,
        followers=follower_rollouts,
        follower_index=lambda name: audit.index(name, store=True),
    )
