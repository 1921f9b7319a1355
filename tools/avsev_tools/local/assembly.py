"""A synthesized cloud assembly (a `cdk.out` folder) read as the local stack needs it.

`<stack>.template.json` is the CloudFormation template; `<stack>.assets.json` maps each asset's
S3 object key (what the template's `Code.S3Key` / `Content.S3Key` name) to its staged folder
`asset.<hash>/` in the assembly. From them: the functions (their code folder, handler, memory,
timeout and environment), layers, Lambda versions, API routes, schedules, alarms, buckets,
topics, delivery streams and custom resources, with the intrinsic functions the template uses
resolved to local names.

Local physical names are made deterministically, as CloudFormation makes its own from the
stack name and the logical id: `<stack>-<logical id>`, lowercased (S3 wants it), cut to the
service's limit with a short hash of the whole when too long. A name the template gives
(`FunctionName`, `AlarmName`, ...) is kept.

Values that exist only once deployed (a Lambda version's number, a custom resource's answer)
are *deferred*: the reader leaves the intrinsic that asks for them as it is, and the local
CloudFormation (avsev_tools.local.cloudformation) resolves it while it deploys, with the same
`Resolver` and the attributes of what it has created.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from avsev_tools.local.aws import ACCOUNT, REGION

PARTITION = "aws"

CUSTOM_RESOURCE = "AWS::CloudFormation::CustomResource"


class AssemblyError(ValueError):
    """The cloud assembly cannot be read, or asks for what the local stack does not do."""


class UnsupportedIntrinsic(AssemblyError):
    """An intrinsic function (or an attribute) the local resolver does not know."""


class Deferred(Exception):
    """The value exists only once the resource is deployed (see the module docstring)."""

    def __init__(self, logical_id: str, attribute: str) -> None:
        super().__init__(f"{logical_id}.{attribute} is known once deployed")
        self.logical_id = logical_id
        self.attribute = attribute


NO_VALUE = object()
"""`Ref: AWS::NoValue`: the property is removed."""


def is_intrinsic(value: Any) -> bool:
    """A one-key object whose key is `Ref`, `Condition` or `Fn::...`."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def local_name(stack: str, logical_id: str, limit: int = 63) -> str:
    """`<stack>-<logical id>` lowercased; over `limit`, cut and ended with 8 hex of a hash of
    the whole (two long ids never share a name)."""
    name = f"{stack}-{logical_id}".lower()
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


NAME_LIMITS = {"AWS::Lambda::Function": 64, "AWS::S3::Bucket": 63, "AWS::SQS::Queue": 80}
"""Name lengths the services accept (others: 63, a safe length everywhere)."""
NAME_PROPERTIES = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::ApiGateway::RestApi": None,
}
"""Where a resource type takes the name the template gives it."""


def function_key(logical_id: str) -> str:
    """A function's short name from its logical id, as the stack's constructs name it:
    `PredictFunction51F85491` → `predict`, `AbAnalysisFunction49740367` → `ab_analysis`."""
    base = re.sub(r"[0-9A-F]{8}$", "", logical_id)
    base = re.sub(r"Function$", "", base) or logical_id
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()


# ---- what the reader gives -------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    logical_id: str
    folder: Path
    """The staged asset: what Lambda extracts into /opt."""
    description: str = ""


@dataclass(frozen=True)
class Function:
    logical_id: str
    key: str
    """Short name (`predict`): the local stack's handle for the function."""
    name: str
    arn: str
    code: Path
    """The staged asset folder holding the handler's module (app.py)."""
    handler: str
    runtime: str
    memory: int
    timeout: int
    environment: dict[str, Any]
    """Resolved to local names, `/opt/...` paths mapped into the layers' staged folders; a
    value known only once deployed stays an intrinsic (see the module docstring)."""
    layers: tuple[str, ...]
    """Layer logical ids, in the function's order."""
    architectures: tuple[str, ...] = ("x86_64",)
    description: str = ""
    logging: dict[str, Any] = field(default_factory=dict)
    """Its LoggingConfig (log format, application and system log levels), as the template has it."""
    traced: bool = False
    metric_filters: tuple[dict[str, Any], ...] = ()
    """The properties of the AWS::Logs::MetricFilter resources on its log group."""


