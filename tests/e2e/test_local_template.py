"""The local stack is built from the synthesized template: the CDK app synthesized once (as
`cdk synth` would, avsev_tools.local.synth), its cloud assembly read (avsev_tools.local.assembly), and the
local API gateway serving exactly the template's methods — their paths, the function and
alias each integrates, the API key where a method requires it."""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthesized(synthetic_bundle_dir):
    """One synth for the session (the synth cache makes the stack's own synth of the same
    bundle a look-up)."""
    from avsev_tools.local.synth import synthesize

    started = time.perf_counter()
    synth = synthesize(synthetic_bundle_dir)
    print(f"\nsynth: {time.perf_counter() - started:.1f} s (cached: {synth.cached})")
    return synth


@pytest.fixture(scope="session")
def assembly(synthesized):
    from avsev_tools.local.assembly import Assembly

    return Assembly.read(synthesized.folder, synthesized.stack)


def methods(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        k: r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::ApiGateway::Method"
    }


def test_functions_come_from_the_staged_assets_with_a_local_environment(
    assembly, synthetic_bundle_dir
):
    from avsev.serving.bundle import read_card

    raw = assembly.resources
    assert assembly.stack == "avsev-prod"
    for key in ("predict", "explain", "outcomes", "autopilot"):
        f = assembly.function(key)
        props = raw[f.logical_id]["Properties"]
        # the code is the staged asset of functions/<key>, not the checkout's folder
        assert f.code.name.startswith("asset.") and f.code.parent != ROOT / "functions"
        assert (f.code / "app.py").read_text() == (ROOT / "functions" / key / "app.py").read_text()
        assert (f.handler, f.memory, f.timeout) == (
            props["Handler"],
            props["MemorySize"],
            props["Timeout"],
        )
        assert f.name.startswith("avsev-prod-") and f.arn.endswith(f":function:{f.name}")
        assert all(layer in assembly.layers for layer in f.layers)
        assert not any(isinstance(v, dict) for v in f.environment.values()), f.environment
    # the model: /opt/<bundle> is the model layer's staged copy of the bundle
    bundle = Path(assembly.function("predict").environment["MODEL_BUNDLE_PATH"])
    assert bundle.name == synthetic_bundle_dir.name and bundle.parent.name.startswith("asset.")
    assert read_card(bundle) == read_card(synthetic_bundle_dir)
    # references resolve to the local names of the stack's resources
    autopilot = assembly.function("autopilot").environment
    assert autopilot["PREDICT_FUNCTION_NAME"] == assembly.function("predict").name
    assert autopilot["DATA_BUCKET"] == assembly.data_bucket()
    assert autopilot["DATA_BUCKET"] in {b.name for b in assembly.buckets}
    assert autopilot["ALERTS_TOPIC_ARN"] in {t.arn for t in assembly.topics}


def test_versions_schedules_alarms_and_custom_resources(assembly):
    raw = assembly.resources
    kinds = [r["Type"] for r in raw.values()]
    assert len(assembly.versions) == kinds.count("AWS::Lambda::Version") >= 2
    assert {assembly.functions[v.function].key for v in assembly.versions.values()} >= {
        "predict",
        "explain",
    }
    scheduled = [k for k, r in raw.items() if "ScheduleExpression" in r.get("Properties", {})]
    assert sorted(s.logical_id for s in assembly.schedules) == sorted(scheduled)
    for s in assembly.schedules:
        assert s.expression == raw[s.logical_id]["Properties"]["ScheduleExpression"]
        assert s.targets and all(t in assembly.functions for t in s.targets)
    assert len(assembly.alarms) == kinds.count("AWS::CloudWatch::Alarm")
    for a in assembly.alarms:
        assert a.name == raw[a.logical_id]["Properties"]["AlarmName"]
        assert a.name.startswith("avsev-prod-")
    customs = [k for k, r in raw.items() if r["Type"].startswith("Custom::")]
    assert sorted(c.logical_id for c in assembly.custom_resources) == sorted(customs)
    for c in assembly.custom_resources:
        assert c.service_token in assembly.functions
        assert c.properties["ServiceToken"] == assembly.functions[c.service_token].arn


