"""`avsev verify` against `avsev local up`, as a user runs it: every check passes on a
healthy stack, and a broken deployment fails the checks it breaks (exit code 1)."""

from __future__ import annotations

import os
import subprocess

import pytest
from stack_support import AVSEV, local_up_process


@pytest.fixture(scope="module")
def local_up(synthetic_bundle_dir, tmp_path_factory):
    yield from local_up_process(synthetic_bundle_dir, tmp_path_factory.mktemp("verify"))


def test_verify_passes_every_check_on_the_local_stack(local_up):
    env, _ = local_up
    done = subprocess.run(
        [str(AVSEV), "verify", "--local", "--record-timeout", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(rows) == 9 and all(r.startswith("PASS") for r in rows), done.stdout
    assert "9 passed, 0 failed" in done.stdout
    assert "serves v1 (model" in done.stdout and "owned by the rollout controller" in done.stdout


def test_verify_fails_the_checks_a_broken_deployment_breaks(local_up, monkeypatch, capsys):
    import json

    from avsev_tools import verify
    from avsev_tools.commands._shared import aws as _aws
    from avsev_tools.local.stack import use_endpoint

    _, state_file = local_up
    state = json.loads(state_file.read_text())
    for k in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.setenv(k, os.environ.get(k, ""))
    use_endpoint(state["aws_endpoint_url"])
    target = verify.target_from_local(state)
    target.api_key = "wrong"
    target.expected_alarms = [*target.expected_alarms, "avsev-predict-not-deployed"]
    # someone moves the alias behind the controller's back (no audit entry)
    _aws("lambda").update_alias(
        FunctionName=target.predict_function,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.0}},
        Description="moved by hand",
    )
    target.stack_version = "7"  # a version the stack published that neither serves nor ended
    checks = verify.run(verify.Session(target, _aws, record_timeout_s=1))
    failed = {c.name for c in checks if not c.passed}
    assert {
        "health",
        "prediction (API key; SigV4 in AWS)",
        "explanation",
        "outcome",
        "record queryable",
        "alarms exist, none in ALARM",
        "live alias agrees with the stack",
    } <= failed
    owner = next(c for c in checks if c.name == "live alias agrees with the stack")
    assert "the stack's newest version v7 neither serves nor was ended" in owner.detail
    assert "FAIL" in verify.table(target, checks)


def test_verify_needs_a_stack_or_local(capsys):
    from avsev_tools.cli import main

    assert main(["verify"]) == 2
    assert "give a stack name" in capsys.readouterr().err


def test_a_stack_target_comes_from_its_outputs_and_alarms(fake_aws):
    """Against moto: outputs give the API, bucket and function; the key's value comes from
    API Gateway; the alarms to check are the stack's alarm resources (moto's CloudFormation
    cannot create alarms, so here: none, and the queue is not taken for one)."""
    import json

    import boto3
    from avsev_tools import verify
    from moto import mock_aws

    with mock_aws():
        key = boto3.client("apigateway").create_api_key(
            name="k", value="secret-key-value-of-20-chars", enabled=True
        )
        outputs = {
            "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
            "ApiKeyId": key["id"],
            "DataBucket": "data-bucket",
            "PredictFunction": "avsev-prod-predict",
            "PredictVersion": "4",
            "RolloutController": "avsev-prod-autopilot",
        }
        boto3.client("cloudformation").create_stack(
            StackName="avsev-prod",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()},
                }
            ),
        )
        target = verify.target_from_stack("avsev-prod", lambda s: boto3.client(s))
    assert target.base_url == "https://abc.execute-api.us-east-1.amazonaws.com/prod"
    assert target.api_key == "secret-key-value-of-20-chars" and target.region == "us-east-1"
    assert target.expected_alarms == []  # only AWS::CloudWatch::Alarm resources (moto has none)
    assert (target.stack_version, target.controller) == ("4", "avsev-prod-autopilot")


def test_an_http_api_stack_gives_its_key_from_the_secret(fake_aws):
    """The HTTP API option has no API Gateway key: output `ApiKeySecret` names the secret
    its authorizer compares `X-Api-Key` with."""
    import json

    import boto3
    from avsev_tools import verify
    from moto import mock_aws

    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(
            Name="avsev-prod-key", SecretString="key-of-the-http-api"
        )
        outputs = {
            "ApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com/",
            "ApiKeySecret": secret["ARN"],
            "DataBucket": "data-bucket",
            "PredictFunction": "avsev-prod-predict",
        }
        boto3.client("cloudformation").create_stack(
            StackName="avsev-prod",
            TemplateBody=json.dumps(
                {
                    "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()},
                }
            ),
        )
        target = verify.target_from_stack("avsev-prod", lambda s: boto3.client(s))
    assert target.api_key == "key-of-the-http-api"
    assert target.base_url == "https://abc.execute-api.us-east-1.amazonaws.com"


