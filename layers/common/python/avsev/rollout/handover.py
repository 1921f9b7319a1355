"""CloudFormation hands each new version of a rolled-out function to the rollout controller.

The stack never sets alias `live`'s routing: a custom resource per rolled-out function carries
the version the template just published (`Version`), its model (`ModelVersion`) and the card's
golden requests (`Golden`). On every request CloudFormation sends (create, update, delete:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes.html) the
controller:

1. checks parity: the new version, invoked directly, must reproduce the golden probabilities
   (FAILED otherwise, and the stack update rolls back before anyone is served by it);
2. creates the alias on the first deploy (the version at 100%), or hands the version to the
   autopilot, which starts it at 10% (`Autopilot.hand_over`: a deploy during a rollout
   supersedes the candidate); a follower (explain) waits for its leader to promote the model;
3. answers with a constant physical id (the alias ARN): a changed id would make CloudFormation
   delete "the old resource", the alias itself
   (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-update.html).

Delete removes nothing: the function and its aliases go with the stack; while the stack lives,
a delete only comes for a resource that was removed from the template, and the alias then
stays where the controller left it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from avsev.constants import LIVE_ALIAS
from avsev.rollout.autopilot import Autopilot, HandoverResult
from avsev.rollout.smoke import lambda_invoker, smoke_test
from avsev.serving.card import Card, GoldenSet

LEADER = "leader"
FOLLOWER = "follower"


@dataclass(frozen=True)
class HandoverRequest:
    """A custom resource's properties (CloudFormation passes every scalar as a string)."""

    function: str
    version: str
    model_version: str
    smoke_route: str
    golden: GoldenSet
    role: str = LEADER
    alias: str = LIVE_ALIAS

    @classmethod
    def of(cls, props: dict[str, Any]) -> HandoverRequest:
        missing = [
            k
            for k in ("FunctionName", "Version", "ModelVersion", "SmokeRoute", "Golden")
            if not props.get(k)
        ]
        if missing:
            raise ValueError(f"the custom resource lacks {', '.join(missing)}")
        role = props.get("Role", LEADER)
        if role not in (LEADER, FOLLOWER):
            raise ValueError(f"Role {role!r}: use {LEADER} or {FOLLOWER}")
        return cls(
            function=str(props["FunctionName"]),
            version=str(props["Version"]),
            model_version=str(props["ModelVersion"]),
            smoke_route=str(props["SmokeRoute"]),
            golden=GoldenSet.from_dict(json.loads(props["Golden"])),
            role=role,
            alias=str(props.get("AliasName", LIVE_ALIAS)),
        )


def golden_property(card: Card) -> str:
    """What the stack puts in `Golden`: the card's version, classes and golden requests."""
    return json.dumps(
        card.golden_set().to_dict(),
        sort_keys=True,
        separators=(",", ":"),
    )


def handle(
    event: dict[str, Any],
    *,
    lambda_client: Any,
    pilot: Autopilot,
) -> dict[str, Any]:
    """The response document for one custom resource request (never raises: any error is a
    FAILED response with its reason, as CloudFormation waits for an answer otherwise)."""
    props = event.get("ResourceProperties", {})
    function = str(props.get("FunctionName", "?"))
    alias = str(props.get("AliasName", LIVE_ALIAS))
    physical = event.get("PhysicalResourceId") or f"{function}:{alias}"
    try:
        if event["RequestType"] == "Delete":
            return _response(event, "SUCCESS", "the alias stays with its function", physical)
        request = HandoverRequest.of(props)
        old = event.get("OldResourceProperties") or {}
        if event["RequestType"] == "Update" and old.get("Version") == request.version:
            return _response(event, "SUCCESS", f"version {request.version} unchanged", physical)
        parity = smoke_test(
            lambda_invoker(lambda_client, f"{request.function}:{request.version}"),
            request.golden,
            request.smoke_route,
        )
        if not parity.passed:
            return _response(
                event,
                "FAILED",
                f"version {request.version} of {request.function} fails the parity check "
                f"(model {request.model_version}): {'; '.join(parity.problems)}",
                physical,
            )
        data = hand_over(request, lambda_client=lambda_client, pilot=pilot)
        reason = f"version {request.version} (model {request.model_version}): {data['handover']}"
        return _response(event, "SUCCESS", reason, physical, data)
    except Exception as e:  # an answer in every case: CloudFormation would wait an hour
        return _response(event, "FAILED", f"{type(e).__name__}: {e}", physical)


def hand_over(
    request: HandoverRequest, *, lambda_client: Any, pilot: Autopilot
) -> HandoverResult:
    """Create the alias on the first deploy, else give the version to its owner."""
    if not _alias_exists(lambda_client, request.function, request.alias):
        lambda_client.create_alias(
            FunctionName=request.function,
            Name=request.alias,
            FunctionVersion=request.version,
            Description="routing owned by the rollout controller (avsev.rollout)",
        )
        return HandoverResult(handover="created", version=request.version)
    if request.role == FOLLOWER:
        return pilot.hand_over_follower(request.function, request.version, request.model_version)
    return pilot.hand_over(request.version, request.model_version)


def _alias_exists(lambda_client: Any, function: str, alias: str) -> bool:
    try:
        lambda_client.get_alias(FunctionName=function, Name=alias)
    except lambda_client.exceptions.ResourceNotFoundException:
        return False
    return True


def _response(
    event: dict[str, Any],
    status: str,
    reason: str,
    physical: str,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The response object CloudFormation expects
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html);
    Data values are strings, and the whole body stays under its 4,096-byte limit."""
    kept = {k: v for k, v in (data or {}).items() if k in ("handover", "version", "weights")}
    return {
        "Status": status,
        "Reason": reason[:1000],
        "PhysicalResourceId": physical,
        "StackId": event.get("StackId", ""),
        "RequestId": event.get("RequestId", ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "Data": {
            k: (v if isinstance(v, str) else json.dumps(v, default=str))[:256]
            for k, v in kept.items()
        },
    }


def send(response_url: str, response: dict[str, Any], opener: Callable[..., Any] | None = None) -> None:
    """PUT the response to the pre-signed URL CloudFormation gave (no content type: the URL
    is signed without one)."""
    body = json.dumps(response).encode()
    request = urllib.request.Request(
        response_url, data=body, method="PUT", headers={"Content-Type": ""}
    )
    with (opener or urllib.request.urlopen)(request, timeout=30) as answer:
        answer.read()