def test_the_routes_are_the_templates_methods(assembly):
    from avsev.serving.routes import ALIASED, ROUTES

    raw = methods(assembly.template)
    assert sorted(r.logical_id for r in assembly.routes) == sorted(raw)
    for r in assembly.routes:
        assert r.method == raw[r.logical_id]["HttpMethod"]
        assert r.api_key_required == raw[r.logical_id].get("ApiKeyRequired", False)
        assert r.authorization == raw[r.logical_id].get("AuthorizationType", "NONE")
    # the table the CDK app builds its API from, read back from the template
    assert sorted((r.path, r.method, r.function_key) for r in assembly.routes) == sorted(ROUTES)
    for r in assembly.routes:
        assert r.qualifier == ("live" if r.function_key in ALIASED else None)


class Recorder:
    """A stand-in for the stack behind the gateway: routes from the assembly, invocations kept."""

    def __init__(self, assembly) -> None:
        self.routes = {(r.path, r.method): r for r in assembly.routes}
        self.api_key = "k"
        self.calls: list[tuple[str, str | None, str]] = []
        self.base_url = ""
        self.cards: list[dict] = []
        self.traffic = SimpleNamespace()

    def invoke(self, function, event, qualifier=None):
        self.calls.append((function, qualifier, event["path"]))
        return {"statusCode": 200, "body": "{}", "headers": {"Content-Type": "application/json"}}

    def flush(self) -> int:
        return 0


def call(port: int, method: str, path: str, key: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", **({"X-Api-Key": key} if key else {})}
    conn.request(method, path, "{}" if method == "POST" else None, headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_the_gateway_serves_each_method_as_the_template_says(assembly):
    from avsev_tools.local.gateway import serve

    backend = Recorder(assembly)
    server = serve(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.server_address[1]
    try:
        for r in assembly.routes:
            backend.calls.clear()
            if r.api_key_required:
                assert call(port, r.method, r.path, None) == 403
                assert call(port, r.method, r.path, "wrong") == 403
            assert call(port, r.method, r.path, "k") == 200
            assert backend.calls == [(r.function_key, r.qualifier, r.path)]
        # a method the template does not have on a path it has; a path it does not have
        # (API Gateway answers both 403 MISSING_AUTHENTICATION_TOKEN)
        assert call(port, "DELETE", "/predict", "k") == 403
        assert call(port, "GET", "/nowhere", "k") == 403
        # a method that asks for no key is served without one
        backend.routes[("/open", "GET")] = dataclasses.replace(
            assembly.routes[0], path="/open", method="GET", api_key_required=False
        )
        assert call(port, "GET", "/open", None) == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def local_stack(synthesized, synthetic_bundle_dir):
    from stack_support import serving

    yield from serving(synthetic_bundle_dir)


def test_the_local_stack_serves_the_templates_routes(local_stack, assembly, synthetic_bundle_dir):
    """The running stack: functions, versions and the alias from the template (the handover
    custom resource created alias `live`), each route answered by its function."""
    import boto3

    stack = local_stack
    assert stack.routes == {(r.path, r.method): r for r in assembly.routes}
    assert stack.functions == {f.key: f.name for f in assembly.functions.values()}
    assert stack.deploys[0].status == "CREATE_COMPLETE"
    lam = boto3.client("lambda")
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert names == set(stack.functions.values())
    alias = lam.get_alias(FunctionName=stack.functions["predict"], Name="live")
    assert alias["FunctionVersion"] == "1"
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == stack.alarms
    events = boto3.client("events")
    assert {r["Name"] for r in events.list_rules()["Rules"]} >= {s.name for s in assembly.schedules}
    # an event reaches no scheduled rule (as in EventBridge; moto would match them all)
    sent = events.put_events(Entries=[{"Source": "avsev.test", "DetailType": "t", "Detail": "{}"}])
    assert sent["FailedEntryCount"] == 0
    port = int(stack.base_url.rsplit(":", 1)[1])
    for r in assembly.routes:
        status = call(port, r.method, r.path, stack.api_key)
        assert status not in (403, 404, 405, 502), (r.path, r.method, status)
    for key in {r.function_key for r in assembly.routes}:
        assert stack.traffic.series(key)["versions"], key  # its function answered
    # the version the alias serves runs the staged code of the template
    handler = stack.handler("predict", "1")
    assert Path(handler.module.__file__).parent == assembly.function("predict").code
    assert json.loads(json.dumps(stack.state()))["bundles"]["1"].endswith(synthetic_bundle_dir.name)
