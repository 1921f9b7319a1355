"""The pre-traffic smoke test: the new version must reproduce its card's golden probabilities."""

from __future__ import annotations

import json

from avsev.rollout.smoke import check_answers, golden_events, smoke_test
from lambda_support import FakeContext


def invoker(module):
    return lambda event: module.handler(event, FakeContext())


def test_the_right_version_passes_on_both_routes(functions, real_bundle):
    card = real_bundle.card
    for route, fn in (("/predict/batch", "predict"), ("/predict/explain", "explain")):
        result = smoke_test(invoker(functions[fn]), card, route)
        assert result.passed, result.problems
        assert result.checked == len(card["golden"]) and result.worst_abs_diff < 1e-5


def test_a_version_serving_another_model_fails(functions, real_bundle):
    card = json.loads(json.dumps(real_bundle.card))
    card["golden"][0]["probabilities"] = [
        0.25,
        0.25,
        0.25,
        0.25,
    ]  # what a different model would give
    result = smoke_test(invoker(functions["predict"]), card, "/predict/batch")
    assert not result.passed and any("differ from the card" in p for p in result.problems)
    card = json.loads(json.dumps(real_bundle.card)) | {"version": "9.9.9"}
    assert (
        "serves model 1.0.0, the card is 9.9.9"
        in smoke_test(invoker(functions["predict"]), card, "/predict/batch").problems
    )


def test_errors_and_short_answers_fail(real_bundle):
    card = real_bundle.card
    assert len(golden_events(card, "/predict/explain")) == len(card["golden"])
    result = check_answers(card, [{"statusCode": 500, "body": "boom"}])
    assert not result.passed and "status 500: boom" in result.problems
