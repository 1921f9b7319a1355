"""`avsev verify`: an acceptance check of a deployment, as a user runs it after `make deploy`
(against a stack's outputs) or against `avsev local up` (`--local`).

Each check is a function of a `Target` returning pass/fail and a detail; `run` prints them as
a table. Nothing here is specific to the local stack but how the target is found."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REPORT = {
    "event_date": "2019-03-02",
    "dec_latitude": 35.2,
    "dec_longitude": -80.9,
    "weather_condition": "IMC",
    "make": "Cessna",
    "broad_phase_of_flight": "Cruise",
}
BAD_REPORT = {"aircraft_age": -5, "weather_condition": "FOG"}
ERROR_KEYS = {"status", "code", "message", "details", "request_id"}


@dataclass
class Target:
    """A deployment to verify: where its API is, and the AWS resources behind it."""

    base_url: str
    api_key: str
    bucket: str
    predict_function: str
    expected_alarms: list[str]
    region: str | None = None
    stack_version: str | None = None
    """The predict version the stack published last (handed over to the controller)."""
    controller: str | None = None
    """The function that owns alias `live`'s routing (the rollout controller)."""
    name: str = "local"
    athena_workgroup: str | None = None
    glue_database: str | None = None


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Session:
    """What the checks share: the target, AWS clients, and the prediction made."""

    target: Target
    aws: Callable[[str], Any]
    record_timeout_s: float = 600.0
    ev_id: str = field(default_factory=lambda: f"verify-{uuid.uuid4().hex[:16]}")
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    predicted: dict[str, Any] | None = None


# ---- targets ---------------------------------------------------------------------------


def target_from_stack(stack: str, aws: Callable[[str], Any]) -> Target:
    """Read a deployed stack's outputs (`avsev-prod`, `avsev-staging`) and its alarms."""
    from avsev_tools.deployment import stack_outputs

    cfn = aws("cloudformation")
    out = stack_outputs(cfn, stack)
    key = (
        aws("secretsmanager").get_secret_value(SecretId=out["ApiKeySecret"])["SecretString"]
        if "ApiKeySecret" in out  # the HTTP API option: its authorizer's key
        else aws("apigateway").get_api_key(apiKey=out["ApiKeyId"], includeValue=True)["value"]
    )
    alarms = [
        r["PhysicalResourceId"]
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
        for r in page["StackResourceSummaries"]
        if r["ResourceType"] == "AWS::CloudWatch::Alarm"
    ]
    return Target(
        base_url=out["ApiUrl"].rstrip("/"),
        api_key=key,
        bucket=out["DataBucket"],
        predict_function=out["PredictFunction"],
        expected_alarms=sorted(alarms),
        region=cfn.meta.region_name,
        stack_version=out.get("PredictVersion"),
        controller=out.get("RolloutController"),
        name=stack,
        athena_workgroup=out.get("AthenaWorkgroup"),
        glue_database=out.get("GlueDatabase"),
    )


def target_from_local(state: dict[str, Any]) -> Target:
    """The running local stack (`avsev local up` writes its state file); the stack's outputs
    from the local CloudFormation, as `target_from_stack` reads them in AWS."""
    from avsev_tools.local.cloudformation import CloudFormation

    stack = CloudFormation().stack(state["stack"]) or {}
    out = stack.get("Outputs", {})
    return Target(
        base_url=state["base_url"],
        api_key=state["api_key"],
        bucket=state["bucket"],
        predict_function=state["functions"]["predict"],
        expected_alarms=sorted(state["alarms"]),
        stack_version=out.get("PredictVersion"),
        controller=out.get("RolloutController"),
        name="local",
    )


# ---- HTTP ------------------------------------------------------------------------------


def call(
    target: Target, method: str, path: str, body: Any = None, *, api_key: str | None = None
) -> tuple[int, Any]:
    """One request with the API key, signed with SigV4 when the target is in AWS."""
    data = json.dumps(body).encode() if body is not None else None
    url = f"{target.base_url}{path}"
    headers = {"Content-Type": "application/json", "X-Api-Key": api_key or target.api_key}
    if target.region:
        headers = _signed(method, url, data, headers, target.region)
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")[:200]


