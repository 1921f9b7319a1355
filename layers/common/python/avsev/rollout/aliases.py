"""Rollouts by alias weights: status, start, step, promote, rollback (boto3 Lambda
`UpdateAlias` with `RoutingConfig`), guarded by the candidate's alarms and the A/B advice, with
every transition written to an audit record. This module is the only writer of alias `live`:
CloudFormation creates versions and hands each new one over (avsev.rollout.handover).

A weighted alias holds at most two versions: the stable one (`FunctionVersion`) and one
candidate (`RoutingConfig.AdditionalVersionWeights`). Repeating a command changes nothing.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, NotRequired, TypedDict

from botocore.exceptions import ClientError

from avsev import clock as avsev_clock
from avsev.constants import AUDIT_PREFIX, LIVE_ALIAS
from avsev.rollout.audit import WEIGHT_CHANGES, S3Audit, entry_real_time

VERSION_DIMENSIONS = ("ExecutedVersion", "FunctionVersion")
"""The metric dimensions that bind an alarm to one function version (Lambda's own metrics by
alias carry `ExecutedVersion`; the handlers' EMF metrics carry `FunctionVersion`)."""


class RolloutError(Exception):
    """A transition that was refused or cannot be made, with the reason."""


class AliasChanged(RolloutError):
    """The alias changed since it was read (another writer came first): the write was refused
    and nothing changed. Lambda answers `PreconditionFailedException` to an `UpdateAlias` whose
    `RevisionId` is no longer the alias's
    (https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html)."""


@dataclass
class AliasState:
    function: str
    alias: str
    stable_version: str
    candidate_version: str | None
    candidate_weight: float
    model_versions: dict[str, str | None] = field(default_factory=dict)
    alarms: dict[str, str] = field(default_factory=dict)
    revision: str | None = None
    """The alias's `RevisionId` when it was read: a write made from this state names it, so it
    lands only on the alias it was decided on."""

    @property
    def weights(self) -> dict[str, float]:
        if self.candidate_version is None:
            return {self.stable_version: 1.0}
        return {
            self.stable_version: round(1 - self.candidate_weight, 6),
            self.candidate_version: self.candidate_weight,
        }


class WeightChange(TypedDict):
    """The audit entry of an accepted `UpdateAlias`: who moved which weights, from what to
    what, and which guards a `--force` overrode."""

    at: str
    seq: int
    """The writer's clock in ns: orders entries of the same second."""
    action: str
    function: str
    alias: str
    by: str
    before: dict[str, float]
    after: dict[str, float]
    model_versions: dict[str, str | None]
    forced: bool
    force_reason: str | None
    overridden_guards: list[str]


class Transition(TypedDict):
    """What a rollout command did: whether the alias changed, its weights after, and the
    audit entry of the change (none when nothing changed)."""

    action: str
    changed: bool
    weights: dict[str, float]
    audit: NotRequired[WeightChange]


class AliasStatus(TypedDict):
    """`AliasState` as the CLI and the status functions print it, with its weights."""

    function: str
    alias: str
    stable_version: str
    candidate_version: str | None
    candidate_weight: float
    model_versions: dict[str, str | None]
    alarms: dict[str, str]
    revision: str | None
    weights: dict[str, float]


def model_version_of(configuration: dict[str, Any]) -> str | None:
    """The model version a function version serves: from its bundle path (…/<name>-<semver>)."""
    path = configuration.get("Environment", {}).get("Variables", {}).get("MODEL_BUNDLE_PATH")
    if not path:
        return None
    return PurePosixPath(path).name.rsplit("-", 1)[-1]


class Rollouts:
    """Alias weight shifts for one function's alias, with guards and an audit trail."""

    def __init__(
        self,
        lambda_client: Any,
        function: str,
        *,
        alias: str = LIVE_ALIAS,
        cloudwatch: Any = None,
        alarm_names: list[str] | None = None,
        alarm_prefix: str | None = None,
        ab_advice: Callable[[], str | None] | None = None,
        audit: Callable[[Mapping[str, Any]], None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.lambda_ = lambda_client
        self.function = function
        self.alias = alias
        self.cloudwatch = cloudwatch
        self.alarm_names = alarm_names
        self.alarm_prefix = alarm_prefix
        self.ab_advice = ab_advice
        self.audit = audit
        self.clock = clock or avsev_clock.now
        self._pinned: str | None = None

    @contextmanager
    def pinned(self, revision: str | None) -> Iterator[None]:
        """Within this block every write names `revision` (the alias as one decision read it,
        a controller's tick): a write after someone else's raises `AliasChanged`."""
        self._pinned = revision
        try:
            yield
        finally:
            self._pinned = None

    # ---- reading -----------------------------------------------------------------------
    def state(self) -> AliasState:
        alias = self.lambda_.get_alias(FunctionName=self.function, Name=self.alias)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        candidate, weight = next(iter(weights.items()), (None, 0.0))
        state = AliasState(
            self.function,
            self.alias,
            alias["FunctionVersion"],
            candidate,
            float(weight),
            revision=alias.get("RevisionId"),
        )
        for version in filter(None, (state.stable_version, candidate)):
            config = self.lambda_.get_function_configuration(
                FunctionName=self.function, Qualifier=version
            )
            state.model_versions[version] = model_version_of(config)
        state.alarms = self.alarm_states(candidate or state.stable_version)
        return state

    def alarm_states(self, version: str) -> dict[str, str]:
        """The state of each guarding alarm that watches `version` (or no version at all), as
        evaluated since its configuration last changed: a stack update that points an alarm at a
        new version leaves its old state standing until the next evaluation ("PutMetricAlarm …
        the alarm state is not changed": CloudWatch API reference), and that state belongs to the
        version it watched before. A stale state reads INSUFFICIENT_DATA."""
        if self.cloudwatch is None or (not self.alarm_names and not self.alarm_prefix):
            return {}
        kwargs: dict[str, Any] = (
            {"AlarmNames": self.alarm_names}
            if self.alarm_names
            else {"AlarmNamePrefix": self.alarm_prefix}
        )
        found = self.cloudwatch.describe_alarms(**kwargs)["MetricAlarms"]
        states = {}
        for alarm in found:
            watched = {
                d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] in VERSION_DIMENSIONS
            }
            if watched and version not in watched:
                continue
            configured = alarm.get("AlarmConfigurationUpdatedTimestamp")
            evaluated = alarm.get("StateUpdatedTimestamp")
            stale = configured is not None and evaluated is not None and evaluated < configured
            states[alarm["AlarmName"]] = "INSUFFICIENT_DATA" if stale else alarm["StateValue"]
        return states

    def status(self) -> AliasStatus:
        state = self.state()
        return AliasStatus(
            function=state.function,
            alias=state.alias,
            stable_version=state.stable_version,
            candidate_version=state.candidate_version,
            candidate_weight=state.candidate_weight,
            model_versions=state.model_versions,
            alarms=state.alarms,
            revision=state.revision,
            weights=state.weights,
        )

    # ---- guards ------------------------------------------------------------------------
    def _guard(
        self, action: str, state: AliasState, force: str | None, version: str | None = None
    ) -> list[str]:
        """Reasons to refuse; with `force` they are returned (and audited) instead of raised.
        The alarms are those of `version` (the candidate's by default)."""
        alarms = state.alarms if version is None else self.alarm_states(version)
        reasons = [f"alarm {name} is in ALARM" for name, s in alarms.items() if s == "ALARM"]
        if self.ab_advice is not None:
            advice = self.ab_advice()
            if advice == "rollback":
                reasons.append("the latest A/B report advises rollback")
        if reasons and not force:
            raise RolloutError(
                f"refusing to {action}: " + "; ".join(reasons) + " (use --force REASON to override)"
            )
        return reasons

    # ---- transitions -------------------------------------------------------------------
    def _update(
        self,
        action: str,
        before: AliasState,
        stable: str,
        candidate: str | None,
        weight: float,
        overridden: list[str],
        force: str | None,
    ) -> Transition:
        after_weights = {candidate: round(weight, 6)} if candidate and weight > 0 else {}
        unchanged = (
            before.stable_version == stable
            and (before.candidate_version if before.candidate_weight > 0 else None)
            == (candidate if after_weights else None)
            and (not after_weights or abs(before.candidate_weight - weight) < 1e-9)
        )
        if unchanged:
            return Transition(action=action, changed=False, weights=before.weights)
        revision = self._pinned or before.revision
        try:
            self.lambda_.update_alias(
                FunctionName=self.function,
                Name=self.alias,
                FunctionVersion=stable,
                RoutingConfig={"AdditionalVersionWeights": after_weights},
                **({"RevisionId": revision} if revision else {}),
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "PreconditionFailedException":
                raise
            raise AliasChanged(
                f"{self.alias} of {self.function} changed since it was read (revision "
                f"{revision}): {action} not made"
            ) from e
        after = self._after(before, stable, candidate if after_weights else None, weight)
        entry = WeightChange(
            at=self.clock().isoformat(timespec="seconds"),
            seq=avsev_clock.now_ns(),
            action=action,
            function=self.function,
            alias=self.alias,
            by=_who(),
            before=before.weights,
            after=after.weights,
            model_versions=after.model_versions | before.model_versions,
            forced=bool(force),
            force_reason=force,
            overridden_guards=overridden,
        )
        if self.audit:
            self.audit(entry)
        return Transition(action=action, changed=True, weights=after.weights, audit=entry)

    def _after(
        self, before: AliasState, stable: str, candidate: str | None, weight: float
    ) -> AliasState:
        """The alias as an accepted `UpdateAlias` left it: the weights it was given, the models
        of its versions (read only for a version the state before did not hold)."""
        models = {}
        for version in filter(None, (stable, candidate)):
            if version in before.model_versions:
                models[version] = before.model_versions[version]
            else:
                config = self.lambda_.get_function_configuration(
                    FunctionName=self.function, Qualifier=version
                )
                models[version] = model_version_of(config)
        return AliasState(
            self.function,
            self.alias,
            stable,
            candidate,
            round(weight, 6) if candidate else 0.0,
            models,
        )

    def start(
        self,
        version: str,
        weight: float = 0.1,
        *,
        force: str | None = None,
        state: AliasState | None = None,
    ) -> Transition:
        """Canary `version` at `weight`; `state` is the alias as the caller just read it (a
        controller's tick reads it once), else it is read here."""
        _check_weight(weight)
        state = state or self.state()
        if version == state.stable_version:
            raise RolloutError(f"version {version} is already the stable version of {self.alias}")
        if state.candidate_version not in (None, version) and state.candidate_weight > 0:
            raise RolloutError(
                f"{self.alias} already canaries version {state.candidate_version}: promote or roll back first "
                "(a weighted alias holds at most two versions)"
            )
        self.lambda_.get_function_configuration(
            FunctionName=self.function, Qualifier=version
        )  # exists?
        overridden = self._guard("start", state, force, version)
        return self._update(
            "start", state, state.stable_version, version, weight, overridden, force
        )

    def step(
        self, weight: float, *, force: str | None = None, state: AliasState | None = None
    ) -> Transition:
        _check_weight(weight)
        state = state or self.state()
        if state.candidate_version is None:
            raise RolloutError(f"no rollout in progress on {self.alias}: start one first")
        overridden = self._guard("step", state, force) if weight > state.candidate_weight else []
        return self._update(
            "step", state, state.stable_version, state.candidate_version, weight, overridden, force
        )

    def promote(self, *, force: str | None = None, state: AliasState | None = None) -> Transition:
        state = state or self.state()
        if state.candidate_version is None:
            return Transition(action="promote", changed=False, weights=state.weights)
        overridden = self._guard("promote", state, force)
        return self._update("promote", state, state.candidate_version, None, 0.0, overridden, force)

    def rollback(self, *, state: AliasState | None = None) -> Transition:
        """Back to 100% on the stable version in one call; never refused."""
        state = state or self.state()
        return self._update("rollback", state, state.stable_version, None, 0.0, [], None)

    def switch(self, version: str, action: str = "switch") -> Transition:
        """`version` at 100% at once (a follower taking the model its leader promoted)."""
        state = self.state()
        return self._update(action, state, version, None, 0.0, [], None)


def _check_weight(weight: float) -> None:
    if not 0 < weight < 1:
        raise RolloutError(
            f"weight {weight} must be between 0 and 1 (exclusive); use promote for 100%"
        )


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def s3_audit(s3: Any, bucket: str, prefix: str = AUDIT_PREFIX) -> S3Audit:
    """The bucket's audit: call it with an entry to record it (and update its function's
    index); see avsev.rollout.audit for the layout."""
    return S3Audit(s3, bucket, prefix)


@dataclass(frozen=True)
class Experiment:
    """The A/B experiment the live alias runs: the champion's and the candidate's model
    versions, and when the candidate's current step began (its evidence counts from then);
    all None when no rollout runs."""

    champion: str | None = None
    candidate: str | None = None
    since: dt.datetime | None = None


def current_experiment(lambda_client: Any, s3: Any, bucket: str, function: str) -> Experiment:
    """What the A/B job compares now: the alias's two versions and the step's start from the
    audit's index (a GET and a LIST, whatever the audit's age). One reading for the scheduled
    A/B function, the local stack's tick and the demo."""
    state = Rollouts(lambda_client, function).state()
    if state.candidate_version is None:
        return Experiment()
    return Experiment(
        champion=state.model_versions.get(state.stable_version),
        candidate=state.model_versions.get(state.candidate_version),
        since=s3_audit(s3, bucket).index(function).step_began(state.candidate_version),
    )


def s3_audit_entries(
    s3: Any, bucket: str, function: str, prefix: str = AUDIT_PREFIX
) -> list[dict[str, Any]]:
    """Every audit entry of one function, in the order they were written (one GET each: the
    history for people; a controller reads the index, `S3Audit.index`)."""
    return S3Audit(s3, bucket, prefix).entries(function)


def step_began(entries: list[dict[str, Any]], function_version: str) -> dt.datetime | None:
    """When the alias last changed weight for this function version (a start or a step), by
    the writer's clock (`seq`, ns): the A/B evidence of the step counts from then. Over a
    list of entries; `AuditIndex.step_began` answers from the index."""
    last: dict[str, Any] | None = None
    for entry in entries:
        if entry.get("action") in WEIGHT_CHANGES and function_version in entry.get("after", {}):
            last = entry
    return entry_real_time(last)