def test_requests_to_aws_are_signed_with_sigv4_and_keep_the_api_key(fake_aws):
    from avsev_tools.verify import _signed

    headers = _signed(
        "POST",
        "https://abc.execute-api.us-east-1.amazonaws.com/prod/predict",
        b"{}",
        {"X-Api-Key": "k", "Content-Type": "application/json"},
        "us-east-1",
    )
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/execute-api/aws4_request" in headers["Authorization"]
    assert headers["X-Api-Key"] == "k" and "X-Amz-Date" in headers


def test_the_record_is_found_by_a_query_of_the_predictions_table(fake_aws, tmp_path):
    """The delivery streams write Parquet by the table's schema; the check queries the table
    (DuckDB over the bucket here, Athena on the stack's workgroup in AWS)."""
    import datetime as dt
    import json

    import boto3
    from avsev.monitoring.query import write_records_parquet
    from avsev_tools.verify import Session, Target, find_prediction_record
    from moto import mock_aws

    now = dt.datetime.now(dt.UTC)
    line = json.dumps(
        {
            "record_type": "prediction",
            "schema_version": 1,
            "request_id": "r",
            "ev_id": "A-1",
            "timestamp": now.isoformat(),
            "model_version": "1.0.0",
            "shadow": False,
            "features": {},
            "predicted": "None",
            "latency_ms": 0.1,
        }
    )
    parquet = tmp_path / "p.parquet"
    write_records_parquet([line], "predictions", parquet)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="verify-test")
        target = Target("http://x", "k", "verify-test", "predict", [])
        session = Session(target, aws=boto3.client, started=now)
        assert find_prediction_record(session, "A-1") is None
        s3.upload_file(str(parquet), "verify-test", f"predictions/dt={now.date()}/x.parquet")
        assert find_prediction_record(session, "A-1") == (
            f"the predictions table (DuckDB), dt={now.date()}"
        )
        assert find_prediction_record(session, "D-4") is None


def _template(reserved: dict[str, int | None]) -> dict:
    return {
        "Resources": {
            key: {
                "Type": "AWS::Lambda::Function",
                "Properties": {"MemorySize": 256}
                | ({"ReservedConcurrentExecutions": n} if n is not None else {}),
            }
            for key, n in reserved.items()
        }
    }


def _preflight(monkeypatch, tmp_path, template: dict, limit: int, unreserved: int):
    """`avsev verify --preflight` on a template in cdk.out, the account's Lambda settings
    answered by a botocore Stubber (moto 5.2.6 does not implement GetAccountSettings)."""
    import json

    import boto3
    from avsev_tools import cli
    from avsev_tools.commands import serve
    from botocore.stub import Stubber

    (tmp_path / "cdk.out").mkdir()
    (tmp_path / "cdk.out/avsev-staging.template.json").write_text(json.dumps(template))
    monkeypatch.chdir(tmp_path)
    client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_response(
        "get_account_settings",
        {
            "AccountLimit": {
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": unreserved,
            }
        },
    )
    monkeypatch.setattr(serve, "aws", lambda service: client)
    with stub:
        code = cli.main(["verify", "--preflight", "--stage", "staging"])
        stub.assert_no_pending_responses()
    return code


def test_preflight_fails_where_the_reservations_exceed_the_account(monkeypatch, tmp_path, capsys):
    """A new account (limit 10): reserving any concurrency would leave fewer than the 100
    unreserved Lambda keeps, so the deploy would fail, and preflight says so, with the way out."""
    template = _template({"Predict1": None, "Batch1": 2, "Rollup1": 1, "Autopilot1": 1})
    assert _preflight(monkeypatch, tmp_path, template, limit=10, unreserved=10) == 1
    out = capsys.readouterr().out
    assert "FAIL  reserved concurrency" in out and "a deploy would fail" in out
    assert "reserves 4 (Autopilot1 1, Batch1 2, Rollup1 1)" in out
    assert "leave 6 unreserved, below the 100" in out
    assert "quota of at least 104" in out and "reserved_concurrency=true" in out


def test_preflight_passes_where_the_account_has_room(monkeypatch, tmp_path, capsys):
    template = _template({"Batch1": 2, "Rollup1": 1})
    assert _preflight(monkeypatch, tmp_path, template, limit=1000, unreserved=990) == 0
    out = capsys.readouterr().out
    assert "PASS  reserved concurrency" in out and "leaving 987 unreserved" in out
    assert "a deploy would succeed" in out and "limit 1,000" in out


def test_preflight_passes_a_template_that_reserves_nothing_in_any_account(
    monkeypatch, tmp_path, capsys
):
    template = _template({"Predict1": None, "Batch1": None})
    assert _preflight(monkeypatch, tmp_path, template, limit=10, unreserved=10) == 0
    assert "reserves none" in capsys.readouterr().out


def test_preflight_needs_a_synthesized_template(monkeypatch, tmp_path, capsys):
    from avsev_tools.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--preflight"]) == 2
    assert "no template at cdk.out/avsev-prod.template.json" in capsys.readouterr().err
