"""The CDK app: synthesized once per session (no AWS account, no Docker), then checked for
what a platform engineer relies on, for cdk-nag, and for the Lambda size limits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, have

pytest.importorskip("aws_cdk")
sys.path.insert(0, str(ROOT))

from aws_cdk import assertions

ARCH = "arm64" if have("aarch64-linux-gnu-gcc") else "x86_64"
MB = 1024 * 1024


@pytest.fixture(scope="session")
def cdk_bundle(synthetic_model_dir, tmp_path_factory) -> Path:
    from avsev.pipeline.build import build_bundle

    return build_bundle(
        synthetic_model_dir, "1.0.0", out_root=tmp_path_factory.mktemp("cdk-model"), arch=ARCH
    )


@pytest.fixture(scope="session")
def built_layers() -> None:
    from infra.build_layers import LAYERS, build

    for name in LAYERS:
        build(name, ARCH, "3.14")


def synth(cdk_bundle: Path, outdir: Path, **context: object):
    from infra.app import build_app

    app, stack = build_app({"arch": ARCH, "bundle": str(cdk_bundle), **context}, outdir=str(outdir))
    assembly = app.synth()
    return app, stack, assembly


@pytest.fixture(scope="session")
def synthesized(cdk_bundle, built_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out")
    app, stack, assembly = synth(cdk_bundle, out)
    return app, stack, assembly, assertions.Template.from_stack(stack)


@pytest.fixture(scope="session")
def template(synthesized) -> assertions.Template:
    return synthesized[3]


def resources(template: assertions.Template, kind: str) -> dict[str, dict]:
    return template.find_resources(kind)


def test_functions_runtime_arch_memory_and_roles(template):
    functions = resources(template, "AWS::Lambda::Function")
    assert (
        len(functions) == 8
    )  # predict, explain, outcomes, ab_analysis, drift_check, batch_score, 2 smoke tests
    roles = set()
    for f in functions.values():
        p = f["Properties"]
        assert p["Runtime"] == "python3.14"
        assert p["Architectures"] == [ARCH]
        assert p["MemorySize"] in (256, 1024) and p["Timeout"] in (10, 60, 300, 900)
        assert p["TracingConfig"] == {"Mode": "Active"}
        assert "LoggingConfig" in p
        roles.add(json.dumps(p["Role"]))
    assert len(roles) == 8  # each its own role
    for group in resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"].get("RetentionInDays") == 30


def test_live_alias_is_rolled_out_by_codedeploy_with_alarms_and_smoke_hook(template):
    aliases = resources(template, "AWS::Lambda::Alias")
    assert len(aliases) == 2
    for alias in aliases.values():
        assert alias["Properties"]["Name"] == "live"
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        assert "Smoke" in update["BeforeAllowTrafficHook"]["Ref"]
    groups = resources(template, "AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 2
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    for group in groups.values():
        p = group["Properties"]
        assert p["AlarmConfiguration"]["Enabled"] is True
        wired = {a["Name"]["Ref"] for a in p["AlarmConfiguration"]["Alarms"]}
        assert len(wired) == 4 and wired <= set(alarms)
        assert {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"} <= set(
            p["AutoRollbackConfiguration"]["Events"]
        )
    canary_alarms = {
        a["Name"]["Ref"]
        for g in groups.values()
        for a in g["Properties"]["AlarmConfiguration"]["Alarms"]
    }
    names = {alarms[a]["Properties"]["MetricName"] for a in canary_alarms}
    assert names == {"Errors", "InternalErrors", "Duration", "ValidationErrors"}
    errors = next(
        alarms[a] for a in canary_alarms if alarms[a]["Properties"]["MetricName"] == "Errors"
    )
    assert "ExecutedVersion" in {
        d["Name"] for d in errors["Properties"]["Dimensions"]
    }  # the new version only
    config = next(iter(resources(template, "AWS::CodeDeploy::DeploymentConfig").values()))[
        "Properties"
    ]
    canary = config["TrafficRoutingConfig"]["TimeBasedCanary"]
    assert canary == {"CanaryInterval": 10, "CanaryPercentage": 10}


def test_codedeploy_and_all_roles_are_least_privilege(template):
    for name, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{name} uses a managed policy"
    predict_role = next(
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for k, f in resources(template, "AWS::Lambda::Function").items()
        if k.startswith("PredictFunction")
    )
    for policy in resources(template, "AWS::IAM::Policy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        for s in statements:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), s
        if {"Ref": predict_role} in policy["Properties"]["Roles"]:
            actions = {
                a
                for s in statements
                for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            }
            assert actions <= {
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
            }


def test_api_authorization_keys_throttling_and_logs(template):
    methods = resources(template, "AWS::ApiGateway::Method")
    routes = {m["Properties"]["HttpMethod"] for m in methods.values()}
    assert len(methods) == 6 and routes == {"GET", "POST"}  # no OPTIONS: no CORS unless configured
    for m in methods.values():
        assert m["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert m["Properties"]["ApiKeyRequired"] is True
        uri = json.dumps(m["Properties"]["Integration"]["Uri"])
        assert "Live" in uri or "Outcomes" in uri  # predict/explain through alias live
    plan = next(iter(resources(template, "AWS::ApiGateway::UsagePlan").values()))["Properties"]
    assert plan["Throttle"] == {"BurstLimit": 200, "RateLimit": 100}
    assert plan["Quota"] == {"Limit": 100000, "Period": "DAY"}
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["TracingEnabled"] is True
    assert "requestId" in stage["AccessLogSetting"]["Format"]
    settings = {s["ResourcePath"]: s for s in stage["MethodSettings"]}
    assert settings["/*"]["LoggingLevel"] == "INFO" and settings["/*"]["ThrottlingRateLimit"] == 100
    assert settings["/~1predict~1batch"]["ThrottlingRateLimit"] == 10
    responses = resources(template, "AWS::ApiGateway::GatewayResponse")
    assert all(
        '"error"' in r["Properties"]["ResponseTemplates"]["application/json"]
        for r in responses.values()
    )


def test_records_flow_to_s3_by_type_and_day(template):
    filters = resources(template, "AWS::Logs::SubscriptionFilter")
    assert len(filters) == 3
    for f in filters.values():
        assert (
            f["Properties"]["FilterPattern"]
            == '{ $.record_type = "prediction" || $.record_type = "outcome" }'
        )
    stream = next(iter(resources(template, "AWS::KinesisFirehose::DeliveryStream").values()))[
        "Properties"
    ]
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == "!{partitionKeyFromQuery:record_type}s/dt=!{timestamp:yyyy-MM-dd}/"
    processors = [p["Type"] for p in s3["ProcessingConfiguration"]["Processors"]]
    assert processors == [
        "Decompression",
        "CloudWatchLogProcessing",
        "MetadataExtraction",
        "AppendDelimiterToRecord",
    ]
    data = [
        b
        for b in resources(template, "AWS::S3::Bucket").values()
        if "LoggingConfiguration" in b["Properties"]
        and "NotificationConfiguration" not in b["Properties"]
    ]
    assert len(data) == 1
    p = data[0]["Properties"]
    assert p["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert {r["Prefix"] for r in p["LifecycleConfiguration"]["Rules"]} >= {
        "predictions/",
        "outcomes/",
    }
    policies = json.dumps(resources(template, "AWS::S3::BucketPolicy"))
    assert "aws:SecureTransport" in policies


def test_schedules_retry_and_keep_failures(template):
    rules = resources(template, "AWS::Events::Rule")
    scheduled = [r for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert sorted(r["Properties"]["ScheduleExpression"] for r in scheduled) == [
        "rate(1 day)",
        "rate(1 day)",
        "rate(1 hour)",
    ]
    for r in rules.values():
        target = r["Properties"]["Targets"][0]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
        assert "DeadLetterConfig" in target
    invoke_configs = resources(template, "AWS::Lambda::EventInvokeConfig")
    assert len(invoke_configs) == 3
    for c in invoke_configs.values():
        assert "OnFailure" in c["Properties"]["DestinationConfig"]


def test_alerts_topic_and_dashboard(template):
    topic = next(iter(resources(template, "AWS::SNS::Topic").values()))["Properties"]
    assert "KmsMasterKeyId" in topic
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    assert all(a["Properties"].get("AlarmActions") for a in alarms)
    body = json.dumps(
        next(iter(resources(template, "AWS::CloudWatch::Dashboard").values()))["Properties"][
            "DashboardBody"
        ]
    )
    for words in (
        "Predictions per minute by model version",
        "p95",
        "Drift score per feature",
        "candidate minus champion",
    ):
        assert words in body


def test_cdk_nag_finds_nothing_unacknowledged(synthesized):
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    app = synthesized[0]
    for pack in (AwsSolutionsChecks(), ServerlessChecks()):
        report = pack.validate_scope(app)
        errors = [v.rule_name for v in report.violations if v.severity == "error"]
        assert errors == [], f"{pack.name}: {errors}"


def test_cdk_nag_check_can_fail():
    # Given a stack with a wildcard policy and no acknowledgment, the same check reports it
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App()
    stack = cdk.Stack(app, "Bad")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    report = AwsSolutionsChecks().validate_scope(app)
    assert any(v.rule_name.startswith("AwsSolutions-IAM5") for v in report.violations)


def test_function_packages_fit_lambda_limits(synthesized):
    _, _, assembly, template = synthesized
    outdir = Path(assembly.directory)
    layers = {
        k: v["Properties"]["Content"]["S3Key"]
        for k, v in resources(template, "AWS::Lambda::LayerVersion").items()
    }

    def asset_size(s3key: str | dict) -> int:
        key = s3key if isinstance(s3key, str) else json.dumps(s3key)
        digest = key.split(".zip")[0].split("/")[-1].strip('"')
        path = outdir / f"asset.{digest}"
        assert path.is_dir(), f"asset {digest} not in {outdir}"
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    sizes = {}
    for name, fn in resources(template, "AWS::Lambda::Function").items():
        p = fn["Properties"]
        total = asset_size(p["Code"]["S3Key"])
        total += sum(asset_size(layers[layer["Ref"]]) for layer in p.get("Layers", []))
        sizes[name] = total
    for name, size in sizes.items():
        assert size < 250 * MB, f"{name}: {size / MB:.0f} MB unzipped"
        if name.startswith(("PredictFunction", "ExplainFunction")):
            assert size < 20 * MB, f"{name}: {size / MB:.1f} MB unzipped"
    assert any(s > 100 * MB for s in sizes.values())  # the analysis layer really was counted


def test_cognito_and_waf_variants_synthesize(cdk_bundle, built_layers, tmp_path):
    _, stack, _ = synth(
        cdk_bundle,
        tmp_path,
        auth="cognito",
        waf=True,
        cors_origins="https://example.org",
        deployment="linear:20:5",
    )
    t = assertions.Template.from_stack(stack)
    methods = resources(t, "AWS::ApiGateway::Method").values()
    assert {
        m["Properties"]["AuthorizationType"]
        for m in methods
        if m["Properties"]["HttpMethod"] != "OPTIONS"
    } == {"COGNITO_USER_POOLS"}
    assert any(m["Properties"]["HttpMethod"] == "OPTIONS" for m in methods)
    t.resource_count_is("AWS::WAFv2::WebACL", 1)
    t.resource_count_is("AWS::WAFv2::WebACLAssociation", 1)
    config = next(iter(resources(t, "AWS::CodeDeploy::DeploymentConfig").values()))["Properties"]
    assert config["TrafficRoutingConfig"]["TimeBasedLinear"] == {
        "LinearInterval": 5,
        "LinearPercentage": 20,
    }


def test_bad_context_is_a_clear_error(cdk_bundle, tmp_path):
    from infra.app import build_app

    with pytest.raises(ValueError, match="arch='sparc'"):
        build_app({"arch": "sparc", "bundle": str(cdk_bundle)}, outdir=str(tmp_path))
    with pytest.raises(ValueError, match="no model bundle there"):
        build_app({"bundle": str(tmp_path)}, outdir=str(tmp_path))
