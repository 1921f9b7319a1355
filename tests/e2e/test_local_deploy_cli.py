"""`avsev local deploy` as a user runs it: with `avsev local up` running, a new bundle is
synthesized into the stack's template and deployed by the local CloudFormation from another
process; the running stack serves the new version through Lambda's Invoke; an unchanged deploy
changes nothing; a bundle failing its parity check rolls the update back (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from stack_support import local_up_process

AVSEV = Path(sys.executable).parent / "avsev"


@pytest.fixture(scope="module")
def bundles(synthetic_model_dir, synthetic_bundle_dir, tmp_path_factory):
    """The session's synthetic bundle (0.1.0), a retrain of it as 0.2.0, and 0.3.0 whose card
    promises other probabilities than its model gives (its parity check fails)."""
    from avsev.serving.runtime import host_arch
    from avsev_tools.pipeline.build import build_bundle

    out = tmp_path_factory.mktemp("deploy-bundles")
    second = build_bundle(
        synthetic_model_dir, "0.2.0", out_root=out, arch=host_arch(), name="avsev-synthetic"
    )
    broken = out / "avsev-synthetic-0.3.0"
    shutil.copytree(second, broken)
    card = json.loads((broken / "card.json").read_text())
    card["version"] = "0.3.0"
    for golden in card["golden"]:
        golden["probabilities"] = [0.25] * len(golden["probabilities"])
    (broken / "card.json").write_text(json.dumps(card))
    return synthetic_bundle_dir, second, broken


@pytest.fixture(scope="module")
def local_up(bundles, tmp_path_factory):
    yield from local_up_process(bundles[0], tmp_path_factory.mktemp("deploy-cli"))


def deploy(env: dict, model: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AVSEV), "local", "deploy", "--model", str(model)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def invoke(function: str, route: str = "/health") -> dict:
    from avsev.serving.events import proxy_event

    out = boto3.client("lambda").invoke(
        FunctionName=function, Payload=json.dumps(proxy_event("GET", route)).encode()
    )
    return json.loads(json.loads(out["Payload"].read())["body"])


def test_deploy_updates_the_running_stack_and_rolls_a_failed_one_back(
    local_up, bundles, monkeypatch
):
    env, state_file = local_up
    state = json.loads(state_file.read_text())
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, env.get(k) or "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", state["aws_endpoint_url"])
    predict = state["functions"]["predict"]
    assert list(state["bundles"]) == ["1"]

    # When a new bundle is deployed from another process
    done = deploy(env, bundles[1])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "UPDATE_COMPLETE"
    assert sorted(result["versions"].values()) == ["2", "2"]  # predict's and explain's
    # Then the running stack serves version 2 (loaded from the template's staged code)
    assert invoke(f"{predict}:2")["model_version"] == "0.2.0"
    assert invoke(f"{predict}:1")["model_version"] == "0.1.0"
    state = json.loads(state_file.read_text())
    assert Path(state["bundles"]["2"]).name == bundles[1].name

    # An unchanged deploy changes nothing (no version, no request to the handover)
    again = json.loads(deploy(env, bundles[1]).stdout)
    assert again["status"] == "UPDATE_COMPLETE" and again["versions"] == {}
    assert again["updated"] == [] and again["created"] == []

    # A bundle that fails its parity check: the handover answers FAILED, the stack rolls back
    weights = boto3.client("lambda").get_alias(FunctionName=predict, Name="live")
    failed = deploy(env, bundles[2])
    assert failed.returncode == 1, failed.stdout
    assert "parity check" in failed.stderr and "UPDATE_ROLLBACK_COMPLETE" in failed.stderr
    after = boto3.client("lambda").get_alias(FunctionName=predict, Name="live")
    assert after["FunctionVersion"] == weights["FunctionVersion"]
    assert after.get("RoutingConfig") == weights.get("RoutingConfig")
    # the function is back on the model it had; the version published meanwhile is retained
    assert invoke(predict)["model_version"] == "0.2.0"
    versions = boto3.client("lambda").list_versions_by_function(FunctionName=predict)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2", "3"]