@dataclass(frozen=True)
class Version:
    logical_id: str
    function: str
    """The function's logical id."""
    retain: bool
    """DeletionPolicy Retain: the version outlives its removal from the template."""


@dataclass(frozen=True)
class Authorizer:
    """An HTTP API's Lambda authorizer (`AWS::ApiGatewayV2::Authorizer`, type REQUEST)."""

    logical_id: str
    function: str
    """Logical id of the authorizer's function."""
    function_key: str
    identity_source: tuple[str, ...]
    """`$request.header.X-Api-Key`, ...: all must be present or API Gateway answers 401."""
    ttl_seconds: int
    """How long an answer is cached, per identity source value (0: not cached)."""
    simple_responses: bool
    payload_format: str


@dataclass(frozen=True)
class Route:
    logical_id: str
    """The AWS::ApiGateway::Method, or the AWS::ApiGatewayV2::Route."""
    path: str
    method: str
    authorization: str
    api_key_required: bool
    integration: str
    """AWS_PROXY, MOCK, ..."""
    function: str | None
    """Logical id of the function a Lambda proxy integration invokes."""
    function_key: str | None
    qualifier: str | None
    """The alias or version the integration names (`live`), None for the unqualified function."""
    api: str = "rest"
    """rest (an AWS::ApiGateway::RestApi method) or http (an AWS::ApiGatewayV2 route)."""
    payload_format: str = "1.0"
    """The event the integration sends: 1.0 (REST proxy) or 2.0 (HTTP API)."""
    authorizer: Authorizer | None = None
    """The HTTP API route's Lambda authorizer (AuthorizationType CUSTOM)."""


@dataclass(frozen=True)
class Schedule:
    logical_id: str
    name: str
    expression: str
    targets: tuple[str, ...]
    """Function logical ids."""
    enabled: bool = True


@dataclass(frozen=True)
class Alarm:
    logical_id: str
    name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str


@dataclass(frozen=True)
class Topic:
    logical_id: str
    name: str
    arn: str


@dataclass(frozen=True)
class DeliveryStream:
    logical_id: str
    name: str
    bucket: str | None
    """The destination bucket's logical id."""
    prefix: str


@dataclass(frozen=True)
class CustomResource:
    logical_id: str
    type: str
    service_token: str
    """Logical id of the function that serves it."""
    properties: dict[str, Any]
    """Resolved but for values known once deployed (left as their intrinsics)."""


# ---- resolving intrinsics ----------------------------------------------------------------------

Lookup = Callable[[str, str | None], Any]
"""(logical id, attribute or None for Ref) → value; raises Deferred for deploy-time values."""


