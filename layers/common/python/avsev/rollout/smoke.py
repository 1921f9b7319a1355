"""The parity check: a new function version must reproduce its card's golden probabilities
before the rollout controller sends it any traffic (avsev.rollout.handover)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from avsev.constants import PARITY_CHECK_REQUESTS
from avsev.serving.card import Card, GoldenSet
from avsev.serving.events import proxy_event

TOLERANCE = 1e-5
"""Answers carry 6 decimals; the card holds XGBoost's float32 probabilities."""


@dataclass
class SmokeResult:
    passed: bool
    checked: int
    worst_abs_diff: float
    problems: list[str] = field(default_factory=list)


def golden_events(card: Card | GoldenSet, route: str) -> list[dict[str, Any]]:
    """The card's golden requests as REST events: one batch, or one request each."""
    reports = [{"ev_id": f"golden-{i}", **g.request} for i, g in enumerate(card.golden)]
    if route == "/predict/batch":
        bodies: list[dict[str, Any]] = [{"reports": reports}]
    else:
        bodies = reports
    return [
        proxy_event("POST", route, b, request_id=f"{PARITY_CHECK_REQUESTS}{uuid.uuid4()}")
        for b in bodies
    ]


def check_answers(card: Card | GoldenSet, responses: list[dict[str, Any]]) -> SmokeResult:
    """Compare the answers to the golden requests with the card's probabilities."""
    problems: list[str] = []
    answers: list[dict[str, Any]] = []
    for response in responses:
        if response.get("statusCode") != 200:
            problems.append(
                f"status {response.get('statusCode')}: {str(response.get('body', ''))[:300]}"
            )
            continue
        body = json.loads(response["body"])
        answers.extend(body.get("predictions", [body]))
    golden = card.golden
    if len(answers) != len(golden):
        problems.append(f"{len(answers)} answers for {len(golden)} golden requests")
    worst = 0.0
    for g, answer in zip(golden, answers, strict=False):
        if answer.get("model_version") != card.version:
            problems.append(
                f"serves model {answer.get('model_version')}, the card is {card.version}"
            )
        got = [answer["probabilities"][c] for c in card.classes]
        worst = max(worst, *(abs(a - b) for a, b in zip(got, g.probabilities, strict=True)))
    if worst > TOLERANCE:
        problems.append(f"probabilities differ from the card by {worst:.2e} (> {TOLERANCE})")
    return SmokeResult(not problems, len(answers), worst, sorted(set(problems)))


def smoke_test(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], card: Card | GoldenSet, route: str
) -> SmokeResult:
    """Send the golden requests through `invoke` (the new version) and check the answers."""
    return check_answers(card, [invoke(e) for e in golden_events(card, route)])


def lambda_invoker(
    lambda_client: Any, function_arn: str
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Invoke one function version synchronously; a function error becomes a 500 answer."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        out = lambda_client.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        payload = json.loads(out["Payload"].read())
        if out.get("FunctionError"):
            return {"statusCode": 500, "body": json.dumps(payload)[:300]}
        return payload

    return invoke
