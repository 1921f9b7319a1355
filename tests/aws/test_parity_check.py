"""The parity check of each deploy's new version: it must reproduce its card's golden
probabilities before the rollout controller sends it any traffic."""

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
        assert result.checked == len(card.golden) and result.worst_abs_diff < 1e-5


def test_a_version_serving_another_model_fails(functions, real_bundle):
    card = real_bundle.card.model_copy(deep=True)
    card.golden[0].probabilities = [
        0.25,
        0.25,
        0.25,
        0.25,
    ]  # what a different model would give
    result = smoke_test(invoker(functions["predict"]), card, "/predict/batch")
    assert not result.passed and any("differ from the card" in p for p in result.problems)
    card = real_bundle.card.model_copy(update={"version": "9.9.9"})
    assert (
        "serves model 1.0.0, the card is 9.9.9"
        in smoke_test(invoker(functions["predict"]), card, "/predict/batch").problems
    )


def test_errors_and_short_answers_fail(real_bundle):
    card = real_bundle.card
    assert len(golden_events(card, "/predict/explain")) == len(card.golden)
    result = check_answers(card, [{"statusCode": 500, "body": "boom"}])
    assert not result.passed and "status 500: boom" in result.problems


# ---- the controller always answers CloudFormation ------------------------------------


class Recorder:
    """Stands in for boto3: every client answers `invoke` with `answer` (or raises it)."""

    def __init__(self, answer):
        self._answer = answer

    def client(self, service: str, **_: object):
        outer = self

        class Client:
            def invoke(self, **kw):
                if isinstance(outer._answer, Exception):
                    raise outer._answer
                return outer._answer(kw)

        return Client()


class Receiver:
    """CloudFormation's pre-signed response URL, on loopback: records each PUT body."""

    def __enter__(self):
        import http.server
        import threading

        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/response?signed=1"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def controller(monkeypatch, fake):
    from lambda_support import load_function

    module = load_function(
        "autopilot",
        {
            "DATA_BUCKET": "avsev-data",
            "PREDICT_FUNCTION_NAME": "predict",
            "ALARM_PREFIX": "avsev-prod-predict-",
            "FOLLOWER_FUNCTIONS": '{"explain": "avsev-prod-explain-"}',
        },
        monkeypatch,
    )
    monkeypatch.setattr(module, "boto3", fake)
    return module


def request(card, url: str) -> dict:
    from avsev.rollout.handover import golden_property

    return {
        "RequestType": "Update",
        "ResponseURL": url,
        "StackId": "stack",
        "RequestId": "r-1",
        "LogicalResourceId": "PredictLiveAliasHandover",
        "PhysicalResourceId": "predict:live",
        "ResourceProperties": {
            "FunctionName": "predict",
            "Version": "7",
            "ModelVersion": card.version,
            "SmokeRoute": "/predict/batch",
            "Golden": golden_property(card),
        },
        "OldResourceProperties": {"Version": "6"},
    }


def test_the_controller_answers_failed_when_the_new_version_cannot_be_invoked(
    monkeypatch, real_bundle
):
    """A custom resource that never answers holds the stack for an hour
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html):
    any error is a FAILED answer on the pre-signed URL, with its reason."""
    from botocore.exceptions import ClientError
    from lambda_support import FakeContext

    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "Invoke")
    module = controller(monkeypatch, Recorder(error))
    with Receiver() as cfn:
        out = module.handler(request(real_bundle.card, cfn.url), FakeContext())
    assert out["Status"] == "FAILED" and "ResourceNotFoundException" in out["Reason"]
    (answer,) = cfn.bodies
    assert answer["Status"] == "FAILED" and answer["PhysicalResourceId"] == "predict:live"
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("r-1", "PredictLiveAliasHandover")


def test_the_controller_answers_failed_on_wrong_answers(monkeypatch, real_bundle, functions):
    """The new version answers, but with another model's probabilities: FAILED, so the stack
    update rolls back before the version serves anyone."""
    import io

    from lambda_support import FakeContext

    def invoke(kw):
        answer = functions["predict"].handler(json.loads(kw["Payload"]), FakeContext())
        return {"Payload": io.BytesIO(json.dumps(answer).encode())}

    card = real_bundle.card.model_copy(deep=True)
    card.golden[0].probabilities = [0.25] * len(card.classes)
    module = controller(monkeypatch, Recorder(invoke))
    with Receiver() as cfn:
        module.handler(request(card, cfn.url), FakeContext())
    (answer,) = cfn.bodies
    assert answer["Status"] == "FAILED" and "fails the parity check" in answer["Reason"]
