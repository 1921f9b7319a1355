"""The records extension option (`-c records=extension`): the serving functions spool their
record lines and a Lambda extension in a layer puts them on Firehose
(`avsev.serving.records_extension`).

What the template is held to: the layer ships the extension under `extensions/`, where Lambda
starts external extensions (https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html,
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html); the extension's
streams are DirectPut streams without the CloudWatch Logs decompression (a stream with it takes
records from CloudWatch Logs only: InvalidSourceException,
https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html), converting
into the same table prefixes; the subscription filters stay (the fallback path); the
functions may PutRecordBatch on those streams only; cdk-nag stays clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import test_infra
from aws_cdk import assertions
from conftest import ROOT
from test_infra import resources, statements, synth

cdk_bundle = test_infra.cdk_bundle
built_layers = test_infra.built_layers


@pytest.fixture(scope="module")
def ext_synth(cdk_bundle, built_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("cdk.out-records-extension")
    app, stack, assembly = synth(cdk_bundle, out, api="http", records="extension")
    return app, stack, assembly, assertions.Template.from_stack(stack)


@pytest.fixture(scope="module")
def ext(ext_synth) -> assertions.Template:
    return ext_synth[3]


def functions(template: assertions.Template) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources(template, "AWS::Lambda::Function").items()}


def test_the_direct_streams_convert_into_the_same_tables_without_decompression(ext):
    from avsev.monitoring.tables import OUTCOMES, PREDICTIONS

    streams = {
        s["Properties"]["DeliveryStreamName"]: s["Properties"]
        for s in resources(ext, "AWS::KinesisFirehose::DeliveryStream").values()
    }
    for table in (PREDICTIONS, OUTCOMES):
        logs_stream = streams[f"avsev-prod-{table}"]["ExtendedS3DestinationConfiguration"]
        direct = streams[f"avsev-prod-{table}-direct"]["ExtendedS3DestinationConfiguration"]
        assert streams[f"avsev-prod-{table}-direct"]["DeliveryStreamType"] == "DirectPut"
        assert "ProcessingConfiguration" not in direct
        assert logs_stream["ProcessingConfiguration"]["Processors"][0]["Type"] == "Decompression"
        for key in ("Prefix", "ErrorOutputPrefix", "DataFormatConversionConfiguration"):
            assert direct[key] == logs_stream[key], key
    alarmed = {
        d["Value"]
        for a in resources(ext, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/Firehose"
        for d in a["Properties"]["Dimensions"]
    }
    assert {f"avsev-prod-{t}-direct" for t in (PREDICTIONS, OUTCOMES)} <= alarmed
    # the subscription filters stay: what the extension cannot put, it prints
    assert len(resources(ext, "AWS::Logs::SubscriptionFilter")) == 3


def test_the_serving_functions_carry_the_extension_its_settings_and_may_put_records(ext):
    from avsev.serving.records import SPOOL_ENV
    from avsev.serving.records_extension import (
        METRICS_ENV,
        METRICS_NAMESPACE_ENV,
        RECORDS_SPOOL,
        STREAMS_ENV,
    )

    layers = {
        k: v["Properties"]
        for k, v in resources(ext, "AWS::Lambda::LayerVersion").items()
        if "records extension" in v["Properties"].get("Description", "")
    }
    (layer_id,) = layers
    expected = {"Predict": "predictions", "Explain": "explanations", "Outcomes": "outcomes"}
    for key, fn in functions(ext).items():
        name = next((n for n in expected if key.startswith(f"{n}Function")), None)
        has_layer = {"Ref": layer_id} in fn.get("Layers", [])
        env = fn["Environment"]["Variables"]
        assert has_layer == (name is not None), key
        assert (SPOOL_ENV in env) == (name is not None), key
        if name is None:
            continue
        assert len(fn["Layers"]) <= 5
        assert env[SPOOL_ENV] == RECORDS_SPOOL
        assert env[METRICS_ENV] == expected[name]
        assert env[METRICS_NAMESPACE_ENV] == "Avsev/avsev-prod"
        assert json.loads(env[STREAMS_ENV]) == {
            "prediction": "avsev-prod-predictions-direct",
            "outcome": "avsev-prod-outcomes-direct",
        }
        role = fn["Role"]["Fn::GetAtt"][0]
        puts = [
            s
            for s in statements(ext, role)
            if "firehose:PutRecordBatch" in test_infra.as_list(s["Action"])
        ]
        assert len(puts) == 1 and test_infra.as_list(puts[0]["Action"]) == [
            "firehose:PutRecordBatch"
        ]
        targets = {r["Fn::GetAtt"][0] for r in test_infra.as_list(puts[0]["Resource"])}
        assert all("DirectStream" in t for t in targets) and len(targets) == 2


def test_the_layer_ships_an_executable_launcher_of_the_librarys_module():
    launcher = ROOT / "layers/records-extension/extensions/avsev-records"
    assert os.access(launcher, os.X_OK)
    text = launcher.read_text()
    assert "-m avsev.serving.records_extension" in text and "/opt/python" in text


def test_the_default_stack_has_no_extension(cdk_bundle, built_layers, tmp_path):
    _, stack, _ = synth(cdk_bundle, tmp_path, api="http")
    template = assertions.Template.from_stack(stack)
    names = {
        s["Properties"]["DeliveryStreamName"]
        for s in resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    }
    assert names == {"avsev-prod-predictions", "avsev-prod-outcomes"}
    assert not any(
        "records extension" in v["Properties"].get("Description", "")
        for v in resources(template, "AWS::Lambda::LayerVersion").values()
    )


def test_records_mode_is_checked(cdk_bundle, tmp_path):
    from infra.app import build_app

    with pytest.raises(ValueError, match="records='kinesis'"):
        build_app(
            {"arch": test_infra.ARCH, "bundle": str(cdk_bundle), "records": "kinesis"},
            outdir=str(tmp_path),
        )


def test_the_extension_variant_synthesizes_nag_clean(ext_synth):
    assert test_infra.nag_errors(ext_synth[0]) == {}


def test_avsev_cost_prices_the_extension_template(ext_synth):
    path = ext_synth[2].get_stack_by_name("avsev-prod").template_full_path
    done = subprocess.run(
        [sys.executable, "-m", "avsev_tools.cli", "cost", "--template", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "records extension" in done.stdout