@dataclass
class Resolver:
    """The intrinsic functions this template uses: Ref, Fn::GetAtt, Fn::Join, Fn::Sub,
    Fn::Select, Fn::Split. Anything else raises `UnsupportedIntrinsic` naming the resource."""

    stack: str
    parameters: dict[str, Any]
    lookup: Lookup
    stack_id: str = ""

    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack,
            "AWS::StackId": self.stack_id
            or f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack}/local",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise KeyError(name)
        return values[name]

    def resolve(self, value: Any, where: str) -> Any:
        """`value` with every intrinsic resolved; `where` names the resource for errors."""
        if isinstance(value, list):
            items = [self.resolve(v, where) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg, where)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg, where)
        out = {k: self.resolve(v, where) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def resolve_static(self, value: Any, where: str) -> Any:
        """As `resolve`, but an intrinsic whose value is known only once deployed stays as
        it is (the local CloudFormation resolves it while deploying)."""
        if isinstance(value, list):
            return [self.resolve_static(v, where) for v in value]
        if not isinstance(value, dict):
            return value
        if is_intrinsic(value):
            try:
                return self.resolve(value, where)
            except Deferred:
                return value
        out = {k: self.resolve_static(v, where) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}

    def _ref(self, name: Any, where: str) -> Any:
        if not isinstance(name, str):
            raise AssemblyError(f"{where}: Ref of {name!r}")
        if name.startswith("AWS::"):
            try:
                return self.pseudo(name)
            except KeyError:
                raise UnsupportedIntrinsic(
                    f"{where}: pseudo parameter {name} is not known to the local stack"
                ) from None
        if name in self.parameters:
            return self.parameters[name]
        return self.lookup(name, None)

    def _function(self, key: str, arg: Any, where: str) -> Any:
        if key == "Fn::GetAtt":
            logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.lookup(logical, self.resolve(attribute, where))
        if key == "Fn::Join":
            sep, parts = arg
            resolved = self.resolve(parts, where)
            return str(self.resolve(sep, where)).join(_text(p, where) for p in resolved)
        if key == "Fn::Sub":
            template, variables = (arg, {}) if isinstance(arg, str) else arg
            given = {k: self.resolve(v, where) for k, v in variables.items()}

            def substitute(m: re.Match[str]) -> str:
                name = m.group(1)
                if name.startswith("!"):
                    return "${" + name[1:] + "}"  # ${!Literal}
                if name in given:
                    return _text(given[name], where)
                if "." in name and not name.startswith("AWS::"):
                    logical, attribute = name.split(".", 1)
                    return _text(self.lookup(logical, attribute), where)
                return _text(self._ref(name, where), where)

            return re.sub(r"\$\{([^}]+)\}", substitute, template)
        if key == "Fn::Select":
            index, items = arg
            items = self.resolve(items, where)
            return items[int(self.resolve(index, where))]
        if key == "Fn::Split":
            sep, text = arg
            return _text(self.resolve(text, where), where).split(sep)
        raise UnsupportedIntrinsic(f"{where}: {key} is not supported by the local stack")


def _text(value: Any, where: str) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise AssemblyError(f"{where}: {value!r} cannot be joined into a string")


# ---- the assembly --------------------------------------------------------------------------------


@dataclass
class Assembly:
    """One stack of a cloud assembly. `read` it; the lists are built on first use."""

    folder: Path
    stack: str
    template: dict[str, Any]
    assets: dict[str, Path]
    """S3 object key of an asset (`<hash>.zip`) → its staged folder."""
    parameters: dict[str, Any] = field(default_factory=dict)

    # ---- reading -------------------------------------------------------------------------------
    @classmethod
    def read(cls, folder: Path | str, stack: str | None = None) -> Assembly:
        """The stack `stack` of the assembly in `folder` (default: its only stack with Lambda
        functions)."""
        folder = Path(folder).resolve()
        if stack is None:
            stack = _the_stack(folder)
        template_file = folder / f"{stack}.template.json"
        if not template_file.is_file():
            raise AssemblyError(f"{template_file}: no such template (is {folder} a cdk.out?)")
        template = json.loads(template_file.read_text())
        assets: dict[str, Path] = {}
        assets_file = folder / f"{stack}.assets.json"
        if assets_file.is_file():
            for entry in json.loads(assets_file.read_text()).get("files", {}).values():
                source = folder / entry["source"]["path"]  # an absolute path stays itself
                for destination in entry.get("destinations", {}).values():
                    assets[destination["objectKey"]] = source
        parameters = {
            name: spec["Default"]
            for name, spec in template.get("Parameters", {}).items()
            if "Default" in spec
        }
        return cls(folder, stack, template, assets, parameters)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template.get("Resources", {})
        return resources

    def of_type(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource["Type"] in types:
                yield logical_id, resource

    def properties(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    # ---- names -------------------------------------------------------------------------------
    def physical_name(self, logical_id: str) -> str:
        """The name a resource has locally: the one its template gives, else one made."""
        resource = self.resources.get(logical_id)
        if resource is None:
            raise AssemblyError(f"{logical_id}: no such resource in {self.stack}")
        kind = resource["Type"]
        given_in = NAME_PROPERTIES.get(kind)
        if given_in and given_in in resource.get("Properties", {}):
            given = self.static.resolve(resource["Properties"][given_in], logical_id)
            if isinstance(given, str):
                return given
        return local_name(self.stack, logical_id, NAME_LIMITS.get(kind, 63))

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        service = kind.split("::")[1].lower()
        return {
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::Lambda::LayerVersion": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:layer:{name}:1",
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::KinesisFirehose::DeliveryStream": f"arn:{PARTITION}:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}",
            "AWS::Events::Rule": f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:rule/{name}",
            "AWS::CloudWatch::Alarm": f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
            "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{name}",
        }.get(kind, f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{name}")

    def static_value(self, logical_id: str, attribute: str | None) -> Any:
        """What Ref / Fn::GetAtt give for a resource before deployment (`Deferred` for what
        only a deployment knows)."""
        resource = self.resources.get(logical_id)
        if resource is None:
            raise AssemblyError(f"Ref or Fn::GetAtt of {logical_id}: no such resource")
        kind = resource["Type"]
        if kind == "AWS::Lambda::Version" or kind.startswith("Custom::") or kind == CUSTOM_RESOURCE:
            raise Deferred(logical_id, attribute or "Ref")
        name = self.physical_name(logical_id)
        arn = self.arn(logical_id)
        props = resource.get("Properties", {})
        if kind == "AWS::Lambda::Alias":
            function = self.static.resolve(props["FunctionName"], logical_id)
            alias_arn = (
                f"{self._function_arn(function)}:{self.static.resolve(props['Name'], logical_id)}"
            )
            if attribute in (None, "AliasArn"):
                return alias_arn
        topic_arn = f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}"
        queue_url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        by_ref = {
            "AWS::SNS::Topic": topic_arn,
            "AWS::SQS::Queue": queue_url,
            "AWS::Lambda::LayerVersion": arn,
        }
        if attribute is None:
            return by_ref.get(kind, name)
        attributes: dict[str, Any] = {
            "AWS::SNS::Topic": {"TopicArn": topic_arn, "TopicName": name},
            "AWS::SQS::Queue": {"Arn": arn, "QueueName": name, "QueueUrl": queue_url},
            "AWS::S3::Bucket": {
                "Arn": arn,
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            },
            "AWS::ApiGateway::RestApi": {"RootResourceId": f"{name}-root", "RestApiId": name},
            "AWS::KMS::Key": {"Arn": arn, "KeyId": name},
            "AWS::IAM::Role": {"Arn": arn, "RoleId": name},
            "AWS::Lambda::LayerVersion": {"LayerVersionArn": arn},
        }.get(kind, {"Arn": arn})
        if attribute not in attributes:
            raise UnsupportedIntrinsic(
                f"Fn::GetAtt {logical_id}.{attribute}: attribute {attribute} of {kind} is not "
                "known to the local stack"
            )
        return attributes[attribute]

    def _function_arn(self, function: str) -> str:
        return (
            function
            if function.startswith("arn:")
            else f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}"
        )

    def resolver(self, lookup: Lookup | None = None) -> Resolver:
        return Resolver(self.stack, self.parameters, lookup or self.static_value)

    @cached_property
    def static(self) -> Resolver:
        return self.resolver()

    # ---- what the local stack is made of -------------------------------------------------------
    def asset(self, content: Any, where: str) -> Path:
        """The staged folder of a `Code` / `Content` property (`S3Key` = the asset's key)."""
        key = (
            self.static.resolve(content.get("S3Key"), where) if isinstance(content, dict) else None
        )
        if not key or key not in self.assets:
            raise AssemblyError(f"{where}: no staged asset for {content!r} in {self.folder}")
        return self.assets[key]

    @cached_property
    def layers(self) -> dict[str, Layer]:
        return {
            logical_id: Layer(
                logical_id,
                self.asset(r["Properties"].get("Content"), logical_id),
                r["Properties"].get("Description", ""),
            )
            for logical_id, r in self.of_type("AWS::Lambda::LayerVersion")
        }

    def _metric_filters(self, log_group: Any) -> tuple[dict[str, Any], ...]:
        """The metric filters on a log group (its `{"Ref": ...}`), their names resolved."""
        if not (isinstance(log_group, dict) and "Ref" in log_group):
            return ()
        return tuple(
            {
                **r["Properties"],
                "MetricTransformations": [
                    self.static.resolve_static(t, logical_id)
                    for t in r["Properties"].get("MetricTransformations", [])
                ],
            }
            for logical_id, r in self.of_type("AWS::Logs::MetricFilter")
            if r["Properties"].get("LogGroupName") == log_group
        )

    @cached_property
    def functions(self) -> dict[str, Function]:
        out: dict[str, Function] = {}
        keys: set[str] = set()
        for logical_id, r in self.of_type("AWS::Lambda::Function"):
            props = r["Properties"]
            if "ZipFile" in props.get("Code", {}):
                raise AssemblyError(f"{logical_id}: inline code is not supported locally")
            layers = tuple(_ref_target(x, logical_id) for x in props.get("Layers", []))
            env = self.static.resolve_static(
                props.get("Environment", {}).get("Variables", {}), logical_id
            )
            env = {
                k: self.opt_path(v, layers, logical_id) if isinstance(v, str) else v
                for k, v in env.items()
            }
            key = function_key(logical_id)
            if key in keys:
                key = logical_id
            keys.add(key)
            out[logical_id] = Function(
                logical_id=logical_id,
                key=key,
                name=self.physical_name(logical_id),
                arn=self.arn(logical_id),
                code=self.asset(props.get("Code"), logical_id),
                handler=props.get("Handler", "app.handler"),
                runtime=props.get("Runtime", "python3.12"),
                memory=int(props.get("MemorySize", 128)),
                timeout=int(props.get("Timeout", 3)),
                environment=env,
                layers=layers,
                architectures=tuple(props.get("Architectures", ["x86_64"])),
                description=props.get("Description", ""),
                logging={
                    k: v for k, v in (props.get("LoggingConfig") or {}).items() if k != "LogGroup"
                },
                traced=(props.get("TracingConfig") or {}).get("Mode") == "Active",
                metric_filters=self._metric_filters(
                    (props.get("LoggingConfig") or {}).get("LogGroup")
                ),
            )
        return out

    def opt_path(self, value: str, layers: tuple[str, ...], where: str) -> str:
        """`/opt/<path>` → the staged folder of the last of `layers` holding <path> (Lambda
        extracts layers into /opt in order, a later one over an earlier one)."""
        if not value.startswith("/opt/"):
            return value
        rest = value[len("/opt/") :]
        for layer in reversed(layers):
            if layer in self.layers and (self.layers[layer].folder / rest).exists():
                return str(self.layers[layer].folder / rest)
        raise AssemblyError(f"{where}: {value} is in none of the function's layers")

    def function_by_arn(self, arn: str) -> tuple[Function, str | None]:
        """The function an ARN (or a name) names, and its qualifier (alias or version)."""
        m = re.fullmatch(r"(?:arn:[^:]+:lambda:[^:]*:[^:]*:function:)?([^:]+)(?::([^:]+))?", arn)
        if m:
            for function in self.functions.values():
                if function.name == m.group(1):
                    return function, m.group(2)
        raise AssemblyError(f"{arn}: no function of {self.stack} has this ARN")

    @cached_property
    def versions(self) -> dict[str, Version]:
        return {
            logical_id: Version(
                logical_id,
                _ref_target(r["Properties"]["FunctionName"], logical_id),
                r.get("DeletionPolicy") == "Retain",
            )
            for logical_id, r in self.of_type("AWS::Lambda::Version")
        }

    def _lambda_target(self, uri: Any, where: str) -> tuple[Function, str | None]:
        """The function (and qualifier) an integration or authorizer URI invokes: an API
        Gateway `...:lambda:path/.../functions/<arn>/invocations` URI, or the function's ARN."""
        text = str(self.static.resolve(uri, where))
        m = re.search(r":lambda:path/[^/]+/functions/(.+)/invocations$", text)
        if m is None and ":lambda:" not in text:
            raise AssemblyError(f"{where}: integration {text} invokes no function")
        return self.function_by_arn(m.group(1) if m else text)

    @cached_property
    def api_type(self) -> str:
        """http when the template's API is an HTTP API (`AWS::ApiGatewayV2::Api`), else rest."""
        return "http" if any(self.of_type("AWS::ApiGatewayV2::Api")) else "rest"

    @cached_property
    def authorizers(self) -> dict[str, Authorizer]:
        """The HTTP API's Lambda authorizers, by logical id."""
        out = {}
        for logical_id, r in self.of_type("AWS::ApiGatewayV2::Authorizer"):
            props = r["Properties"]
            if props.get("AuthorizerType") != "REQUEST":
                raise AssemblyError(
                    f"{logical_id}: authorizer type {props.get('AuthorizerType')} is not emulated"
                )
            function, _ = self._lambda_target(props["AuthorizerUri"], logical_id)
            out[logical_id] = Authorizer(
                logical_id=logical_id,
                function=function.logical_id,
                function_key=function.key,
                identity_source=tuple(props.get("IdentitySource", [])),
                ttl_seconds=int(props.get("AuthorizerResultTtlInSeconds", 0)),
                simple_responses=bool(props.get("EnableSimpleResponses", False)),
                payload_format=str(props.get("AuthorizerPayloadFormatVersion", "2.0")),
            )
        return out

    def _http_routes(self) -> list[Route]:
        """Every route of the HTTP API: its route key (`POST /predict`), its authorizer, and
        the function (and qualifier) its Lambda proxy integration invokes."""
        integrations = dict(self.of_type("AWS::ApiGatewayV2::Integration"))
        out = []
        for logical_id, r in self.of_type("AWS::ApiGatewayV2::Route"):
            props = r["Properties"]
            method, _, path = str(props["RouteKey"]).partition(" ")
            target = self.static.resolve(props.get("Target", ""), logical_id)
            integration_id = next(
                (i for i in integrations if str(target).endswith(f"/{self.physical_name(i)}")),
                None,
            )
            function: Function | None = None
            qualifier = None
            kind = ""
            payload = "2.0"
            if integration_id is not None:
                integration = integrations[integration_id]["Properties"]
                kind = integration.get("IntegrationType", "")
                payload = str(integration.get("PayloadFormatVersion", "2.0"))
                if kind == "AWS_PROXY":
                    function, qualifier = self._lambda_target(
                        integration["IntegrationUri"], integration_id
                    )
            authorization = props.get("AuthorizationType", "NONE")
            authorizer = (
                self.authorizers[_ref_target(props["AuthorizerId"], logical_id)]
                if authorization == "CUSTOM"
                else None
            )
            out.append(
                Route(
                    logical_id=logical_id,
                    path=path or "/",
                    method=method,
                    authorization=authorization,
                    api_key_required=False,
                    integration=kind,
                    function=function.logical_id if function else None,
                    function_key=function.key if function else None,
                    qualifier=qualifier,
                    api="http",
                    payload_format=payload,
                    authorizer=authorizer,
                )
            )
        return out

    @cached_property
    def routes(self) -> list[Route]:
        """Every method of the REST API(s): its path (the Resource chain up to the root),
        authorization, API key requirement and the function (and qualifier) it invokes; and
        every route of an HTTP API (see `_http_routes`)."""
        resources = dict(self.of_type("AWS::ApiGateway::Resource"))

        def path_of(parent: Any, where: str) -> str:
            parts: list[str] = []
            seen = set()
            while True:
                if isinstance(parent, dict) and "Fn::GetAtt" in parent:
                    return "/" + "/".join(reversed(parts))  # the RestApi's RootResourceId
                target = _ref_target(parent, where)
                if target in seen or target not in resources:
                    raise AssemblyError(f"{where}: resource {target} does not lead to the API root")
                seen.add(target)
                parts.append(resources[target]["Properties"]["PathPart"])
                parent = resources[target]["Properties"]["ParentId"]

        out: list[Route] = []
        for logical_id, r in self.of_type("AWS::ApiGateway::Method"):
            props = r["Properties"]
            integration = props.get("Integration", {})
            kind = integration.get("Type", "")
            function: Function | None = None
            qualifier = None
            if kind in ("AWS_PROXY", "AWS") and "Uri" in integration:
                uri = self.static.resolve(integration["Uri"], logical_id)
                m = re.search(r":lambda:path/[^/]+/functions/(.+)/invocations$", str(uri))
                if m is None:
                    raise AssemblyError(f"{logical_id}: integration {uri} invokes no function")
                function, qualifier = self.function_by_arn(m.group(1))
            out.append(
                Route(
                    logical_id=logical_id,
                    path=path_of(props["ResourceId"], logical_id)
                    if not _is_root(props["ResourceId"])
                    else "/",
                    method=props["HttpMethod"],
                    authorization=props.get("AuthorizationType", "NONE"),
                    api_key_required=bool(props.get("ApiKeyRequired", False)),
                    integration=kind,
                    function=function.logical_id if function else None,
                    function_key=function.key if function else None,
                    qualifier=qualifier,
                )
            )
        return out + self._http_routes()

    @cached_property
    def schedules(self) -> list[Schedule]:
        out = []
        for logical_id, r in self.of_type("AWS::Events::Rule"):
            props = r["Properties"]
            if "ScheduleExpression" not in props:
                continue
            targets = []
            for target in props.get("Targets", []):
                arn = self.static.resolve(target["Arn"], logical_id)
                try:
                    targets.append(self.function_by_arn(arn)[0].logical_id)
                except AssemblyError:
                    continue  # not a function of this stack
            out.append(
                Schedule(
                    logical_id,
                    self.physical_name(logical_id),
                    props["ScheduleExpression"],
                    tuple(targets),
                    props.get("State", "ENABLED") == "ENABLED",
                )
            )
        return out

    @cached_property
    def alarms(self) -> list[Alarm]:
        return [
            Alarm(
                logical_id,
                self.physical_name(logical_id),
                self.static.resolve_static(r["Properties"], logical_id),
            )
            for logical_id, r in self.of_type("AWS::CloudWatch::Alarm")
        ]

    @cached_property
    def buckets(self) -> list[Bucket]:
        return [
            Bucket(logical_id, self.physical_name(logical_id))
            for logical_id, _ in self.of_type("AWS::S3::Bucket")
        ]

    @cached_property
    def topics(self) -> list[Topic]:
        return [
            Topic(logical_id, self.physical_name(logical_id), self.static_value(logical_id, None))
            for logical_id, _ in self.of_type("AWS::SNS::Topic")
        ]

    @cached_property
    def delivery_streams(self) -> list[DeliveryStream]:
        out = []
        for logical_id, r in self.of_type("AWS::KinesisFirehose::DeliveryStream"):
            props = r["Properties"]
            dest = props.get("ExtendedS3DestinationConfiguration") or props.get(
                "S3DestinationConfiguration", {}
            )
            bucket = dest.get("BucketARN")
            out.append(
                DeliveryStream(
                    logical_id,
                    self.physical_name(logical_id),
                    _ref_target(bucket, logical_id) if bucket else None,
                    dest.get("Prefix", ""),
                )
            )
        return out

    @cached_property
    def custom_resources(self) -> list[CustomResource]:
        out = []
        for logical_id, r in self.resources.items():
            if not (r["Type"].startswith("Custom::") or r["Type"] == CUSTOM_RESOURCE):
                continue
            props = r.get("Properties", {})
            if "ServiceToken" not in props:
                raise AssemblyError(f"{logical_id}: a custom resource without a ServiceToken")
            token = self.static.resolve(props["ServiceToken"], logical_id)
            out.append(
                CustomResource(
                    logical_id,
                    r["Type"],
                    self.function_by_arn(token)[0].logical_id,
                    self.static.resolve_static(props, logical_id),
                )
            )
        return out

    # ---- conveniences ---------------------------------------------------------------------
    def function(self, key: str) -> Function:
        """A function by its short name (`predict`) or logical id."""
        for f in self.functions.values():
            if key in (f.key, f.logical_id):
                return f
        raise KeyError(f"{key}: no such function in {self.stack}")

    def data_bucket(self) -> str | None:
        """The bucket the delivery streams write records to (their first)."""
        for stream in self.delivery_streams:
            if stream.bucket:
                return self.physical_name(stream.bucket)
        return None


def _is_root(value: Any) -> bool:
    return isinstance(value, dict) and "Fn::GetAtt" in value


def _ref_target(value: Any, where: str) -> str:
    """The logical id a `Ref` or `Fn::GetAtt` points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        arg = value["Fn::GetAtt"]
        return str(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
    raise AssemblyError(f"{where}: expected a Ref or Fn::GetAtt, got {value!r}")


def _the_stack(folder: Path) -> str:
    manifest = folder / "manifest.json"
    names: list[str] = []
    if manifest.is_file():
        artifacts = json.loads(manifest.read_text()).get("artifacts", {})
        names = [n for n, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"]
    else:
        names = [p.name.removesuffix(".template.json") for p in folder.glob("*.template.json")]
    with_functions = [
        n
        for n in names
        if (folder / f"{n}.template.json").is_file()
        and '"AWS::Lambda::Function"' in (folder / f"{n}.template.json").read_text()
    ]
    if len(with_functions) != 1:
        raise AssemblyError(
            f"{folder}: name the stack (stacks with functions: {', '.join(with_functions) or 'none'})"
        )
    return with_functions[0]
