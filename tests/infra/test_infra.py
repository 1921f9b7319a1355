"""The CDK app: synthesized once per session (no AWS account, no Docker), then checked for
what a platform engineer relies on, for cdk-nag, and for the Lambda size limits."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT, have

pytest.importorskip("aws_cdk")
sys.path.insert(0, str(ROOT))

from avsev.serving.routes import ROUTES
from aws_cdk import assertions

ARCH = "arm64" if have("aarch64-linux-gnu-gcc") else "x86_64"
MB = 1024 * 1024


@pytest.fixture(scope="session")
def cdk_bundle(synthetic_model_dir, tmp_path_factory) -> Path:
    from avsev_tools.pipeline.build import build_bundle

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
    return {k: dict(v) for k, v in template.find_resources(kind).items()}


def as_list(x: object) -> list:
    return x if isinstance(x, list) else [x]


def statements(template: assertions.Template, role: str) -> list[dict]:
    """Every identity-policy statement attached to the role with this logical id."""
    return [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def function_role(template: assertions.Template, prefix: str) -> str:
    return next(
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for k, f in resources(template, "AWS::Lambda::Function").items()
        if k.startswith(prefix)
    )


def function(template: assertions.Template, prefix: str) -> dict:
    return next(
        f["Properties"]
        for k, f in resources(template, "AWS::Lambda::Function").items()
        if k.startswith(prefix)
    )


def actions_of(stmts: list[dict]) -> set[str]:
    return {a for s in stmts for a in as_list(s["Action"])}


def test_functions_runtime_arch_memory_and_roles(template):
    functions = resources(template, "AWS::Lambda::Function")
    # predict, explain, outcomes, rollup, ab_analysis, drift_check, autopilot, lifecycle,
    # batch_score
    assert len(functions) == 9
    roles = set()
    for f in functions.values():
        p = f["Properties"]
        assert p["Runtime"] == "python3.14"
        assert p["Architectures"] == [ARCH]
        assert p["MemorySize"] in (256, 512, 1024) and p["Timeout"] in (10, 120, 300, 900)
        assert p["TracingConfig"] == {"Mode": "Active"}
        assert "LoggingConfig" in p
        roles.add(json.dumps(p["Role"]))
    assert len(roles) == 9  # each its own role
    for group in resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"].get("RetentionInDays") == 30


def test_functions_log_json_without_lambdas_per_invocation_lines(template):
    """JSON log format, system log level WARN (no START/END/REPORT nor their JSON form, all
    INFO), application log level INFO (the record lines and EMF blobs carry no level: INFO,
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html)."""
    for logical_id, f in resources(template, "AWS::Lambda::Function").items():
        config = f["Properties"]["LoggingConfig"]
        assert {
            k: config.get(k) for k in ("LogFormat", "SystemLogLevel", "ApplicationLogLevel")
        } == {
            "LogFormat": "JSON",
            "SystemLogLevel": "WARN",
            "ApplicationLogLevel": "INFO",
        }, logical_id


def test_cost_reads_the_templates_settings(template):
    from avsev_tools.cost import settings_from_template
    from avsev_tools.local.logs import LoggingConfig

    s = settings_from_template(template.to_json())
    assert s.api == "REST"
    assert set(s.functions) >= {"predict", "explain", "outcomes", "rollup", "drift_check"}
    predict = s.functions["predict"]
    assert (predict.memory_mb, predict.arch, predict.retention_days, predict.traced) == (
        1024,
        ARCH,
        30,
        True,
    )
    assert predict.logging == LoggingConfig("JSON", "INFO", "WARN")
    assert s.delivery_streams == 2 and "rate(1 hour)" in s.schedules
    assert s.alarms > 0 and s.dashboards == 1


def test_one_owner_of_alias_live_the_controller(template):
    """CloudFormation never holds alias `live`'s routing, so a stack update can neither undo a
    promotion nor fight a canary in flight, and `cdk diff` never shows weights:

    - no `AWS::Lambda::Alias`: its `FunctionVersion` and `RoutingConfig` are template
      properties that every update sets back
      (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-lambda-alias.html);
    - no CodeDeploy, which fails a deployment while the alias routes to two versions
      (https://docs.aws.amazon.com/codedeploy/latest/userguide/troubleshooting-deployments-lambda.html);
    - one custom resource per rolled-out function hands its newest `Version` to the controller
      (a Lambda-backed custom resource: CloudFormation sends Update when a property changes,
      https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-update.html);
    - versions are retained: the alias may still route to one the template has moved past, and
      Lambda refuses to delete a version an alias routes to
      (https://docs.aws.amazon.com/lambda/latest/api/API_DeleteFunction.html)."""
    assert not resources(template, "AWS::Lambda::Alias")
    cfn = template.to_json()["Resources"]
    assert not [k for k, r in cfn.items() if r["Type"].startswith("AWS::CodeDeploy::")]
    assert not [k for k, r in cfn.items() if "UpdatePolicy" in r]
    versions = resources(template, "AWS::Lambda::Version")
    assert len(versions) == 2
    for version in versions.values():
        assert version["DeletionPolicy"] == "Retain" and version["UpdateReplacePolicy"] == "Retain"
    handovers = resources(template, "Custom::LiveAlias")
    assert len(handovers) == 2
    controller = next(
        k for k in resources(template, "AWS::Lambda::Function") if k.startswith("Autopilot")
    )
    roles = {}
    for name, r in handovers.items():
        p = r["Properties"]
        assert p["ServiceToken"] == {"Fn::GetAtt": [controller, "Arn"]}
        assert (
            p["Version"]["Fn::GetAtt"][0] in versions and p["Version"]["Fn::GetAtt"][1] == "Version"
        )
        assert p["AliasName"] == "live" and p["ModelVersion"] == "1.0.0"
        golden = json.loads(p["Golden"])
        assert golden["version"] == "1.0.0" and len(golden["golden"]) >= 4
        roles[name.split("LiveAlias")[0]] = (p["Role"], p["SmokeRoute"])
    assert roles == {
        "Predict": ("leader", "/predict/batch"),
        "Explain": ("follower", "/predict/explain"),
    }


def test_the_api_invokes_the_alias_once_the_controller_made_it(template):
    """API Gateway integrates `…:function:<name>:live` and may invoke it (a permission on the
    qualified ARN); both wait for the handover, since the alias exists once the controller
    answered the first deploy."""
    handovers = set(resources(template, "Custom::LiveAlias"))
    permissions = [
        (k, p) for k, p in resources(template, "AWS::Lambda::Permission").items()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]  # fmt: skip
    assert permissions
    for name, p in permissions:
        target = json.dumps(p["Properties"]["FunctionName"])
        if "Outcomes" in target:
            continue
        assert target.endswith('"live"]]}'), name  # Fn::Join of the function ARN and live
        assert handovers <= set(as_list(p.get("DependsOn", []))), name
    uris = [
        json.dumps(m["Properties"]["Integration"]["Uri"])
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"].get("Integration", {}).get("Type") == "AWS_PROXY"
    ]
    assert sum('"live"]]}' in u for u in uris) >= 4  # predict, batch, model, health, explain


def test_only_the_controller_may_move_the_alias(template):
    movers = [
        name
        for name, policy in resources(template, "AWS::IAM::Policy").items()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        if {"lambda:UpdateAlias", "lambda:CreateAlias"} & set(as_list(st["Action"]))
    ]
    assert movers and all(m.startswith("AutopilotRole") for m in movers), movers


def rollback_alarms(template: assertions.Template) -> dict[str, dict]:
    """The alarms on the newest version (the candidate handed over)."""
    return {
        k: a["Properties"]
        for k, a in resources(template, "AWS::CloudWatch::Alarm").items()
        if "-new-version-" in a["Properties"]["AlarmName"]
    }


def test_rollback_alarms_watch_only_the_version_being_deployed(template):
    """The controller rolls a candidate back on any of its alarms, so each must measure the new
    function version only: Lambda's metrics by `ExecutedVersion`
    (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html), the handlers'
    5xx by `FunctionVersion`; both are the `Version` resource this deploy publishes (and hands
    over), and the controller reads those dimensions to know which version an alarm judges."""
    alarms = rollback_alarms(template)
    assert len(alarms) == 6  # three for predict, three for explain
    assert {a["MetricName"] for a in alarms.values()} == {"Errors", "InternalErrors", "Duration"}
    versions = set(resources(template, "AWS::Lambda::Version"))
    for a in alarms.values():
        dims = {d["Name"]: d["Value"] for d in a["Dimensions"]}
        key = "FunctionVersion" if a["MetricName"] == "InternalErrors" else "ExecutedVersion"
        assert dims[key]["Fn::GetAtt"][0] in versions, a["AlarmName"]
        assert dims[key]["Fn::GetAtt"][1] == "Version"


def test_clients_cannot_trigger_a_rollback(template):
    """Issue 11.6: bad requests are the caller's doing, so no rollback alarm counts 4xx or
    validation errors; their share of all requests (API Gateway's `4XXError` averaged is a
    rate, https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html)
    only notifies."""
    wired = rollback_alarms(template)
    assert not {"ValidationErrors", "4XXError"} & {a["MetricName"] for a in wired.values()}
    rate = [
        (k, a["Properties"])
        for k, a in resources(template, "AWS::CloudWatch::Alarm").items()
        if a["Properties"].get("MetricName") == "4XXError"
    ]
    assert len(rate) == 1 and rate[0][0] not in wired
    props = rate[0][1]
    assert props["Statistic"] == "Average" and 0 < props["Threshold"] < 1
    assert props["AlarmActions"]


def test_all_roles_are_least_privilege(template):
    for name, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{name} uses a managed policy"
    for policy in resources(template, "AWS::IAM::Policy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(s["Action"])
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), s
    assert actions_of(statements(template, function_role(template, "PredictFunction"))) <= {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_s3_access_is_explicit_with_no_deletes_and_listing_where_it_is_said(template):
    """No CDK grant wildcards (`s3:List*`, `s3:DeleteObject*`, `s3:GetObject*`); every
    ListBucket is limited by `s3:prefix`, except on the roles whose code tells a missing key by
    its 404, which S3 gives only to callers allowed to list
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions"): the
    jobs, the controller, the retraining loop's decider and its CodeBuild project."""
    roles = {
        k: function_role(template, k)
        for k in ("BatchScore", "AbAnalysis", "DriftCheck", "Rollup", "Autopilot", "Lifecycle")
    }
    roles["retraining"] = next(
        p["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        for p in resources(template, "AWS::CodeBuild::Project").values()
    )
    unconditioned = set()
    for policy in resources(template, "AWS::IAM::Policy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(s["Action"])
            assert not any(a.startswith("s3:") and "*" in a for a in actions), s
            assert not any(a.startswith("s3:Delete") for a in actions), s
            if "s3:ListBucket" in actions and "Condition" not in s:
                unconditioned |= {r["Ref"] for r in policy["Properties"]["Roles"]}
    assert unconditioned == set(roles.values())


def test_firehose_and_logs_roles_are_confused_deputy_safe(template):
    """Issue 11.8: the trust policies AWS documents: Firehose with `sts:ExternalId` = the
    account (https://docs.aws.amazon.com/firehose/latest/dev/controlling-access.html#using-iam-s3),
    CloudWatch Logs with `aws:SourceArn`/`aws:SourceAccount`
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html#FirehoseExample).
    Firehose may put objects, never delete them."""
    roles = resources(template, "AWS::IAM::Role")
    trusts = {
        k: r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0] for k, r in roles.items()
    }
    firehose = [
        k for k, t in trusts.items() if t["Principal"] == {"Service": "firehose.amazonaws.com"}
    ]
    logs = [k for k, t in trusts.items() if t["Principal"] == {"Service": "logs.amazonaws.com"}]
    assert len(firehose) == 1 and len(logs) == 1
    assert trusts[firehose[0]]["Condition"]["StringEquals"] == {
        "sts:ExternalId": {"Ref": "AWS::AccountId"}
    }
    cond = trusts[logs[0]]["Condition"]
    assert cond["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":logs:" in json.dumps(cond["ArnLike"]["aws:SourceArn"])
    assert actions_of(statements(template, firehose[0])) == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:GetBucketLocation",
        "s3:ListBucketMultipartUploads",
        "glue:GetTable",
        "glue:GetTableVersion",
        "glue:GetTableVersions",
        "logs:PutLogEvents",
    }
    assert actions_of(statements(template, logs[0])) == {
        "firehose:PutRecord",
        "firehose:PutRecordBatch",
    }


@pytest.fixture(scope="session")
def with_account_role(cdk_bundle, built_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out-account")
    app, stack, assembly = synth(cdk_bundle, out, api_gateway_account="true")
    return app, stack, assembly, assertions.Template.from_stack(stack)


def test_api_gateway_account_setting_lives_in_its_own_retained_stack(with_account_role):
    """`AWS::ApiGateway::Account` is one per account and region
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-apigateway-account.html):
    a stage stack must not own it, or deleting the stage leaves it pointing at a deleted role.
    The shared stack retains role and setting; the role writes API logs and reads none."""
    _, stack, assembly, template = with_account_role
    template.resource_count_is("AWS::ApiGateway::Account", 0)
    account = assembly.get_stack_by_name("avsev-apigateway-account").template["Resources"]
    kinds = {v["Type"]: (k, v) for k, v in account.items()}
    assert kinds["AWS::ApiGateway::Account"][1]["DeletionPolicy"] == "Retain"
    role = kinds["AWS::IAM::Role"][1]
    assert role["DeletionPolicy"] == "Retain"
    policy = kinds["AWS::IAM::Policy"][1]["Properties"]["PolicyDocument"]["Statement"]
    acts = actions_of(policy)
    assert not {"logs:GetLogEvents", "logs:FilterLogEvents"} & acts
    for s in policy:
        wide = [r for r in as_list(s["Resource"]) if json.dumps(r).endswith(':log-group:*"]]')]
        assert not wide or as_list(s["Action"]) == ["logs:DescribeLogGroups"], s
    assert "avsev-apigateway-account" in [d.stack_name for d in stack.dependencies]


def test_api_gateway_account_setting_waits_for_the_roles_policy(with_account_role):
    """The setting is made once the role can write logs: it depends on the role's policy, not
    only on the role its ARN names (a race on a first deploy otherwise)."""
    assembly = with_account_role[2]
    account = assembly.get_stack_by_name("avsev-apigateway-account").template["Resources"]
    setting = next(v for v in account.values() if v["Type"] == "AWS::ApiGateway::Account")
    policies = [k for k, v in account.items() if v["Type"] == "AWS::IAM::Policy"]
    assert policies and set(policies) <= set(setting.get("DependsOn", []))


def test_the_account_role_is_opt_in_and_the_stage_needs_it_only_then(
    synthesized, with_account_role
):
    """By default no stack sets the account-wide role (it would replace the role of every API
    in the region), so the stage asks for nothing that needs it: API Gateway's execution and
    access logs to CloudWatch both do
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html)."""
    _, stack, assembly, template = synthesized
    assert [s.stack_name for s in assembly.stacks] == ["avsev-prod"]
    assert stack.dependencies == []
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert "AccessLogSetting" not in stage
    for s in stage["MethodSettings"]:
        assert s.get("LoggingLevel", "OFF") == "OFF" and not s.get("DataTraceEnabled"), s
    logged = next(iter(resources(with_account_role[3], "AWS::ApiGateway::Stage").values()))[
        "Properties"
    ]
    assert "requestId" in logged["AccessLogSetting"]["Format"]
    assert {s["ResourcePath"]: s for s in logged["MethodSettings"]}["/*"]["LoggingLevel"] == "INFO"


def test_api_logs_without_the_role_stack(cdk_bundle, built_layers, tmp_path):
    """An account whose role is already set: the stage logs, and no stack replaces the role."""
    _, stack, assembly = synth(cdk_bundle, tmp_path, api_logs="true")
    assert [s.stack_name for s in assembly.stacks] == ["avsev-prod"]
    stage = next(
        iter(resources(assertions.Template.from_stack(stack), "AWS::ApiGateway::Stage").values())
    )["Properties"]
    assert "AccessLogSetting" in stage


def test_api_authorization_keys_throttling_and_logs(template):
    methods = resources(template, "AWS::ApiGateway::Method")
    routes = {m["Properties"]["HttpMethod"] for m in methods.values()}
    assert len(methods) == 6 and routes == {"GET", "POST"}  # no OPTIONS: no CORS unless configured
    for m in methods.values():
        assert m["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert m["Properties"]["ApiKeyRequired"] is True
        uri = json.dumps(m["Properties"]["Integration"]["Uri"])
        assert '"live"]]}' in uri or "Outcomes" in uri  # predict/explain through alias live
    plan = next(iter(resources(template, "AWS::ApiGateway::UsagePlan").values()))["Properties"]
    assert plan["Throttle"] == {"BurstLimit": 200, "RateLimit": 100}
    assert plan["Quota"] == {"Limit": 100000, "Period": "DAY"}
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["TracingEnabled"] is True
    settings = {s["ResourcePath"]: s for s in stage["MethodSettings"]}
    assert settings["/*"]["ThrottlingRateLimit"] == 100
    assert settings["/~1predict~1batch"]["ThrottlingRateLimit"] == 10
    responses = resources(template, "AWS::ApiGateway::GatewayResponse")
    assert all(
        '"error"' in r["Properties"]["ResponseTemplates"]["application/json"]
        for r in responses.values()
    )


def streams(template: assertions.Template) -> dict[str, dict]:
    """Delivery streams by the table they feed (the first folder of their prefix)."""
    out = {}
    for s in resources(template, "AWS::KinesisFirehose::DeliveryStream").values():
        dest = s["Properties"]["ExtendedS3DestinationConfiguration"]
        out[dest["Prefix"].split("/")[0]] = s["Properties"]
    return out


def test_records_go_one_stream_per_type_converted_to_parquet(template):
    """Issue 11.4 / 10.1: a CloudWatch Logs record holds many log events; after Decompression
    and message extraction it is many JSON documents back to back, which record format
    conversion accepts ("{"a": 1}{"b": 1} is correct input",
    https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html). One
    stream per record type needs no partition key: the prefix is the arrival day only
    (https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html). Conversion needs a
    buffer of at least 64 MiB and a Glue table
    (https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html)."""
    from avsev.monitoring.tables import OUTCOMES, PREDICTIONS

    by_table = streams(template)
    assert set(by_table) == {PREDICTIONS, OUTCOMES}
    for table, props in by_table.items():
        dest = props["ExtendedS3DestinationConfiguration"]
        assert props["DeliveryStreamName"] == f"avsev-prod-{table}"
        assert dest["Prefix"] == f"{table}/dt=!{{timestamp:yyyy-MM-dd}}/"
        assert dest["ErrorOutputPrefix"].startswith(f"firehose-errors/{table}/")
        assert "DynamicPartitioningConfiguration" not in dest
        assert [p["Type"] for p in dest["ProcessingConfiguration"]["Processors"]] == [
            "Decompression",
            "CloudWatchLogProcessing",
        ]
        assert dest["BufferingHints"]["SizeInMBs"] >= 64
        conversion = dest["DataFormatConversionConfiguration"]
        assert conversion["Enabled"] is True
        assert "OpenXJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
        assert conversion["OutputFormatConfiguration"]["Serializer"] == {
            "ParquetSerDe": {"Compression": "SNAPPY"}
        }
        schema = conversion["SchemaConfiguration"]
        assert schema["DatabaseName"] == "avsev_prod" and schema["TableName"] == table
    filters = resources(template, "AWS::Logs::SubscriptionFilter").values()
    routed = {
        (f["Properties"]["LogGroupName"]["Ref"].split("Logs")[0], f["Properties"]["FilterPattern"])
        for f in filters
    }
    assert routed == {
        ("Predict", '{ $.record_type = "prediction" }'),
        ("Explain", '{ $.record_type = "prediction" }'),
        ("Outcomes", '{ $.record_type = "outcome" }'),
    }
    stream_of = {
        f["Properties"]["LogGroupName"]["Ref"].split("Logs")[0]: f["Properties"]["DestinationArn"][
            "Fn::GetAtt"
        ][0]
        for f in filters
    }
    assert stream_of["Predict"] == stream_of["Explain"] != stream_of["Outcomes"]


def test_record_delivery_failures_alarm(template):
    """Issue 11.4: Firehose's `DeliveryToS3.Success`, `DeliveryToS3.DataFreshness` and
    `FailedConversion.Records` per stream
    (https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html),
    and any PUT under the error prefix, counted by an S3 request-metrics filter
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/metrics-configurations.html)."""
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    firehose = {
        (d["Value"], a["MetricName"])
        for a in alarms
        if a.get("Namespace") == "AWS/Firehose"
        for d in a["Dimensions"]
    }
    for table in ("predictions", "outcomes"):
        for metric in (
            "DeliveryToS3.Success",
            "DeliveryToS3.DataFreshness",
            "FailedConversion.Records",
        ):
            assert (f"avsev-prod-{table}", metric) in firehose
    errors = [a for a in alarms if a.get("Namespace") == "AWS/S3"]
    assert len(errors) == 1 and errors[0]["Threshold"] == 1
    filter_id = next(d["Value"] for d in errors[0]["Dimensions"] if d["Name"] == "FilterId")
    data = next(
        b["Properties"]
        for b in resources(template, "AWS::S3::Bucket").values()
        if "MetricsConfigurations" in b["Properties"]
    )
    assert {"Id": filter_id, "Prefix": "firehose-errors/"} in data["MetricsConfigurations"]
    assert all(a["AlarmActions"] for a in alarms)


def test_lifecycle_rule_ids_are_unique_on_every_bucket(template):
    """Issue 11.1: S3 rejects a lifecycle configuration whose rule ids repeat ("Rule ID must
    be unique", https://docs.aws.amazon.com/AmazonS3/latest/API/API_LifecycleRule.html: ID,
    "unique" per configuration), failing stack creation."""
    buckets = resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 3
    for name, b in buckets.items():
        ids = [r.get("Id") for r in b["Properties"]["LifecycleConfiguration"]["Rules"]]
        assert None not in ids and len(ids) == len(set(ids)), f"{name}: {ids}"


def test_a_bucket_with_repeated_rule_ids_is_refused():
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3

    from infra.constructs.records import private_bucket

    stack = cdk.Stack(cdk.App(), "S")
    logs = s3.Bucket(stack, "L")
    rules = [s3.LifecycleRule(id="same", prefix=p, expiration=cdk.Duration.days(1)) for p in "ab"]
    with pytest.raises(ValueError, match="unique ids"):
        private_bucket(stack, "B", access_logs=logs, log_prefix="x/", lifecycle_rules=rules)


def test_buckets_use_no_acls(template):
    """Issue 11.10: ACLs are legacy (cfn-lint W3045); server access logs are granted by a
    bucket policy to `logging.s3.amazonaws.com` and ownership is enforced
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html)."""
    buckets = resources(template, "AWS::S3::Bucket")
    for b in buckets.values():
        assert "AccessControl" not in b["Properties"]
        assert b["Properties"]["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerEnforced"}
        ]
    policies = json.dumps(resources(template, "AWS::S3::BucketPolicy"))
    assert "logging.s3.amazonaws.com" in policies and "aws:SecureTransport" in policies
    data = next(b for b in buckets.values() if "MetricsConfigurations" in b["Properties"])
    rules = {r["Prefix"]: r for r in data["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert {"predictions/", "outcomes/", "athena-results/", "firehose-errors/"} <= set(rules)
    assert rules["athena-results/"]["ExpirationInDays"] <= 7


def test_alarms_can_notify_the_topic(template):
    """Issue 11.3: CloudWatch publishes alarm notifications as `cloudwatch.amazonaws.com`;
    an SSL-only topic policy holds only a Deny, and a KMS-encrypted topic needs the key to
    allow the service (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
    Both allow it for this stack's alarms in this account only
    (https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html)."""
    topic = next(iter(resources(template, "AWS::SNS::Topic")))
    policy = next(iter(resources(template, "AWS::SNS::TopicPolicy").values()))["Properties"]
    allows = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(allows) == 1 and as_list(allows[0]["Action"]) == ["sns:Publish"]
    for cond in (allows[0]["Condition"],):
        assert cond["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert ":alarm:avsev-prod-*" in json.dumps(cond["ArnLike"]["aws:SourceArn"])
    key = next(iter(resources(template, "AWS::KMS::Key").values()))["Properties"]["KeyPolicy"]
    cw = [
        s for s in key["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(cw) == 1 and cw[0]["Condition"] == allows[0]["Condition"]
    for a in resources(template, "AWS::CloudWatch::Alarm").values():
        assert a["Properties"]["AlarmActions"] == [{"Ref": topic}]
    assert "AlertsTopic" in template.to_json()["Outputs"]


def test_alarm_and_resource_names_are_prefixed_by_the_stack(template):
    """Issue 11.9: alarm names are unique per account and region
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html),
    as are stream, workgroup and database names."""
    names = [
        a["Properties"]["AlarmName"] for a in resources(template, "AWS::CloudWatch::Alarm").values()
    ]
    assert names and all(n.startswith("avsev-prod-") for n in names)
    assert len(names) == len(set(names))


def test_handler_metrics_and_their_alarms_belong_to_one_stage(template):
    """Issue 11.9: both stages publish to the same namespace in one account; the `service`
    dimension (Powertools takes it from POWERTOOLS_SERVICE_NAME,
    https://docs.powertools.aws.dev/lambda/python/latest/core/metrics/) is the stack, so a
    staging error never moves a prod alarm."""
    for f in resources(template, "AWS::Lambda::Function").values():
        assert (
            f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "avsev-prod"
        )
    services = [
        d["Value"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        for d in a["Properties"].get("Dimensions", [])
        if d["Name"] == "service"
    ]
    assert services and set(services) == {"avsev-prod"}


def test_no_function_reserves_concurrency_by_default(template):
    """Lambda keeps at least 100 of an account's concurrency unreserved
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html): a stack that
    reserves any cannot be created in an account whose quota is under 100 + its reservations
    (new accounts start lower), so reserving is opt-in."""
    reserved = {
        k: f["Properties"]["ReservedConcurrentExecutions"]
        for k, f in resources(template, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in f["Properties"]
    }
    assert reserved == {}


def test_batch_and_jobs_reserve_concurrency_when_asked(cdk_bundle, built_layers, tmp_path):
    """With reserved_concurrency=true, reserved concurrency caps batch and the jobs and keeps
    the rest for serving."""
    stack = synth(cdk_bundle, tmp_path, reserved_concurrency="true")[1]
    reserved = {
        k: f["Properties"].get("ReservedConcurrentExecutions")
        for k, f in resources(
            assertions.Template.from_stack(stack), "AWS::Lambda::Function"
        ).items()
    }
    for prefix in ("BatchScore", "Rollup", "AbAnalysis", "DriftCheck"):
        assert next(v for k, v in reserved.items() if k.startswith(prefix)) >= 1, prefix
    assert next(v for k, v in reserved.items() if k.startswith("Autopilot")) == 1
    for prefix in ("Predict", "Explain"):  # serving takes what is left, never capped
        assert next(v for k, v in reserved.items() if k.startswith(prefix)) is None


def test_schedules_retry_and_keep_failures(template):
    rules = resources(template, "AWS::Events::Rule")
    scheduled = [r for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert sorted(r["Properties"]["ScheduleExpression"] for r in scheduled) == [
        "rate(1 day)",
        "rate(1 day)",
        "rate(1 day)",
        "rate(1 hour)",
        "rate(1 hour)",
        "rate(5 minutes)",
    ]
    for r in rules.values():
        target = r["Properties"]["Targets"][0]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
        assert "DeadLetterConfig" in target
    invoke_configs = resources(template, "AWS::Lambda::EventInvokeConfig")
    assert len(invoke_configs) == 6
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


# ---- records as tables (issue 10, item 1) ---------------------------------------------


def test_glue_tables_take_the_one_schema_with_day_projection(template):
    """Partition projection on `dt` replaces a crawler
    (https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html#partition-projection-date-type);
    the columns are `avsev.monitoring.tables.TABLES`, Parquet serde
    (https://docs.aws.amazon.com/athena/latest/ug/parquet-serde.html)."""
    from avsev.monitoring.tables import PARTITION_START, TABLES

    db = next(iter(resources(template, "AWS::Glue::Database").values()))["Properties"]
    assert db["DatabaseInput"]["Name"] == "avsev_prod"
    tables = {
        t["Properties"]["TableInput"]["Name"]: t["Properties"]
        for t in resources(template, "AWS::Glue::Table").values()
    }
    assert set(tables) == set(TABLES)
    for name, props in tables.items():
        assert props["DatabaseName"] == "avsev_prod"
        ti = props["TableInput"]
        sd = ti["StorageDescriptor"]
        assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
            (c.name, c.type) for c in TABLES[name]
        ]
        assert ti["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
        assert sd["InputFormat"].endswith("MapredParquetInputFormat")
        assert sd["OutputFormat"].endswith("HiveIgnoreKeyTextOutputFormat")
        assert sd["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
        p = ti["Parameters"]
        assert p["projection.enabled"] == "true" and p["projection.dt.type"] == "date"
        assert p["projection.dt.format"] == "yyyy-MM-dd"
        assert p["projection.dt.range"] == f"{PARTITION_START},NOW"
        assert (p["projection.dt.interval"], p["projection.dt.interval.unit"]) == ("1", "DAYS")
        template_ = json.dumps(p["storage.location.template"])
        assert template_.endswith(f'/{name}/dt=${{dt}}/"]]}}') and "RecordsData" in template_


def test_athena_workgroup_is_enforced_encrypted_and_capped(template):
    """https://docs.aws.amazon.com/athena/latest/ug/workgroups-settings-override.html,
    https://docs.aws.amazon.com/athena/latest/ug/workgroups-setting-control-limits-cloudwatch.html."""
    wg = next(iter(resources(template, "AWS::Athena::WorkGroup").values()))["Properties"]
    assert wg["Name"] == "avsev-prod"
    c = wg["WorkGroupConfiguration"]
    assert c["EnforceWorkGroupConfiguration"] is True
    assert c["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    assert c["BytesScannedCutoffPerQuery"] == 100 * 1024**3
    rc = c["ResultConfiguration"]
    assert rc["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS")
    assert json.dumps(rc["OutputLocation"]).endswith('/athena-results/"]]}')


def test_rollup_job_and_its_least_privilege_role(template):
    """Athena reads data and writes results with the caller's credentials
    (https://docs.aws.amazon.com/athena/latest/ug/s3-permissions.html); Glue authorizes a table
    on the catalog, database and table
    (https://docs.aws.amazon.com/glue/latest/dg/glue-specifying-resource-arns.html)."""
    fn = function(template, "RollupFunction")
    assert (fn["MemorySize"], fn["Timeout"], fn["Handler"]) == (512, 900, "app.handler")
    env = fn["Environment"]["Variables"]
    assert {"DATA_BUCKET", "ATHENA_WORKGROUP", "GLUE_DATABASE", "MODEL_BUNDLE_PATH"} <= set(env)
    assert len(fn["Layers"]) == 4  # common, deps, analysis (the jobs module imports numpy), model
    stmts = statements(template, function_role(template, "RollupFunction"))
    athena = [s for s in stmts if any(a.startswith("athena:") for a in as_list(s["Action"]))]
    assert len(athena) == 1 and json.dumps(athena[0]["Resource"]).endswith(
        ':workgroup/avsev-prod"]]}'
    )
    glue = [s for s in stmts if any(a.startswith("glue:") for a in as_list(s["Action"]))]
    assert actions_of(glue) == {
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetPartition",
        "glue:GetPartitions",
    }
    assert len(glue[0]["Resource"]) == 4  # catalog, database, two tables
    lists = [s for s in stmts if "s3:ListBucket" in as_list(s["Action"])]
    assert len(lists) == 1 and "Condition" not in lists[0]  # missing rollups read as 404
    resources_ = json.dumps(
        [s["Resource"] for s in stmts if "s3:PutObject" in as_list(s["Action"])]
    )
    assert "athena-results/*" in resources_ and "rollups/*" in resources_
    assert "predictions/*" not in resources_
    schedule = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if "Rollup" in json.dumps(r["Properties"]["Targets"])
    ]
    assert [s["ScheduleExpression"] for s in schedule] == ["rate(1 hour)"]


def test_ab_and_drift_read_rollups_not_records(template):
    for prefix in ("AbAnalysisFunction", "DriftCheckFunction"):
        stmts = statements(template, function_role(template, prefix))
        s3 = json.dumps(
            [
                s["Resource"]
                for s in stmts
                if any(a.startswith("s3:Get") for a in as_list(s["Action"]))
            ]
        )
        assert "rollups/*" in s3
        assert "predictions/" not in s3 and "outcomes/" not in s3


# ---- deployability ----------------------------------------------------------------------


def test_recommended_feature_flags_are_set():
    """Issue 11.2: `cdk init` writes the recommended flags; without
    `@aws-cdk/aws-lambda:recognizeLayerVersion` a layer change publishes no new version
    (https://docs.aws.amazon.com/cdk/v2/guide/featureflags.html)."""
    flags = json.loads((ROOT / "cdk.json").read_text())["context"]
    for flag in (
        "@aws-cdk/aws-lambda:recognizeLayerVersion",
        "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy",
        "@aws-cdk/aws-iam:minimizePolicies",
    ):
        assert flags.get(flag) is True, flag


def _versions(stack) -> dict[str, str]:
    t = assertions.Template.from_stack(stack)
    return {k.split("CurrentVersion")[0]: k for k in resources(t, "AWS::Lambda::Version")}


def test_a_changed_library_or_model_publishes_new_versions(
    cdk_bundle, built_layers, tmp_path, monkeypatch
):
    """A new `AWS::Lambda::Version` logical id is what makes CloudFormation publish a version and
    hand it to the controller
    (https://docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.aws_lambda/Function.html#aws_cdk.aws_lambda.Function.current_version)."""
    import shutil

    import infra.constructs.functions as functions

    common = Path(
        shutil.copytree(
            functions.COMMON_LAYER,
            tmp_path / "common",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    )
    bundle = Path(shutil.copytree(cdk_bundle, tmp_path / "bundle" / cdk_bundle.name))
    monkeypatch.setattr(functions, "COMMON_LAYER", common)
    before = _versions(synth(bundle, tmp_path / "a")[1])
    again = _versions(synth(bundle, tmp_path / "b")[1])
    assert before == again and set(before) == {"PredictFunction", "ExplainFunction"}

    service = common / "python/avsev/serving/service.py"
    service.write_text(service.read_text() + "\n# a comment changes the layer\n")
    after_library = _versions(synth(bundle, tmp_path / "c")[1])
    (bundle / "NOTES.txt").write_text("a rebuilt bundle\n")
    after_model = _versions(synth(bundle, tmp_path / "d")[1])
    for fn in before:
        assert len({before[fn], after_library[fn], after_model[fn]}) == 3, fn


def test_staging_and_prod_live_side_by_side(cdk_bundle, built_layers, synthesized, tmp_path):
    """Stages: two stacks in one account and region share no physical name
    (https://docs.aws.amazon.com/cdk/v2/guide/stack-how-to-create-multiple-stacks.html)."""
    _, staging, _ = synth(cdk_bundle, tmp_path, stage="staging")
    prod = synthesized[1]
    assert (staging.stack_name, prod.stack_name) == ("avsev-staging", "avsev-prod")

    def names(stack) -> set[str]:
        """Every name the template gives (alarms, dashboard, streams, functions, workgroup, database)."""
        found = set()
        for r in assertions.Template.from_stack(stack).to_json()["Resources"].values():
            p = r.get("Properties", {})
            p = p | p.get("DatabaseInput", {})
            for key in ("AlarmName", "DashboardName", "DeliveryStreamName", "Name", "FunctionName"):
                if isinstance(p.get(key), str):
                    found.add(p[key])
        return found

    a, b = names(staging), names(prod)
    assert {"avsev_staging", "avsev-staging"} <= a and {"avsev_prod", "avsev-prod"} <= b
    shared = a & b
    assert shared <= {"live", "default", "prod"}, (
        shared
    )  # alias, usage plan and stage names are per API/function


def test_an_account_with_its_own_api_gateway_role_skips_the_shared_stack(
    cdk_bundle, built_layers, tmp_path
):
    _, stack, assembly = synth(cdk_bundle, tmp_path, api_gateway_account="false")
    assert [s.stack_name for s in assembly.stacks] == ["avsev-prod"]
    assert stack.dependencies == []


def test_stage_must_be_known(cdk_bundle, tmp_path):
    from infra.app import build_app

    with pytest.raises(ValueError, match="stage='qa'"):
        build_app({"stage": "qa", "bundle": str(cdk_bundle)}, outdir=str(tmp_path))


def lint(template_path: Path) -> list:
    from cfnlint.api import ManualArgs, lint_file

    return lint_file(template_path, config=ManualArgs(regions=["us-east-1"]))


def test_cfn_lint_finds_no_errors_and_only_accepted_warnings(synthesized, cdk_bundle, tmp_path):
    """cfn-lint on every synthesized template (the default stack, and the cognito/WAF variant
    with the account role's stack)."""
    from infra.nag import CFN_LINT_ACCEPTED

    assembly = synthesized[2]
    paths = [Path(s.template_full_path) for s in assembly.stacks]
    variant = synth(
        cdk_bundle, tmp_path, auth="cognito", waf=True, stage="staging", api_gateway_account=True
    )[2]
    paths += [Path(s.template_full_path) for s in variant.stacks]
    assert len(paths) == 3
    for path in paths:
        found = lint(path)
        errors = [f"{m.rule.id} {m.message}" for m in found if m.rule.id.startswith("E")]
        assert errors == [], path.name
        unexplained = {m.rule.id for m in found} - set(CFN_LINT_ACCEPTED)
        assert not unexplained, f"{path.name}: {unexplained}"


def test_cfn_lint_check_can_fail(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "Resources": {
                    "B": {
                        "Type": "AWS::S3::Bucket",
                        "Properties": {"AccessControl": "LogDeliveryWrite", "Nope": 1},
                    }
                }
            }
        )
    )
    ids = {m.rule.id for m in lint(bad)}
    assert "E3002" in ids and "W3045" in ids


def nag_errors(app) -> dict[str, list[str]]:
    """The rules cdk-nag's AwsSolutions and Serverless packs report as errors in `app` (not
    acknowledged), by pack; empty when the app is clean."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    found = {}
    for pack in (AwsSolutionsChecks(), ServerlessChecks()):
        report = pack.validate_scope(app)
        errors = [v.rule_name for v in report.violations if v.severity == "error"]
        if errors:
            found[pack.name] = errors
    return found


def test_cdk_nag_finds_nothing_unacknowledged(synthesized):
    assert nag_errors(synthesized[0]) == {}


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


def test_cognito_waf_and_email_variants_synthesize_nag_clean(cdk_bundle, built_layers, tmp_path):
    """Every context option synthesizes with nothing unacknowledged; an alarm e-mail's
    subscription keeps what it cannot deliver (an SNS redrive policy:
    https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html), which cdk-nag's
    Serverless-SNSRedrivePolicy asks for."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    app, stack, _ = synth(
        cdk_bundle,
        tmp_path,
        auth="cognito",
        waf=True,
        cors_origins="https://example.org",
        alarm_email="oncall@example.org",
    )
    for pack in (AwsSolutionsChecks(), ServerlessChecks()):
        report = pack.validate_scope(app)
        errors = [v.rule_name for v in report.violations if v.severity == "error"]
        assert errors == [], f"{pack.name}: {errors}"
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
    (email,) = resources(t, "AWS::SNS::Subscription").values()
    assert email["Properties"]["Protocol"] == "email"
    assert "deadLetterTargetArn" in json.dumps(email["Properties"]["RedrivePolicy"])


def test_the_dashboard_name_carries_the_region(template):
    """Dashboard names are unique in the account, across regions (CloudWatch PutDashboard:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html):
    the same stage in a second region must not take the first one's."""
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    name = json.dumps(dashboard["Properties"]["DashboardName"])
    assert "avsev-prod-" in name and '"Ref": "AWS::Region"' in name


def test_bad_context_is_a_clear_error(cdk_bundle, tmp_path):
    from infra.app import build_app

    with pytest.raises(ValueError, match="arch='sparc'"):
        build_app({"arch": "sparc", "bundle": str(cdk_bundle)}, outdir=str(tmp_path))
    with pytest.raises(ValueError, match="no model bundle there"):
        build_app({"bundle": str(tmp_path)}, outdir=str(tmp_path))


def test_autopilot_runs_alone_on_a_schedule_with_a_least_privilege_role(template):
    """A tick every few minutes, with no reserved concurrency by default (a tick writes only the
    alias revision it read: tests/aws/test_autopilot.py); it may create and move the
    rolled-out functions' alias, invoke their versions (the parity check), read this stage's
    rollout alarms, read A/B reports and read/write the rollout audit — nothing else. Lambda
    alias routing: https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html"""
    fn = function(template, "AutopilotFunction")
    assert "ReservedConcurrentExecutions" not in fn
    env = fn["Environment"]["Variables"]
    assert {"PREDICT_FUNCTION_NAME", "ALARM_PREFIX", "FOLLOWER_FUNCTIONS", "DATA_BUCKET"} <= set(
        env
    )
    assert env["ALARM_PREFIX"] == "avsev-prod-predict-"
    assert "avsev-prod-explain-" in json.dumps(env["FOLLOWER_FUNCTIONS"])
    stmts = statements(template, function_role(template, "AutopilotFunction"))
    assert {
        "lambda:UpdateAlias",
        "lambda:CreateAlias",
        "lambda:InvokeFunction",
        "cloudwatch:DescribeAlarms",
    } <= actions_of(stmts)
    assert not any(a.startswith("codedeploy:") for a in actions_of(stmts))
    alarms = [s for s in stmts if "cloudwatch:DescribeAlarms" in as_list(s["Action"])]
    assert json.dumps(alarms[0]["Resource"]).count(":alarm:avsev-prod-") == 2
    writes = json.dumps([s["Resource"] for s in stmts if "s3:PutObject" in as_list(s["Action"])])
    assert "reports/rollout/audit/*" in writes and "predictions/" not in writes
    assert not any("s3:DeleteObject" in a for a in actions_of(stmts))
    rules = template.find_resources("AWS::Events::Rule")
    assert any(
        r["Properties"].get("ScheduleExpression") == "rate(5 minutes)" for r in rules.values()
    )


def test_a_shadow_version_deploys_beside_the_served_one(
    cdk_bundle, built_layers, synthetic_model_dir, tmp_path
):
    """`-c shadow=1.1.0`: the predict function carries a second bundle layer and scores it
    (SHADOW_BUNDLE_PATH); nothing else changes. A shadow that is not built is a clear error."""
    from avsev_tools.pipeline.build import build_bundle

    with pytest.raises(ValueError, match="no bundle at"):
        synth(cdk_bundle, tmp_path / "missing", shadow="9.9.9")
    build_bundle(synthetic_model_dir, "1.1.0", out_root=cdk_bundle.parent, arch=ARCH)
    _, stack, _ = synth(cdk_bundle, tmp_path / "out", shadow="1.1.0")
    t = assertions.Template.from_stack(stack)
    predict = function(t, "PredictFunction")
    assert predict["Environment"]["Variables"]["SHADOW_BUNDLE_PATH"] == "/opt/avsev-severity-1.1.0"
    assert len(predict["Layers"]) == 4  # common, deps, model, shadow
    explain = function(t, "ExplainFunction")
    assert "SHADOW_BUNDLE_PATH" not in explain["Environment"]["Variables"]
    shadow_layers = [
        r
        for r in resources(t, "AWS::Lambda::LayerVersion").values()
        if "shadow model bundle" in r["Properties"].get("Description", "")
    ]
    assert len(shadow_layers) == 1


# ---- the dashboard (issue 12, item 5) ---------------------------------------------------


def dashboard_widgets(template: assertions.Template) -> dict[str, dict]:
    """The dashboard's widgets by title, from the synthesized body (an Fn::Join whose tokens
    are kept as ${Ref} / ${GetAtt} placeholders)."""
    body = next(iter(resources(template, "AWS::CloudWatch::Dashboard").values()))["Properties"][
        "DashboardBody"
    ]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(
        p if isinstance(p, str) else "${" + json.dumps(p).replace('"', "'") + "}" for p in parts
    )
    return {w["properties"]["title"]: w["properties"] for w in json.loads(text)["widgets"]}


def expressions(widget: dict) -> str:
    return " ".join(
        m.get("expression", "") for row in widget["metrics"] for m in row if isinstance(m, dict)
    )


def test_dashboard_has_the_local_dashboards_panels_with_the_metrics_the_code_puts(template):
    """The same panels as `avsev local up`'s /dashboard, each drawing metrics that the code
    really puts (the autopilot's rollout metrics, the A/B and drift jobs', Lambda's own)."""
    from avsev.rollout.metrics import rollout_metrics

    widgets = dashboard_widgets(template)
    predict_ref = "PredictFunction"

    def panel(words: str) -> dict:
        found = [w for t, w in widgets.items() if words in t]
        assert len(found) == 1, (words, list(widgets))
        return found[0]

    weights = expressions(panel("weight by function version"))
    assert 'MetricName="AliasWeight"' in weights and "FunctionVersion" in weights
    assert predict_ref in weights and "'Maximum', 300" in weights
    step = panel("Autopilot")
    assert {"CandidateWeight", "AutopilotHeldMinutes", "AutopilotRunning"} <= set(
        re.findall(r'MetricName="(\w+)"', expressions(step))
    )
    put = {
        d["MetricName"]
        for d in rollout_metrics(
            "f", {"1": 0.9, "2": 0.1}, {"autopilot": "running", "held_minutes": 1}, service="s"
        )
    }
    drawn = set(
        re.findall(r'MetricName="(\w+)"', " ".join(expressions(w) for w in widgets.values()))
    )
    assert put <= drawn  # every rollout metric the autopilot puts is on the dashboard

    requests = expressions(panel("Requests per minute by function version"))
    assert 'MetricName="Invocations"' in requests and "ExecutedVersion" in requests
    assert "'Sum', 60" in requests and predict_ref in requests
    latency = expressions(panel("Latency by version"))
    assert "'p50', 60" in latency and "'p95', 60" in latency and "ExecutedVersion" in latency

    deltas = panel("candidate minus champion")
    assert 'MetricName=~"Delta"' in expressions(deltas)  # AccuracyDelta and WeightedF1Delta
    assert [a["value"] for a in deltas["annotations"]["horizontal"]] == [0]
    evidence = panel("always-valid p")
    assert {"AlwaysValidP", "RollbackAdvised"} <= set(
        re.findall(r'MetricName="(\w+)"', expressions(evidence))
    )
    assert [a["value"] for a in evidence["annotations"]["horizontal"]] == [0.05]
    drift = panel("Drift score per feature")
    assert 'MetricName="DriftScore"' in expressions(drift) and "Feature" in expressions(drift)
    assert 'MetricName="DatasetDrift"' in expressions(drift)
    assert 0.1 in [a["value"] for a in drift["annotations"]["horizontal"]]


def test_the_autopilot_may_put_metrics_in_our_namespace_only(template):
    stmts = statements(template, function_role(template, "AutopilotFunction"))
    put = [s for s in stmts if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert len(put) == 1
    assert put[0]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Avsev"}}


def test_every_function_that_calls_aws_ships_the_pinned_sdk(template):
    """A function whose code imports boto3 carries the layer with the SDK the tests ran (the
    runtime's own boto3 "depends on the runtime version and your AWS Region":
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html#python-sdk-included; a layer
    locks it: AWS Lambda Operator Guide, "Managing AWS SDKs in Lambda functions"); and no function
    has more than 5 layers (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    from infra.catalog import function_specs
    from infra.config import AppConfig

    sdk = (ROOT / "layers/analysis/requirements.txt").read_text()
    assert "boto3==" in sdk and "botocore==" in sdk
    specs = list(function_specs(AppConfig()).values())
    callers = {
        s.name for s in specs if "boto3" in (ROOT / "functions" / s.name / "app.py").read_text()
    }
    assert callers >= {"autopilot", "rollup", "ab_analysis", "drift_check"}
    for spec in specs:
        assert ("analysis" in spec.layers) == (spec.name in callers), spec.name
    layer_descriptions = {
        k: v["Properties"].get("Description", "")
        for k, v in resources(template, "AWS::Lambda::LayerVersion").items()
    }
    with_sdk = {k for k, d in layer_descriptions.items() if "AWS SDK" in d}
    assert len(with_sdk) == 1
    for name, fn in resources(template, "AWS::Lambda::Function").items():
        refs = {layer["Ref"] for layer in fn["Properties"].get("Layers", [])}
        assert len(refs) <= 5, name


# ---- the WAF's body sizes ------------------------------------------------------------------


def waf_blocks(acl: dict, path: str, body_bytes: int) -> list[str]:
    """The rules of this web ACL that block a request, as AWS WAF evaluates them: WAF sees at
    most the inspection limit of a body, and a size rule on a longer body applies its
    oversize handling (MATCH, NO_MATCH, or CONTINUE: the inspected part only)
    (https://docs.aws.amazon.com/waf/latest/developerguide/web-acl-setting-body-inspection-limit.html,
    https://docs.aws.amazon.com/waf/latest/developerguide/waf-oversize-request-components.html).
    The common rule set's `SizeRestrictions_BODY` blocks bodies over 8 KB unless overridden."""
    limit = {"KB_16": 16, "KB_32": 32, "KB_48": 48, "KB_64": 64}[
        acl.get("AssociationConfig", {})
        .get("RequestBody", {})
        .get("API_GATEWAY", {})
        .get("DefaultSizeInspectionLimit", "KB_16")
    ] * 1024

    def matches(st: dict) -> bool:
        if "AndStatement" in st:
            return all(matches(s) for s in st["AndStatement"]["Statements"])
        if "OrStatement" in st:
            return any(matches(s) for s in st["OrStatement"]["Statements"])
        if "NotStatement" in st:
            return not matches(st["NotStatement"]["Statement"])
        if "ByteMatchStatement" in st:
            b = st["ByteMatchStatement"]
            assert "UriPath" in b["FieldToMatch"], b
            s, where = b["SearchString"], b["PositionalConstraint"]
            return {
                "EXACTLY": path == s,
                "STARTS_WITH": path.startswith(s),
                "ENDS_WITH": path.endswith(s),
                "CONTAINS": s in path,
            }[where]
        if "SizeConstraintStatement" in st:
            c = st["SizeConstraintStatement"]
            assert "Body" in c["FieldToMatch"], c
            size = body_bytes
            if body_bytes > limit:
                handling = c["FieldToMatch"]["Body"].get("OversizeHandling", "CONTINUE")
                if handling != "CONTINUE":
                    return handling == "MATCH"
                size = limit
            return {"GT": size > c["Size"], "GE": size >= c["Size"]}.get(
                c["ComparisonOperator"], False
            )
        if "ManagedRuleGroupStatement" in st:
            counted = {
                o["Name"]
                for o in st["ManagedRuleGroupStatement"].get("RuleActionOverrides", [])
                if "Count" in o["ActionToUse"]
            }
            return "SizeRestrictions_BODY" not in counted and body_bytes > 8192
        raise AssertionError(f"a statement this test does not evaluate: {st}")

    return [
        r["Name"]
        for r in acl["Rules"]
        if ("Block" in r.get("Action", {}) or "None" in r.get("OverrideAction", {}))
        and matches(r["Statement"])
    ]


def firewall_acl() -> dict:
    from aws_cdk import App, Stack

    from infra.constructs.operations import Firewall

    stack = Stack(App(), "Waf")
    Firewall(stack, "Waf", stage_arn="arn:aws:apigateway:us-east-1::/restapis/a/stages/prod")
    acls = assertions.Template.from_stack(stack).find_resources("AWS::WAFv2::WebACL")
    return next(iter(acls.values()))["Properties"]


@pytest.mark.parametrize("path", sorted({path for path, _, _ in ROUTES}))
def test_waf_lets_through_every_body_the_api_accepts_on_each_route(path):
    """A batch of 1,000 outcomes or reports is far over 8 KB: on each route WAF blocks no body
    up to the API's own limit (it answers 413 beyond), at any size around WAF's inspection."""
    from avsev.serving.limits import MAX_BODY_BYTES

    acl = firewall_acl()
    for size in (100, 8 * 1024 + 1, 16 * 1024, 16 * 1024 + 1, 300_000, MAX_BODY_BYTES):
        assert waf_blocks(acl, f"/prod{path}", size) == [], (path, size)


def test_waf_blocks_large_bodies_off_the_apis_routes():
    acl = firewall_acl()
    assert waf_blocks(acl, "/prod/admin", 100) == []
    assert waf_blocks(acl, "/prod/admin", 9000) == ["large-bodies-off-the-routes"]
    assert waf_blocks(acl, "/prod/admin", 100_000) == ["large-bodies-off-the-routes"]


def test_waf_limits_a_route_whose_limit_it_can_see(monkeypatch):
    """A route whose limit is within what WAF inspects gets its own size rule (oversize:
    match, as every oversize body is above that limit)."""
    from infra.constructs import operations

    limits = operations.body_limits() | {"/predict": 4096}
    monkeypatch.setattr(operations, "body_limits", lambda: limits)
    acl = firewall_acl()
    assert waf_blocks(acl, "/prod/predict", 4096) == []
    assert waf_blocks(acl, "/prod/predict", 4097) == ["body-limit-predict"]
    assert waf_blocks(acl, "/prod/predict", 50_000) == ["body-limit-predict"]
    assert waf_blocks(acl, "/prod/predict/batch", 50_000) == []


def test_the_ab_job_reads_the_audit_and_takes_its_margin_from_context(
    template, cdk_bundle, built_layers, tmp_path
):
    """The A/B job counts a rollout step's evidence from when the step began, which the audit
    says: its role reads the audit prefix. `-c ab_margin=` fixes the non-inferiority margin
    before the rollout (AB_MARGIN); macro F1 is not offered as a decision metric."""
    fn = function(template, "AbAnalysisFunction")
    assert "AB_MARGIN" not in fn["Environment"]["Variables"]  # the metric's default
    reads = [
        json.dumps(s["Resource"])
        for s in statements(template, function_role(template, "AbAnalysisFunction"))
        if "s3:GetObject" in as_list(s["Action"])
    ]
    assert any("reports/rollout/audit/" in r for r in reads), reads
    _, stack, _ = synth(cdk_bundle, tmp_path / "margin", ab_margin="0.04")
    env = function(assertions.Template.from_stack(stack), "AbAnalysisFunction")["Environment"]
    assert env["Variables"]["AB_MARGIN"] == "0.04"
    with pytest.raises(ValueError, match="macro F1 is reported, not offered"):
        synth(cdk_bundle, tmp_path / "f1", ab_metric="macro_f1")
    with pytest.raises(ValueError, match=r"ab_margin=-1\.0: a positive number"):
        synth(cdk_bundle, tmp_path / "neg", ab_margin="-1")


def test_the_retraining_loop_decides_daily_and_retrains_on_codebuild(template):
    """The loop's decider runs daily and may start only the retraining project; each build's
    end comes back to it on EventBridge; the project builds natively for arm64 from the
    repository's own buildspec. AWS behaviour relied on (provable only in an account):
    CodeBuild announces every build-status change on the default event bus with `project-name`
    and `build-status` in `detail`
    (https://docs.aws.amazon.com/codebuild/latest/userguide/sample-build-notifications.html);
    StartBuild's `environmentVariablesOverride` reaches the build and its end event
    (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_StartBuild.html); an S3
    source needs GetObject/GetObjectVersion on the object and the bucket's ACL and location
    (https://docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html)."""
    from infra.constructs.retraining import BUILDSPEC

    (project_id, project), *others = resources(template, "AWS::CodeBuild::Project").items()
    assert not others
    props = project["Properties"]
    assert props["Environment"]["Type"] == "ARM_CONTAINER"
    assert props["Environment"]["ComputeType"] == "BUILD_GENERAL1_LARGE"
    assert (
        props["Source"]["Type"] == "S3"
        and props["Source"]["BuildSpec"] == "infra/buildspec/retrain.yml"
    )
    assert BUILDSPEC.is_file() and "avsev lifecycle run" in BUILDSPEC.read_text()
    assert props["TimeoutInMinutes"] == 120
    names = {v["Name"] for v in props["Environment"]["EnvironmentVariables"]}
    assert {"DATA_BUCKET", "REGISTRY", "STAGE", "APPROVAL", "ALERTS_TOPIC_ARN"} <= names

    decider = function_role(template, "LifecycleFunction")
    starts = [
        s for s in statements(template, decider) if "codebuild:StartBuild" in as_list(s["Action"])
    ]
    assert [s["Resource"] for s in starts] == [{"Fn::GetAtt": [project_id, "Arn"]}]
    lifecycle_fn = next(
        k for k in resources(template, "AWS::Lambda::Function") if k.startswith("LifecycleFunction")
    )
    env = function(template, "LifecycleFunction")["Environment"]["Variables"]
    assert env["RETRAIN_PROJECT"] == {"Ref": project_id}

    rules = resources(template, "AWS::Events::Rule").values()
    ends = [
        r["Properties"]
        for r in rules
        if "EventPattern" in r["Properties"]
        and r["Properties"]["EventPattern"].get("source") == ["aws.codebuild"]
    ]
    assert len(ends) == 1
    pattern = ends[0]["EventPattern"]
    assert pattern["detail-type"] == ["CodeBuild Build State Change"]
    assert pattern["detail"]["project-name"] == [{"Ref": project_id}]
    assert set(pattern["detail"]["build-status"]) == {
        "SUCCEEDED",
        "FAILED",
        "FAULT",
        "STOPPED",
        "TIMED_OUT",
    }
    assert ends[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": [lifecycle_fn, "Arn"]}
    daily = [
        r["Properties"]
        for r in rules
        if r["Properties"].get("ScheduleExpression") == "rate(1 day)"
        and any(
            t["Arn"] == {"Fn::GetAtt": [lifecycle_fn, "Arn"]} for t in r["Properties"]["Targets"]
        )
    ]
    assert len(daily) == 1

    outputs = template.to_json()["Outputs"]
    assert outputs["RetrainProject"]["Value"] == {"Ref": project_id}


# ---- metrics from the record lines (metric filters) -----------------------------------


def test_record_metrics_are_metric_filters_on_the_serving_log_groups(template):
    """Predictions, Predicted<Label>, InferenceLatency (predict), Explanations (explain) and
    Outcomes (outcomes) come from the record lines by metric filters on each function's log
    group (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-logs-metricfilter.html),
    in the stage's namespace, with the version dimensions taken from the record."""
    functions = resources(template, "AWS::Lambda::Function")
    group_of = {
        k.split("Function")[0]: f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for k, f in functions.items()
    }
    filters: dict[str, dict[str, dict]] = {}
    for f in resources(template, "AWS::Logs::MetricFilter").values():
        p = f["Properties"]
        (t,) = p["MetricTransformations"]
        owner = next(k for k, g in group_of.items() if p["LogGroupName"] == {"Ref": g})
        filters.setdefault(owner, {})[t["MetricName"]] = {**t, "pattern": p["FilterPattern"]}
    served = '$.record_type = "prediction" && $.shadow IS FALSE'
    versions = [
        {"Key": "ModelVersion", "Value": "$.model_version"},
        {"Key": "FunctionVersion", "Value": "$.function_version"},
    ]
    assert set(filters) == {"Predict", "Explain", "Outcomes"}
    predict = filters["Predict"]
    assert set(predict) == {
        "Predictions",
        "PredictedFatal",
        "PredictedSerious",
        "PredictedMinor",
        "PredictedNone",
        "InferenceLatency",
    }
    assert predict["Predictions"]["pattern"] == "{ " + served + " }"
    assert predict["Predictions"]["MetricValue"] == "1"
    assert predict["PredictedFatal"]["pattern"] == "{ " + served + ' && $.predicted = "Fatal" }'
    latency = predict["InferenceLatency"]
    assert latency["pattern"] == "{ " + served + " && $.latency_ms = * }"
    assert (latency["MetricValue"], latency["Unit"]) == ("$.latency_ms", "Milliseconds")
    assert filters["Explain"]["Explanations"]["pattern"] == "{ " + served + " }"
    assert filters["Outcomes"]["Outcomes"]["pattern"] == '{ $.record_type = "outcome" }'
    assert "Dimensions" not in filters["Outcomes"]["Outcomes"]
    for metric in (*predict.values(), filters["Explain"]["Explanations"]):
        assert metric["Dimensions"] == versions
    every = [m for group in filters.values() for m in group.values()]
    assert {m["MetricNamespace"] for m in every} == {"Avsev/avsev-prod"}
    # the dashboard reads them there: a dimension cannot be a constant such as `service`
    body = json.dumps(
        next(iter(resources(template, "AWS::CloudWatch::Dashboard").values()))["Properties"]
    )
    assert 'Namespace=\\\\\\"Avsev/avsev-prod\\\\\\" MetricName=\\\\\\"Predictions\\\\\\"' in body


def test_rest_functions_trace_actively_by_default(template):
    """REST: API Gateway samples at the stage and the functions record what it samples."""
    for k, f in resources(template, "AWS::Lambda::Function").items():
        assert f["Properties"]["TracingConfig"] == {"Mode": "Active"}, k
        assert "POWERTOOLS_TRACE_DISABLED" not in f["Properties"]["Environment"]["Variables"]