def _signed(
    method: str, url: str, data: bytes | None, headers: dict[str, str], region: str
) -> dict[str, str]:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise ValueError("no AWS credentials to sign the API requests with (IAM authorization)")
    request = AWSRequest(method=method, url=url, data=data, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


# ---- checks ----------------------------------------------------------------------------


def check_health(s: Session) -> tuple[bool, str]:
    status, body = call(s.target, "GET", "/health")
    ok = status == 200 and isinstance(body, dict) and body.get("status") == "ok"
    return ok, f"{status} {body}"


def check_predict(s: Session) -> tuple[bool, str]:
    status, body = call(s.target, "POST", "/predict", {"ev_id": s.ev_id, **REPORT})
    ok = (
        status == 200
        and isinstance(body, dict)
        and body.get("ev_id") == s.ev_id
        and {"prediction_label", "probabilities", "model_version"} <= set(body)
    )
    if ok:
        s.predicted = body
        return True, f"{body['prediction_label']} by model {body['model_version']} ({s.ev_id})"
    return False, f"{status} {str(body)[:200]}"


def check_bad_request(s: Session) -> tuple[bool, str]:
    status, body = call(s.target, "POST", "/predict", {"ev_id": s.ev_id, **BAD_REPORT})
    error = body.get("error") if isinstance(body, dict) else None
    ok = 400 <= status < 500 and isinstance(error, dict) and set(error) >= ERROR_KEYS
    return ok, f"{status} {error.get('code') if isinstance(error, dict) else str(body)[:200]}"


def check_explain(s: Session) -> tuple[bool, str]:
    status, body = call(s.target, "POST", "/predict/explain", {"ev_id": s.ev_id, **REPORT})
    factors = body.get("top_contributing_factors") if isinstance(body, dict) else None
    ok = status == 200 and bool(factors)
    return ok, f"{status}, {len(factors or [])} factors" if ok else f"{status} {str(body)[:200]}"


def check_outcome(s: Session) -> tuple[bool, str]:
    outcome = {"ev_id": s.ev_id, "actual_severity": "None"}
    status, body = call(s.target, "POST", "/outcomes", {"outcomes": [outcome]})
    return 200 <= status < 300, f"{status} {str(body)[:200]}"


def check_record(s: Session) -> tuple[bool, str]:
    """The prediction's record becomes queryable in the predictions table within the limit."""
    deadline = time.monotonic() + s.record_timeout_s
    while True:
        found = find_prediction_record(s, s.ev_id)
        if found:
            return True, found
        if time.monotonic() >= deadline:
            return (
                False,
                f"no record of {s.ev_id} in the predictions table after {s.record_timeout_s:.0f} s",
            )
        time.sleep(min(5.0, max(0.5, s.record_timeout_s / 60)))


def find_prediction_record(s: Session, ev_id: str) -> str | None:
    """Query the predictions table for `ev_id` (Athena on the stack's workgroup in AWS,
    DuckDB over the local stack's records): where it was found, or None."""
    from avsev.monitoring.query import AthenaEngine, local_engine

    days = sorted({s.started.date(), dt.datetime.now(dt.UTC).date()})
    partitions = ", ".join(f"'{d.isoformat()}'" for d in days)
    sql = (
        f"SELECT dt, COUNT(*) AS n FROM predictions WHERE dt IN ({partitions}) "
        f"AND ev_id = '{ev_id}' GROUP BY dt"
    )
    if s.target.athena_workgroup and s.target.glue_database:
        engine: Any = AthenaEngine(
            s.aws("athena"), s.target.athena_workgroup, s.target.glue_database
        )
        where = f"Athena {s.target.glue_database}.predictions"
    else:
        engine = local_engine(s.aws("s3"), s.target.bucket, days)
        where = "the predictions table (DuckDB)"
    rows = [r for r in engine.query(sql) if int(r["n"]) > 0]
    return f"{where}, dt={rows[0]['dt']}" if rows else None


def check_alarms(s: Session) -> tuple[bool, str]:
    expected = s.target.expected_alarms
    cw = s.aws("cloudwatch")
    found: dict[str, str] = {}
    for i in range(0, len(expected), 100):
        for a in cw.describe_alarms(AlarmNames=expected[i : i + 100])["MetricAlarms"]:
            found[a["AlarmName"]] = a["StateValue"]
    missing = sorted(set(expected) - set(found))
    firing = sorted(n for n, state in found.items() if state == "ALARM")
    ok = bool(expected) and not missing and not firing
    return ok, (
        f"{len(found)} alarms, none in ALARM"
        if ok
        else f"missing {missing[:5]}, in ALARM {firing[:5]}"
        if expected
        else "no alarms expected: none found to check"
    )


def check_rollout_guard(s: Session) -> tuple[bool, str]:
    """The guards `avsev rollout step` would apply, without changing anything."""
    from avsev.rollout.aliases import Rollouts

    t = s.target
    rollouts = Rollouts(
        s.aws("lambda"),
        t.predict_function,
        cloudwatch=s.aws("cloudwatch"),
        alarm_names=t.expected_alarms or None,
    )
    state = rollouts.state()
    reasons = rollouts._guard("step", state, force="avsev verify: dry run")
    weights = state.weights
    return not reasons, "; ".join(reasons) if reasons else f"would act; weights {weights}"


def check_alias_owner(s: Session) -> tuple[bool, str]:
    """The live alias and the stack agree: the version the stack published last serves, is the
    candidate, or the audit says why not (superseded, rolled back); only the controller moved
    the weights (every change of the alias is in the audit); and which version serves."""
    from avsev.rollout.aliases import Rollouts, s3_audit_entries
    from avsev.rollout.autopilot import ENDED

    t = s.target
    state = Rollouts(s.aws("lambda"), t.predict_function).state()
    entries = s3_audit_entries(s.aws("s3"), t.bucket, t.predict_function)
    serving = f"v{state.stable_version} (model {state.model_versions.get(state.stable_version)})"
    candidate = (
        f"candidate v{state.candidate_version} at {state.candidate_weight:.0%}"
        if state.candidate_version
        else "no candidate"
    )
    owner = f"weights owned by the rollout controller {t.controller or ''}".rstrip()
    problems = []
    newest = t.stack_version
    ended = any(e.get("action") == ENDED and e.get("candidate_version") == newest for e in entries)
    if newest and newest not in (state.stable_version, state.candidate_version) and not ended:
        problems.append(f"the stack's newest version v{newest} neither serves nor was ended")
    moves = [e for e in entries if "after" in e]
    if moves and moves[-1]["after"] != state.weights:
        problems.append(
            f"the alias routes {state.weights}, the audit's last change left {moves[-1]['after']}: "
            "someone moved it outside the controller"
        )
    detail = f"serves {serving}, {candidate}; stack's newest v{newest or '?'}; {owner}"
    return not problems, "; ".join([*problems, detail])


CHECKS: tuple[tuple[str, Callable[[Session], tuple[bool, str]]], ...] = (
    ("health", check_health),
    ("prediction (API key; SigV4 in AWS)", check_predict),
    ("bad request → 4xx error shape", check_bad_request),
    ("explanation", check_explain),
    ("outcome", check_outcome),
    ("record queryable", check_record),
    ("alarms exist, none in ALARM", check_alarms),
    ("rollout guard (dry run)", check_rollout_guard),
    ("live alias agrees with the stack", check_alias_owner),
)


def run(session: Session) -> list[Check]:
    """Every check in order; an exception is that check's failure, never the end of the run."""
    results = []
    for name, fn in CHECKS:
        start = time.monotonic()
        try:
            passed, detail = fn(session)
        except Exception as e:  # a check that cannot run has failed
            passed, detail = False, f"{type(e).__name__}: {e}"
        results.append(Check(name, passed, detail, time.monotonic() - start))
    return results


def table(target: Target, checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"avsev verify {target.name}: {target.base_url}", ""]
    lines += [
        f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.seconds:6.1f} s  {c.detail}"
        for c in checks
    ]
    failed = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - failed} passed, {failed} failed"]
    return "\n".join(lines)


