"""The cloud assembly reader on small hand-written templates: the intrinsic functions it
resolves, the names it makes, the routes it walks, and the clear error for what it does not do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from avsev_tools.local.assembly import (
    Assembly,
    AssemblyError,
    UnsupportedIntrinsic,
    function_key,
    local_name,
)
from avsev_tools.local.cloudformation import dependency_order, stringify


def assembly(tmp_path: Path, resources: dict, **extra) -> Assembly:
    """A one-stack assembly `t` with a code asset (app.py) and a layer asset holding b-1/."""
    (tmp_path / "asset.code").mkdir(parents=True)
    (tmp_path / "asset.code" / "app.py").write_text("def handler(e, c): return {}\n")
    (tmp_path / "asset.layer" / "b-1").mkdir(parents=True)
    (tmp_path / "t.template.json").write_text(json.dumps({"Resources": resources, **extra}))
    (tmp_path / "t.assets.json").write_text(
        json.dumps(
            {
                "files": {
                    h: {
                        "source": {"path": f"asset.{h}", "packaging": "zip"},
                        "destinations": {"d": {"bucketName": "x", "objectKey": f"{h}.zip"}},
                    }
                    for h in ("code", "layer")
                }
            }
        )
    )
    return Assembly.read(tmp_path, "t")


CODE = {"S3Bucket": {"Fn::Sub": "cdk-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "code.zip"}


def fn(env: dict | None = None, **props) -> dict:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": CODE,
            "Handler": "app.handler",
            "Layers": [{"Ref": "ModelLayer1234ABCD"}],
            "Environment": {"Variables": env or {}},
            **props,
        },
    }


LAYER = {"Type": "AWS::Lambda::LayerVersion", "Properties": {"Content": {"S3Key": "layer.zip"}}}


def test_environment_resolves_to_local_names_and_layer_folders(tmp_path):
    a = assembly(
        tmp_path,
        {
            "ModelLayer1234ABCD": LAYER,
            "DataBucket0A1B2C3D": {"Type": "AWS::S3::Bucket"},
            "Alerts99887766": {"Type": "AWS::SNS::Topic"},
            "PredictFunction51F85491": fn(
                {
                    "MODEL_BUNDLE_PATH": "/opt/b-1",
                    "BUCKET": {"Ref": "DataBucket0A1B2C3D"},
                    "TOPIC": {"Ref": "Alerts99887766"},
                    "ARN": {"Fn::GetAtt": ["DataBucket0A1B2C3D", "Arn"]},
                    "SUB": {"Fn::Sub": "${DataBucket0A1B2C3D}/${AWS::Region}/${!Literal}"},
                    "JOINED": {"Fn::Join": ["-", ["a", {"Ref": "AWS::StackName"}]]},
                    "PICKED": {"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]},
                    "FOLLOWERS": {
                        "Fn::Join": ["", ['{"', {"Ref": "AbAnalysisFunction49740367"}, '":1}']]
                    },
                },
                MemorySize=1024,
                Timeout=10,
            ),
            "AbAnalysisFunction49740367": fn(FunctionName="t-ab"),
        },
    )
    f = a.function("predict")
    assert (f.logical_id, f.name, f.memory, f.timeout) == (
        "PredictFunction51F85491",
        "t-predictfunction51f85491",
        1024,
        10,
    )
    assert f.code == tmp_path / "asset.code" and f.handler == "app.handler"
    assert f.environment == {
        "MODEL_BUNDLE_PATH": str(tmp_path / "asset.layer" / "b-1"),
        "BUCKET": "t-databucket0a1b2c3d",
        "TOPIC": "arn:aws:sns:us-east-1:123456789012:t-alerts99887766",
        "ARN": "arn:aws:s3:::t-databucket0a1b2c3d",
        "SUB": "t-databucket0a1b2c3d/us-east-1/${Literal}",
        "JOINED": "a-t",
        "PICKED": "y",
        "FOLLOWERS": '{"t-ab":1}',  # a name the template gives is kept
    }
    assert a.function("ab_analysis").name == "t-ab"


def test_a_value_known_once_deployed_is_left_for_the_deployment(tmp_path):
    a = assembly(
        tmp_path,
        {
            "ModelLayer1234ABCD": LAYER,
            "PredictFunction51F85491": fn(),
            "PredictVersionA": {
                "Type": "AWS::Lambda::Version",
                "DeletionPolicy": "Retain",
                "Properties": {"FunctionName": {"Ref": "PredictFunction51F85491"}},
            },
            "Hand": {
                "Type": "Custom::Thing",
                "Properties": {
                    "ServiceToken": {"Fn::GetAtt": ["PredictFunction51F85491", "Arn"]},
                    "Version": {"Fn::GetAtt": ["PredictVersionA", "Version"]},
                    "Name": {"Ref": "PredictFunction51F85491"},
                },
            },
        },
    )
    (custom,) = a.custom_resources
    assert custom.service_token == "PredictFunction51F85491"
    assert custom.properties["Version"] == {"Fn::GetAtt": ["PredictVersionA", "Version"]}
    assert custom.properties["Name"] == "t-predictfunction51f85491"
    assert a.versions["PredictVersionA"].retain and a.versions["PredictVersionA"].function == (
        "PredictFunction51F85491"
    )


def test_an_unknown_intrinsic_is_a_clear_error_naming_the_resource(tmp_path):
    a = assembly(
        tmp_path,
        {
            "ModelLayer1234ABCD": LAYER,
            "OddFunction12345678": fn({"X": {"Fn::ImportValue": "elsewhere"}}),
        },
    )
    with pytest.raises(UnsupportedIntrinsic, match=r"OddFunction12345678: Fn::ImportValue"):
        _ = a.functions
    b = assembly(
        tmp_path / "b",
        {
            "ModelLayer1234ABCD": LAYER,
            "Topic": {"Type": "AWS::SNS::Topic"},
            "OddFunction12345678": fn({"X": {"Fn::GetAtt": ["Topic", "Colour"]}}),
        },
    )
    with pytest.raises(AssemblyError, match=r"Topic\.Colour.*AWS::SNS::Topic"):
        _ = b.functions
    c = assembly(tmp_path / "c", {"ModelLayer1234ABCD": LAYER, "F": fn({"X": "/opt/nowhere"})})
    with pytest.raises(AssemblyError, match="F: /opt/nowhere is in none of the function's layers"):
        _ = c.functions


def test_routes_walk_the_resource_chain_to_the_root(tmp_path):
    root = {"Fn::GetAtt": ["Api", "RootResourceId"]}
    uri = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": ["PredictFunction51F85491", "Arn"]},
                ":live/invocations",
            ],
        ]
    }
    a = assembly(
        tmp_path,
        {
            "ModelLayer1234ABCD": LAYER,
            "PredictFunction51F85491": fn(),
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "t"}},
            "ApiA": {
                "Type": "AWS::ApiGateway::Resource",
                "Properties": {"ParentId": root, "PathPart": "predict"},
            },
            "ApiB": {
                "Type": "AWS::ApiGateway::Resource",
                "Properties": {"ParentId": {"Ref": "ApiA"}, "PathPart": "batch"},
            },
            "ApiBPost": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "HttpMethod": "POST",
                    "ResourceId": {"Ref": "ApiB"},
                    "AuthorizationType": "AWS_IAM",
                    "ApiKeyRequired": True,
                    "Integration": {"Type": "AWS_PROXY", "Uri": uri},
                },
            },
            "ApiRootGet": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "HttpMethod": "GET",
                    "ResourceId": root,
                    "AuthorizationType": "NONE",
                    "Integration": {"Type": "MOCK"},
                },
            },
        },
    )
    routes = {(r.path, r.method): r for r in a.routes}
    post = routes[("/predict/batch", "POST")]
    assert (post.function_key, post.qualifier, post.authorization, post.api_key_required) == (
        "predict",
        "live",
        "AWS_IAM",
        True,
    )
    get = routes[("/", "GET")]
    assert (get.function, get.integration, get.api_key_required) == (None, "MOCK", False)


def test_names_keys_order_and_custom_resource_strings():
    assert local_name("avsev-prod", "RecordsData9C2785AE") == "avsev-prod-recordsdata9c2785ae"
    long = local_name("avsev-prod", "X" * 80)
    assert len(long) == 63 and long != local_name("avsev-prod", "X" * 81)
    assert function_key("PredictFunction51F85491") == "predict"
    assert function_key("AbAnalysisFunction49740367") == "ab_analysis"
    order = dependency_order(
        {
            "C": {"Type": "T", "Properties": {"x": {"Fn::Sub": "${B.Arn}"}}},
            "B": {"Type": "T", "Properties": {"x": {"Ref": "A"}}},
            "A": {"Type": "T", "DependsOn": ["D"]},
            "D": {"Type": "T"},
        }
    )
    assert order == ["D", "A", "B", "C"]
    with pytest.raises(AssemblyError, match="circular"):
        dependency_order({"A": {"Properties": {"x": {"Ref": "B"}}}, "B": {"DependsOn": "A"}})
    assert stringify({"n": 1, "b": True, "l": [2.5, {"x": False}], "s": "s"}) == {
        "n": "1",
        "b": "true",
        "l": ["2.5", {"x": "false"}],
        "s": "s",
    }
