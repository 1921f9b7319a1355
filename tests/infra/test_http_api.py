"""The HTTP API option (`-c api=http`): the REST API's routes on an API Gateway HTTP API.

What AWS documents and these tests hold the template to:

- Lambda authorizers of HTTP APIs
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html):
  a REQUEST authorizer with payload format 2.0 may answer a simple response
  (`EnableSimpleResponses`); its identity source (here `$request.header.X-Api-Key`) must be
  present or API Gateway answers 401 without calling it; with caching on, an answer is kept
  for `AuthorizerResultTtlInSeconds` per identity source value.
- Lambda proxy integrations of HTTP APIs and their payload format
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html):
  `IntegrationType: AWS_PROXY`, `PayloadFormatVersion: "2.0"`, the function (here its alias
  `live`) as `IntegrationUri`.
- Throttling of HTTP APIs
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html):
  the stage's default route settings, and route settings per route key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_infra
from avsev.serving.routes import ROUTES
from aws_cdk import assertions
from conftest import ROOT
from test_infra import ARCH, resources, synth

# the CDK app's fixtures (a model bundle, the layers, the default stack), shared
cdk_bundle = test_infra.cdk_bundle
built_layers = test_infra.built_layers
synthesized = test_infra.synthesized


@pytest.fixture(scope="module")
def http_synth(cdk_bundle, built_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out-http")
    app, stack, assembly = synth(cdk_bundle, out, api="http")
    return app, stack, assembly, assertions.Template.from_stack(stack)


@pytest.fixture(scope="module")
def http(http_synth) -> assertions.Template:
    return http_synth[3]


def by_ref(template: assertions.Template, kind: str) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(template, kind).items()}


def test_an_http_api_replaces_the_rest_api(http):
    assert len(resources(http, "AWS::ApiGatewayV2::Api")) == 1
    api = next(iter(by_ref(http, "AWS::ApiGatewayV2::Api").values()))
    assert api["ProtocolType"] == "HTTP"
    for kind in ("RestApi", "Method", "UsagePlan", "ApiKey"):
        assert not resources(http, f"AWS::ApiGateway::{kind}"), kind
    assert not resources(http, "AWS::WAFv2::WebACLAssociation")


def test_the_same_routes_each_a_payload_2_proxy_to_the_same_target(http):
    routes = by_ref(http, "AWS::ApiGatewayV2::Route")
    integrations = by_ref(http, "AWS::ApiGatewayV2::Integration")
    assert {r["RouteKey"] for r in routes.values()} == {f"{m} {p}" for p, m, _ in ROUTES}
    by_key = {}
    for route in routes.values():
        target = route["Target"]["Fn::Join"][1][1]["Ref"]
        integration = integrations[target]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"
        by_key[route["RouteKey"]] = json.dumps(integration["IntegrationUri"])
    for path, method, function in ROUTES:
        uri = by_key[f"{method} {path}"]
        assert function.title() in uri, (path, uri)
        if function in ("predict", "explain"):
            assert '"live"]]}' in uri, (path, uri)  # alias live, as the REST API
    # API Gateway may invoke each target (the qualified ARN for the aliases)
    permissions = [
        json.dumps(p["FunctionName"])
        for p in by_ref(http, "AWS::Lambda::Permission").values()
        if p["Principal"] == "apigateway.amazonaws.com"
    ]
    assert sum('"live"]]}' in p for p in permissions) >= 5


def test_every_route_needs_the_key_through_a_cached_simple_authorizer(http):
    (authorizer_id, authorizer), *more = by_ref(http, "AWS::ApiGatewayV2::Authorizer").items()
    assert not more
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    assert authorizer["IdentitySource"] == ["$request.header.X-Api-Key"]
    assert authorizer["AuthorizerResultTtlInSeconds"] == 300
    uri = json.dumps(authorizer["AuthorizerUri"])
    assert "AuthorizerFunction" in uri
    routes = by_ref(http, "AWS::ApiGatewayV2::Route").values()
    assert routes
    for route in routes:
        assert route["AuthorizationType"] == "CUSTOM", route["RouteKey"]
        assert route["AuthorizerId"] == {"Ref": authorizer_id}, route["RouteKey"]


def test_the_authorizer_reads_only_the_key_secret(http):
    (secret_id, secret), *more = resources(http, "AWS::SecretsManager::Secret").items()
    assert not more
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    fn = next(
        p
        for k, p in by_ref(http, "AWS::Lambda::Function").items()
        if k.startswith("AuthorizerFunction")
    )
    assert fn["Environment"]["Variables"]["API_KEY_SECRET_ARN"] == {"Ref": secret_id}
    role = fn["Role"]["Fn::GetAtt"][0]
    reads = [
        s
        for p in by_ref(http, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Roles"]
        for s in p["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]
    assert [s["Resource"] for s in reads] == [{"Ref": secret_id}]


def test_throttling_per_stage_and_per_route(http):
    (stage,) = by_ref(http, "AWS::ApiGatewayV2::Stage").values()
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 100
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 200
    assert stage["RouteSettings"]["POST /predict/batch"] == {
        "ThrottlingRateLimit": 10,
        "ThrottlingBurstLimit": 20,
    }
    assert stage["RouteSettings"]["POST /predict/explain"] == {
        "ThrottlingRateLimit": 50,
        "ThrottlingBurstLimit": 100,
    }
    routes = set(resources(http, "AWS::ApiGatewayV2::Route"))
    (stage_resource,) = resources(http, "AWS::ApiGatewayV2::Stage").values()
    assert routes <= set(stage_resource.get("DependsOn", []))  # its settings name them


def test_access_logs_and_outputs(http):
    (stage,) = by_ref(http, "AWS::ApiGatewayV2::Stage").values()
    log = stage["AccessLogSettings"]
    assert "Fn::GetAtt" in log["DestinationArn"]
    assert json.loads(log["Format"].replace("$context.", ""))["requestId"] == "requestId"
    outputs = http.to_json()["Outputs"]
    assert "ApiUrl" in outputs and "ApiKeySecret" in outputs and "ApiKeyId" not in outputs


def test_the_http_variant_synthesizes_nag_clean(http_synth):
    assert test_infra.nag_errors(http_synth[0]) == {}


def test_http_is_refused_with_what_it_cannot_have(cdk_bundle, tmp_path):
    from infra.app import build_app

    for bad, message in (
        ({"api": "grpc"}, "api='grpc'"),
        ({"api": "http", "waf": "true"}, "waf=true needs api=rest"),
        ({"api": "http", "auth": "cognito"}, "needs api=rest"),
    ):
        with pytest.raises(ValueError, match=message):
            build_app({"arch": ARCH, "bundle": str(cdk_bundle), **bad}, outdir=str(tmp_path))


def per_million(output: str, route: str = "predict") -> tuple[float, float]:
    """(API Gateway, total) in USD per million requests of `route`, from `avsev cost`'s table."""
    lines = output.splitlines()
    head = next(line for line in lines if line.startswith("| route |"))
    columns = [c.strip() for c in head.strip("|").split("|")]
    row = next(
        line for line in lines if line.startswith("|") and line.split("|")[1].strip() == route
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    return float(cells[columns.index("API Gateway")]), float(cells[columns.index("total")])


def test_avsev_cost_prices_the_http_template_at_the_http_api_price(http_synth, synthesized):
    """`avsev cost --template` on each: the HTTP API's template is priced at the HTTP API's
    request price, below the REST API's."""
    figures = {}
    for name, assembly in (("http", http_synth[2]), ("rest", synthesized[2])):
        path = assembly.get_stack_by_name("avsev-prod").template_full_path
        done = subprocess.run(
            [sys.executable, "-m", "avsev_tools.cli", "cost", "--template", path],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        figures[name] = done.stdout
    assert "Settings: HTTP API" in figures["http"] and "Settings: REST API" in figures["rest"]
    (http_api, http_total), (rest_api, rest_total) = (
        per_million(figures["http"]),
        per_million(figures["rest"]),
    )
    prices = json.loads((ROOT / "tools/avsev_tools/prices.json").read_text())
    http_price = prices["api_gateway_http"]["usd_per_million_requests"]
    rest_price = prices["api_gateway_rest"]["usd_per_million_requests"]
    assert (http_api, rest_api) == (http_price, rest_price)
    # the rest of a request costs the same: the difference is the API's price
    assert http_total < rest_total
    assert rest_total - http_total == pytest.approx(rest_price - http_price, abs=0.002)


def test_cfn_lint_finds_no_errors_in_the_http_template(http_synth):
    from infra.nag import CFN_LINT_ACCEPTED

    path = Path(http_synth[2].get_stack_by_name("avsev-prod").template_full_path)
    found = test_infra.lint(path)
    assert [f"{m.rule.id} {m.message}" for m in found if m.rule.id.startswith("E")] == []
    assert not {m.rule.id for m in found} - set(CFN_LINT_ACCEPTED)


def test_the_authorizer_ships_the_pinned_sdk_and_is_small(http):
    """It calls Secrets Manager with boto3, so it carries the layer with the SDK the tests ran
    (as every function that calls AWS: test_infra's pinned-SDK test); no model, no powertools."""
    from infra.catalog import function_specs
    from infra.config import AppConfig

    spec = function_specs(AppConfig(api="http"))["authorizer"]
    assert "boto3" in (ROOT / "functions/authorizer/app.py").read_text()
    assert spec.layers == ("common", "analysis") and not spec.model
    assert spec.invocation == "authorizer" and "authorizer" not in function_specs(AppConfig())
    fn = next(
        p
        for k, p in by_ref(http, "AWS::Lambda::Function").items()
        if k.startswith("AuthorizerFunction")
    )
    assert fn["MemorySize"] == 256 and fn["Timeout"] == 10 and len(fn["Layers"]) == 2


def test_http_api_functions_pass_tracing_through_by_default(http, cdk_bundle, tmp_path):
    """An HTTP API does not trace; Lambda's own sampling (1 a second and 5%) cannot be
    configured (https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html): the
    functions it invokes pass tracing through, with Powertools' Tracer off; the scheduled
    ones still trace. `-c tracing=active` turns it back on."""
    specs = {"Predict", "Explain", "Outcomes", "Authorizer"}
    modes = {
        k.split("Function")[0]: (
            f["Properties"]["TracingConfig"]["Mode"],
            f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_TRACE_DISABLED"),
        )
        for k, f in resources(http, "AWS::Lambda::Function").items()
    }
    for name, (mode, disabled) in modes.items():
        if name in specs:
            assert (mode, disabled) == ("PassThrough", "true"), name
        else:
            assert (mode, disabled) == ("Active", None), name
    active = assertions.Template.from_stack(
        synth(cdk_bundle, tmp_path, api="http", tracing="active")[1]
    )
    assert {
        f["Properties"]["TracingConfig"]["Mode"]
        for f in resources(active, "AWS::Lambda::Function").values()
    } == {"Active"}
    from infra.app import build_app

    with pytest.raises(ValueError, match="tracing='sometimes'"):
        build_app(
            {"arch": ARCH, "bundle": str(cdk_bundle), "tracing": "sometimes"},
            outdir=str(tmp_path / "bad"),
        )