# ---- preflight: before a deploy ----------------------------------------------------------

MIN_UNRESERVED = 100
"""Lambda keeps at least 100 of an account's concurrency unreserved in a region: a function's
reserved concurrency may never take the unreserved pool below it
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)."""


def reserved_in_template(template: dict[str, Any]) -> dict[str, int]:
    """Logical id → `ReservedConcurrentExecutions` of each function the template reserves for."""
    return {
        key: int(r["Properties"]["ReservedConcurrentExecutions"])
        for key, r in template.get("Resources", {}).items()
        if r.get("Type") == "AWS::Lambda::Function"
        and r.get("Properties", {}).get("ReservedConcurrentExecutions") is not None
    }


def preflight(lambda_client: Any, template: dict[str, Any]) -> list[Check]:
    """Whether the account can take what the synthesized template asks of Lambda: its
    reservations, against the account's concurrency (`GetAccountSettings`:
    https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html). Counted as for
    a first deploy; a stack that already holds its reservations needs them again only once."""
    limits = lambda_client.get_account_settings()["AccountLimit"]
    limit = int(limits["ConcurrentExecutions"])
    unreserved = int(limits["UnreservedConcurrentExecutions"])
    reserved = reserved_in_template(template)
    needed = sum(reserved.values())
    account = Check(
        "account concurrency",
        True,
        f"limit {limit:,} concurrent executions in this region, {unreserved:,} unreserved now",
    )
    if not reserved:
        fits = Check(
            "reserved concurrency",
            True,
            "the template reserves none (context reserved_concurrency is off): the deploy asks "
            "nothing of the account's concurrency quota",
        )
        return [account, fits]
    left = unreserved - needed
    each = ", ".join(f"{k} {v}" for k, v in sorted(reserved.items()))
    if left >= MIN_UNRESERVED:
        return [
            account,
            Check(
                "reserved concurrency",
                True,
                f"the template reserves {needed} ({each}), leaving {left:,} unreserved: at "
                f"least the {MIN_UNRESERVED} Lambda keeps, so the deploy can reserve them",
            ),
        ]
    quota = (limit - unreserved) + needed + MIN_UNRESERVED
    return [
        account,
        Check(
            "reserved concurrency",
            False,
            f"the deploy would fail: the template reserves {needed} ({each}), which would leave "
            f"{left:,} unreserved, below the {MIN_UNRESERVED} Lambda keeps. Deploy without "
            f"-c reserved_concurrency=true (off by default), or ask Service Quotas for a Lambda "
            f"'Concurrent executions' quota of at least {quota:,} in this region",
        ),
    ]


def preflight_table(stack: str, template_path: str, checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"avsev verify --preflight {stack}: {template_path}", ""]
    lines += [f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(not c.passed for c in checks)
    verdict = "a deploy would fail" if failed else "a deploy would succeed"
    lines += ["", f"{len(checks) - failed} passed, {failed} failed: {verdict}"]
    return "\n".join(lines)
