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


# ---- the hook always reports (issue 11.5) --------------------------------------------

HOOK_EVENT = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h-1"}


class Recorder:
    """Stands in for boto3: a codedeploy client that records statuses, a lambda client that
    answers with `invoke` (or raises what it is given)."""

    def __init__(self, invoke=None):
        self.statuses: list[tuple[str, str, str]] = []
        self._invoke = invoke

    def client(self, service: str, **_: object):
        outer = self

        class Client:
            def put_lifecycle_event_hook_execution_status(self, **kw):
                outer.statuses.append(
                    (kw["deploymentId"], kw["lifecycleEventHookExecutionId"], kw["status"])
                )

            def invoke(self, **kw):
                if isinstance(outer._invoke, Exception):
                    raise outer._invoke
                return outer._invoke(kw)

        return Client()


def hook(monkeypatch, bundle_dir, fake):
    from lambda_support import load_function

    module = load_function(
        "smoke_test",
        {
            "TARGET_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:p:7",
            "MODEL_BUNDLE_PATH": str(bundle_dir),
            "SMOKE_ROUTE": "/predict/batch",
        },
        monkeypatch,
    )
    monkeypatch.setattr(module, "boto3", fake)
    return module


def test_run_hook_reports_failed_on_any_error_and_succeeded_only_on_a_pass():
    from avsev.rollout.smoke import SmokeResult, run_hook

    seen: list[str] = []

    def report(d: str, h: str, status: str) -> None:
        seen.append(status)

    def boom() -> SmokeResult:
        raise RuntimeError("invoke failed")

    assert run_hook(HOOK_EVENT, boom, report) == "Failed"
    assert run_hook(HOOK_EVENT, lambda: SmokeResult(False, 1, 0.5, ["x"]), report) == "Failed"
    assert run_hook(HOOK_EVENT, lambda: SmokeResult(True, 3, 0.0), report) == "Succeeded"
    assert seen == ["Failed", "Failed", "Succeeded"]


def test_the_hook_reports_failed_when_invoking_the_new_version_fails(monkeypatch, real_bundle_dir):
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "Invoke")
    fake = Recorder(invoke=error)
    module = hook(monkeypatch, real_bundle_dir, fake)
    from lambda_support import FakeContext

    assert module.handler(HOOK_EVENT, FakeContext()) == {"status": "Failed"}
    assert fake.statuses == [("d-1", "h-1", "Failed")]


def test_the_hook_reports_failed_without_a_card_and_succeeded_on_the_right_answers(
    monkeypatch, real_bundle_dir, functions, tmp_path
):
    import io

    from lambda_support import FakeContext

    fake = Recorder()
    module = hook(monkeypatch, tmp_path, fake)  # no card.json there
    assert module.handler(HOOK_EVENT, FakeContext())["status"] == "Failed"

    def invoke(kw):
        answer = functions["predict"].handler(json.loads(kw["Payload"]), FakeContext())
        return {"Payload": io.BytesIO(json.dumps(answer).encode())}

    fake = Recorder(invoke=invoke)
    module = hook(monkeypatch, real_bundle_dir, fake)
    assert module.handler(HOOK_EVENT, FakeContext())["status"] == "Succeeded"
    assert fake.statuses == [("d-1", "h-1", "Succeeded")]
