"""A stand-in for CloudFormation that deploys a synthesized stack (avsev_tools.local.assembly) into
the embedded AWS, through boto3 (so wherever `AWS_ENDPOINT_URL` points: the local stack's
moto server).

moto's own CloudFormation cannot take the CDK's deployment (it reads the template from the
assets bucket, which `cdk deploy` has not made there); this one reads `cdk.out` directly and
follows CloudFormation's documented behaviour where the local stack relies on it:

- **Create, update, no change.** A resource new to the template is created; one whose
  resolved properties changed is updated; an unchanged one is left alone, so a custom resource
  receives `Update` only when its properties changed, with `OldResourceProperties` and the
  `PhysicalResourceId` it answered before
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-update.html).
  Resources are handled in dependency order (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `DependsOn`).
- **Replacement and cleanup.** An update that answers a different physical id replaced the
  resource: once the whole update has succeeded, the old one is deleted (a custom resource
  receives `Delete` for its old physical id) unless its `UpdateReplacePolicy` is Retain;
  resources removed from the template are deleted then too, unless their `DeletionPolicy`
  is Retain. A failure to delete during cleanup does not fail the update.
- **Custom resources.** The function named by `ServiceToken` is invoked with the request
  (`RequestType`, `ResponseURL`, `StackId`, `RequestId`, `ResourceType`, `LogicalResourceId`,
  `ResourceProperties` with every scalar as a string, and `PhysicalResourceId` /
  `OldResourceProperties` where they belong); `ResponseURL` is a pre-signed S3 PUT URL into
  this stand-in's own bucket, and the response is read from there as CloudFormation reads it
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html):
  `Status` SUCCESS or FAILED, `Reason`, `PhysicalResourceId`, `Data` (the attributes
  `Fn::GetAtt` reads); it must name the request's `StackId`, `RequestId` and
  `LogicalResourceId` and stay under 4,096 bytes. A function that fails without answering
  fails the resource at once (CloudFormation would wait for its timeout first).
- **Rollback.** A resource that fails (a FAILED answer, an API refusal) fails the update, and
  the stack rolls back to the previous template
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks.html):
  in reverse order, what was updated is updated back with its old properties (a custom
  resource receives `Update` whose `ResourceProperties` are the old ones and whose
  `OldResourceProperties` are the ones that failed — the failed resource too), what was
  created is deleted (a custom resource whose `Create` failed receives `Delete`), a
  replacement is deleted and the original kept. `DeletionPolicy: Retain` keeps a created
  resource: the Lambda versions published during the failed update stay (the stack's
  version map stays the previous one). A failed first deploy deletes what it created
  (ROLLBACK_COMPLETE); the next deploy creates the stack afresh.

What is provisioned: S3 buckets, SNS topics, Secrets Manager secrets, Lambda functions (a stub package; the code is the
staged asset the local stack runs in process), Lambda versions (`publish_version` for every
`AWS::Lambda::Version` logical id not deployed before), aliases, CloudWatch alarms, EventBridge
rules with their targets, and custom resources. Layers are their staged folders (what `/opt`
holds). Other resources (IAM, API Gateway, Logs, Glue, Firehose, ...) are recorded with a
local physical id so that references to them resolve; the local stack stands in for them
(its API emulator reads the routes from the assembly). The `Rules` section is not checked.

The stack's state (resources with their resolved properties, physical ids and attributes; the
version map: version logical id → number) is a JSON object in this stand-in's bucket, and each
function version's code folder another, so a second process (`avsev local deploy`) updates
the stack a running `avsev local up` serves.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsev import clock

from avsev_tools.local.assembly import (
    ACCOUNT,
    CUSTOM_RESOURCE,
    PARTITION,
    REGION,
    Assembly,
    AssemblyError,
    Deferred,
)

STATE_BUCKET = "avsev-local-cloudformation"
"""The stand-in's own bucket: stack states and custom resources' responses."""
EXECUTION_ROLE = "avsev-local-cloudformation-functions"
"""The one role the stub functions get (the template's roles are recorded, not made)."""
RESPONSE_LIMIT = 4096
"""Bytes a custom resource response may have."""

RETAIN = ("Retain", "RetainExceptOnCreate", "Snapshot")

Runner = Callable[[dict[str, Any], dict[str, Any]], Any]
"""(function record, event) → what the handler returned: invokes a custom resource's function.
A record has `name`, `arn`, `code`, `handler`, `environment` (see `CloudFormation.function`)."""


class DeployError(RuntimeError):
    """The deployment failed (and was rolled back): `status` and `events` say what happened."""

    def __init__(self, message: str, status: str, events: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.status = status
        self.events = events


class ResourceFailed(Exception):
    """One resource's operation failed; the physical id a custom resource answered, if any."""

    def __init__(self, reason: str, physical_id: str | None = None) -> None:
        super().__init__(reason)
        self.physical_id = physical_id


@dataclass
class DeployResult:
    stack: str
    status: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    """Resources of types not provisioned here (see the module docstring)."""
    versions: dict[str, str] = field(default_factory=dict)
    """Version logical id → number, for the versions this deploy published."""
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def default_client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service, region_name=REGION)


def stringify(value: Any) -> Any:
    """Properties as CloudFormation passes them to a custom resource: scalars as strings."""
    if isinstance(value, dict):
        return {k: stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return value
    return str(value)


def stub_package(code: str) -> bytes:
    """The zip the embedded Lambda stores: a note of the code folder the local stack runs
    (its bytes, hence CodeSha256, change when the code does, as in AWS)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, text in (
            ("app.py", "# the local stack runs the staged asset named in LOCAL_CODE\n"),
            ("LOCAL_CODE", code),
        ):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, text)
    return out.getvalue()


def call_handler(
    record: dict[str, Any],
    event: dict[str, Any],
    *,
    loading: AbstractContextManager[Any] | None = None,
) -> Any:
    """The default runner: the function's code loaded from its staged folder with its
    environment (applied for the call, then restored), its handler called once. `loading`
    is held while the code loads (not while the handler runs)."""
    from avsev_tools.local.lambda_runtime import LocalContext, load_code

    env = {k: str(v) for k, v in record["environment"].items()}
    saved = {k: os.environ.get(k) for k in env}
    try:
        with loading or nullcontext():
            module, attribute = load_code(Path(record["code"]), record["handler"], env)
        context = LocalContext(
            function_name=record["name"],
            invoked_function_arn=record["arn"],
            log_group_name=f"/aws/lambda/{record['name']}",
        )
        return getattr(module, attribute)(event, context)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---- dependency order --------------------------------------------------------------------------


def references(value: Any) -> set[str]:
    """Logical ids (and parameters, pseudo parameters) a value refers to."""
    out: set[str] = set()
    if isinstance(value, list):
        for v in value:
            out |= references(v)
    elif isinstance(value, dict):
        if len(value) == 1 and "Ref" in value and isinstance(value["Ref"], str):
            out.add(value["Ref"])
        elif len(value) == 1 and "Fn::GetAtt" in value:
            arg = value["Fn::GetAtt"]
            out.add(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
        elif len(value) == 1 and "Fn::Sub" in value:
            arg = value["Fn::Sub"]
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                if name not in variables:
                    out.add(name.split(".", 1)[0])
            out |= references(variables)
        else:
            for v in value.values():
                out |= references(v)
    return out


def dependency_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Logical ids so that each comes after what it refers to (template order otherwise)."""
    deps: dict[str, set[str]] = {}
    for logical_id, r in resources.items():
        depends = r.get("DependsOn", [])
        found = references(r.get("Properties", {})) | set(
            [depends] if isinstance(depends, str) else depends
        )
        deps[logical_id] = {d for d in found if d in resources and d != logical_id}
    order: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        if node in done:
            return
        if node in visiting:
            raise AssemblyError(f"circular dependency: {' → '.join((*path, node))}")
        visiting.add(node)
        for d in sorted(deps[node], key=list(resources).index):
            visit(d, (*path, node))
        visiting.discard(node)
        done.add(node)
        order.append(node)

    for logical_id in resources:
        visit(logical_id, ())
    return order


# ---- the stand-in --------------------------------------------------------------------------------


@dataclass
class _Run:
    """One deployment in progress."""

    assembly: Assembly
    state: dict[str, Any]
    """The stack's saved state (saved again when the deployment ends)."""
    stack_id: str
    previous: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    done: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    """(logical id, created | updated | replaced, the record before) in the order done."""
    cleanup: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(logical id, record) to delete once the update succeeded."""
    versions: dict[str, str] = field(default_factory=dict)


class CloudFormation:
    """`deploy(assembly)` creates or updates the stack; `stack(name)` is its state."""

    def __init__(
        self,
        client: Callable[[str], Any] = default_client,
        *,
        runner: Runner | None = None,
        bucket: str = STATE_BUCKET,
    ) -> None:
        self.client = client
        self.runner = runner or call_handler
        self.bucket = bucket
        self._clients: dict[str, Any] = {}

    # ---- state ----------------------------------------------------------------------------
    def aws(self, service: str) -> Any:
        """A client of the embedded AWS (one per service, made on first use)."""
        if service not in self._clients:
            self._clients[service] = self.client(service)
        return self._clients[service]

    @property
    def s3(self) -> Any:
        return self.aws("s3")

    def _ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception:
            self.s3.create_bucket(Bucket=self.bucket)

    def state_key(self, stack: str) -> str:
        return f"stacks/{stack}.json"

    def stack(self, name: str) -> dict[str, Any] | None:
        """The stack's state as last saved, or None when there is no stack."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.state_key(name))["Body"].read()
        except Exception as e:
            if _code(e) in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise
        state: dict[str, Any] = json.loads(body)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self._ensure_bucket()
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.state_key(state["StackName"]),
            Body=json.dumps(state, indent=1, default=str).encode(),
        )

    def code_of(self, stack: str, function: str, version: str = "$LATEST") -> dict[str, Any]:
        """What runs as `version` of `function` (a name): its code folder, handler and
        environment, as deployed. Written as each function and version is, so it answers
        during a deployment too (a custom resource invoking a new version); versions stay
        listed after a rollback: they are retained."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._code_key(stack))["Body"].read()
            record: dict[str, Any] = json.loads(body)[function][version]
        except Exception as e:
            if isinstance(e, KeyError) or _code(e) in ("NoSuchKey", "NoSuchBucket", "404"):
                raise KeyError(f"{function}:{version}: not deployed by {stack}") from None
            raise
        return record

    def code(self, stack: str) -> dict[str, dict[str, Any]]:
        """Every function's code records: function name → version → record."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._code_key(stack))["Body"].read()
        except Exception as e:
            if _code(e) in ("NoSuchKey", "NoSuchBucket", "404"):
                return {}
            raise
        code: dict[str, dict[str, Any]] = json.loads(body)
        return code

    def _code_key(self, stack: str) -> str:
        return f"stacks/{stack}.code.json"

    def remember_code(
        self, stack: str, function: str, version: str, record: dict[str, Any]
    ) -> None:
        code = self.code(stack)
        code.setdefault(function, {})[version] = dict(record)
        self.s3.put_object(
            Bucket=self.bucket, Key=self._code_key(stack), Body=json.dumps(code, indent=1).encode()
        )

    # ---- deploying -------------------------------------------------------------------------
    def deploy(self, assembly: Assembly) -> DeployResult:
        """Create the stack, or update it to this assembly's template."""
        self._ensure_bucket()
        state = self.stack(assembly.stack)
        creating = state is None or state.get("StackStatus") == "ROLLBACK_COMPLETE"
        if creating or state is None:
            state = {
                "StackName": assembly.stack,
                "StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/"
                f"{assembly.stack}/{uuid.uuid4()}",
                "Resources": {},
                "Versions": {},
            }
        run = _Run(
            assembly=assembly,
            state=state,
            stack_id=state["StackId"],
            previous=copy.deepcopy(state["Resources"]),
            resources=copy.deepcopy(state["Resources"]),
        )
        verb = "CREATE" if creating else "UPDATE"
        self._event(run, assembly.stack, "AWS::CloudFormation::Stack", f"{verb}_IN_PROGRESS")
        result = DeployResult(assembly.stack, "")
        order = dependency_order(assembly.resources)
        failed: str | None = None
        reason = ""
        for logical_id in order:
            try:
                outcome = self._apply(run, logical_id)
            except Exception as e:
                failed, reason = logical_id, str(e)
                kind = assembly.resources[logical_id]["Type"]
                action = "CREATE" if logical_id not in run.previous else "UPDATE"
                self._event(run, logical_id, kind, f"{action}_FAILED", reason)
                if isinstance(e, ResourceFailed) and e.physical_id:
                    run.resources.setdefault(logical_id, {})["FailedPhysicalResourceId"] = (
                        e.physical_id
                    )
                break
            getattr(result, outcome).append(logical_id)
        if failed is not None:
            status = self._roll_back(run, failed, creating)
            state["Resources"] = run.resources
            state["StackStatus"] = status
            state["Events"] = run.events
            state["LastUpdated"] = _now()
            self._save(state)
            raise DeployError(
                f"{assembly.stack}: {failed} failed ({reason}); {status}", status, run.events
            )
        # cleanup: replaced physical resources, then what the template no longer has
        self._event(
            run,
            assembly.stack,
            "AWS::CloudFormation::Stack",
            f"{verb}_COMPLETE_CLEANUP_IN_PROGRESS",
        )
        removed = [
            logical_id
            for logical_id in reversed(
                dependency_order(state.get("Template", {}).get("Resources", {}))
            )
            if logical_id in run.previous and logical_id not in assembly.resources
        ]
        for logical_id, record in run.cleanup:
            self._delete_quietly(run, logical_id, record, policy="UpdateReplacePolicy")
        for logical_id in removed:
            record = run.resources.pop(logical_id)
            if self._delete_quietly(run, logical_id, record, policy="DeletionPolicy"):
                result.deleted.append(logical_id)
            state["Versions"].pop(logical_id, None)
        status = f"{verb}_COMPLETE"
        self._event(run, assembly.stack, "AWS::CloudFormation::Stack", status)
        state["Versions"].update(run.versions)
        state["Resources"] = run.resources
        state["Template"] = assembly.template
        state["Assembly"] = str(assembly.folder)
        state["StackStatus"] = status
        state["Events"] = run.events
        state["LastUpdated"] = _now()
        state["Outputs"] = self._outputs(run)
        self._save(state)
        result.status = status
        result.versions = dict(run.versions)
        result.events = run.events
        result.outputs = state["Outputs"]
        return result

    def _event(self, run: _Run, logical_id: str, kind: str, status: str, reason: str = "") -> None:
        run.events.append(
            {
                "Timestamp": _now(),
                "LogicalResourceId": logical_id,
                "ResourceType": kind,
                "ResourceStatus": status,
                "ResourceStatusReason": reason,
                "PhysicalResourceId": run.resources.get(logical_id, {}).get(
                    "PhysicalResourceId", ""
                ),
            }
        )

    def _lookup(self, run: _Run) -> Callable[[str, str | None], Any]:
        def lookup(logical_id: str, attribute: str | None) -> Any:
            record = run.resources.get(logical_id)
            if record is None or "PhysicalResourceId" not in record:
                return run.assembly.static_value(logical_id, attribute)
            if attribute is None:
                return record["PhysicalResourceId"]
            attributes = record.get("Attributes", {})
            if attribute in attributes:
                return attributes[attribute]
            kind = record.get("Type", "")
            if kind.startswith("Custom::") or kind == CUSTOM_RESOURCE:
                raise AssemblyError(
                    f"CustomResource attribute error: Vendor response doesn't contain "
                    f"{attribute} key in object {run.stack_id}|{logical_id}"
                )
            return run.assembly.static_value(logical_id, attribute)

        return lookup

    def _resolve(self, run: _Run, logical_id: str) -> dict[str, Any]:
        resolver = run.assembly.resolver(self._lookup(run))
        resolver.stack_id = run.stack_id
        props: dict[str, Any] = resolver.resolve(
            run.assembly.resources[logical_id].get("Properties", {}), logical_id
        )
        return props

    # ---- one resource ----------------------------------------------------------------------
    def _apply(self, run: _Run, logical_id: str) -> str:
        """Create, update or leave one resource; 'created', 'updated' or 'unchanged'."""
        resource = run.assembly.resources[logical_id]
        kind = resource["Type"]
        handler = _kind(kind) if _provisioned(kind) else None
        before = run.previous.get(logical_id)
        if handler is None:  # recorded only: references to it resolve to its local name
            physical = _try(lambda: run.assembly.static_value(logical_id, None)) or logical_id
            run.resources[logical_id] = {
                "Type": kind,
                "PhysicalResourceId": physical,
                "Provisioned": False,
            }
            return "recorded"
        props = self._resolve(run, logical_id)
        local = handler.local(run.assembly, logical_id, props)
        record = {
            "Type": kind,
            "Properties": props,
            "Local": local,
            "DeletionPolicy": resource.get("DeletionPolicy", "Delete"),
            "UpdateReplacePolicy": resource.get("UpdateReplacePolicy", "Delete"),
            "Provisioned": True,
        }
        if before and before.get("Type") == kind and before.get("Provisioned"):
            if before.get("Properties") == props and before.get("Local") == local:
                return "unchanged"
            self._event(run, logical_id, kind, "UPDATE_IN_PROGRESS")
            physical, attributes = handler(self, run).update(logical_id, record, before)
            record.update(PhysicalResourceId=physical, Attributes=attributes)
            run.resources[logical_id] = record
            replaced = physical != before.get("PhysicalResourceId")
            run.done.append((logical_id, "replaced" if replaced else "updated", before))
            if replaced:
                run.cleanup.append((logical_id, before))
            self._event(run, logical_id, kind, "UPDATE_COMPLETE")
            return "updated"
        self._event(run, logical_id, kind, "CREATE_IN_PROGRESS")
        physical, attributes = handler(self, run).create(logical_id, record)
        record.update(PhysicalResourceId=physical, Attributes=attributes)
        run.resources[logical_id] = record
        run.done.append((logical_id, "created", before))
        if before:  # the type changed: a replacement
            run.cleanup.append((logical_id, before))
        self._event(run, logical_id, kind, "CREATE_COMPLETE")
        return "created"

    def _delete_quietly(
        self, run: _Run, logical_id: str, record: dict[str, Any], *, policy: str
    ) -> bool:
        """Cleanup: delete unless retained; a failure is an event, not an error."""
        kind = record.get("Type", "")
        if not record.get("Provisioned"):
            return True
        if record.get(policy, "Delete") in RETAIN:
            self._event(run, logical_id, kind, "DELETE_SKIPPED", f"{policy} {record[policy]}")
            return False
        self._event(run, logical_id, kind, "DELETE_IN_PROGRESS")
        try:
            _kind(kind)(self, run).delete(logical_id, record)
        except Exception as e:
            self._event(run, logical_id, kind, "DELETE_FAILED", str(e))
            return False
        self._event(run, logical_id, kind, "DELETE_COMPLETE")
        return True

    # ---- rollback --------------------------------------------------------------------------
    def _roll_back(self, run: _Run, failed: str, creating: bool) -> str:
        """Back to the previous template (see the module docstring); the stack's status."""
        stack = run.assembly.stack
        verb = "ROLLBACK" if creating else "UPDATE_ROLLBACK"
        self._event(run, stack, "AWS::CloudFormation::Stack", f"{verb}_IN_PROGRESS")
        steps = list(run.done)
        kind = run.assembly.resources[failed]["Type"]
        before = run.previous.get(failed)
        attempted = {
            **(before or {}),
            "Type": kind,
            "Properties": _try(lambda: self._resolve(run, failed)) or {},
            "Provisioned": True,
            "DeletionPolicy": run.assembly.resources[failed].get("DeletionPolicy", "Delete"),
        }
        if before and before.get("Provisioned") and before.get("Type") == kind:
            # the failed update is rolled back too: updated back with the old properties
            run.resources[failed] = attempted
            steps.append((failed, "updated", before))
        elif run.resources.get(failed, {}).get("FailedPhysicalResourceId"):
            # a custom resource whose Create failed receives Delete for the id it answered
            attempted["PhysicalResourceId"] = run.resources[failed]["FailedPhysicalResourceId"]
            attempted["DeletionPolicy"] = "Delete"
            run.resources[failed] = attempted
            steps.append((failed, "created", before))
        elif before is None:
            run.resources.pop(failed, None)
        else:
            run.resources[failed] = before
        ok = True
        for logical_id, action, was in reversed(steps):
            record = run.resources.get(logical_id, {})
            rkind = record.get("Type", "")
            try:
                if action in ("created", "replaced"):
                    policy = record.get(
                        "DeletionPolicy" if action == "created" else "UpdateReplacePolicy",
                        "Delete",
                    )
                    if policy in ("Retain", "Snapshot"):
                        self._event(run, logical_id, rkind, "DELETE_SKIPPED", f"rollback: {policy}")
                    elif record.get("Provisioned"):
                        self._event(run, logical_id, rkind, "DELETE_IN_PROGRESS", "rollback")
                        _kind(rkind)(self, run).delete(logical_id, record)
                        self._event(run, logical_id, rkind, "DELETE_COMPLETE", "rollback")
                elif was is not None:  # updated: back to the old properties
                    self._event(run, logical_id, rkind, "UPDATE_IN_PROGRESS", "rollback")
                    back = {**was, "PhysicalResourceId": record["PhysicalResourceId"]}
                    physical, attributes = _kind(rkind)(self, run).update(logical_id, back, record)
                    back.update(PhysicalResourceId=physical, Attributes=attributes)
                    run.resources[logical_id] = back
                    if physical != record["PhysicalResourceId"]:
                        # the rollback answered another id: the failed update's one goes
                        self._delete_quietly(run, logical_id, record, policy="UpdateReplacePolicy")
                    self._event(run, logical_id, rkind, "UPDATE_COMPLETE", "rollback")
                    continue
            except Exception as e:
                ok = False
                what = "UPDATE" if action == "updated" else "DELETE"
                self._event(run, logical_id, rkind, f"{what}_FAILED", f"rollback: {e}")
            if was is None:
                run.resources.pop(logical_id, None)
            else:
                run.resources[logical_id] = was
        if creating:
            run.resources = {}
        status = f"{verb}_{'COMPLETE' if ok else 'FAILED'}"
        self._event(run, stack, "AWS::CloudFormation::Stack", status)
        return status

    def _outputs(self, run: _Run) -> dict[str, Any]:
        resolver = run.assembly.resolver(self._lookup(run))
        out = {}
        for name, spec in run.assembly.template.get("Outputs", {}).items():
            try:
                out[name] = resolver.resolve(spec.get("Value"), f"output {name}")
            except (AssemblyError, Deferred):
                continue
        return out

    # ---- custom resources ------------------------------------------------------------------
    def function(self, run: _Run, arn: str) -> dict[str, Any]:
        """The deployed function an ARN names: name, arn, code, handler, environment."""
        function, _ = run.assembly.function_by_arn(arn)
        record = run.resources.get(function.logical_id)
        if record is None or "Local" not in record:
            raise ResourceFailed(f"{arn}: the function is not deployed")
        return {"name": function.name, "arn": function.arn, **record["Local"]}

    def request(
        self,
        run: _Run,
        request_type: str,
        logical_id: str,
        record: dict[str, Any],
        *,
        physical_id: str | None = None,
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one custom resource request and return the response CloudFormation reads."""
        props = record["Properties"]
        request_id = str(uuid.uuid4())
        key = f"responses/{run.assembly.stack}/{logical_id}/{request_id}"
        event: dict[str, Any] = {
            "RequestType": request_type,
            "ServiceToken": props["ServiceToken"],
            "ResponseURL": self.s3.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=7200
            ),
            "StackId": run.stack_id,
            "RequestId": request_id,
            "ResourceType": record["Type"],
            "LogicalResourceId": logical_id,
            "ResourceProperties": stringify(props),
        }
        if physical_id is not None:
            event["PhysicalResourceId"] = physical_id
        if old is not None:
            event["OldResourceProperties"] = stringify(old)
        function = self.function(run, props["ServiceToken"])
        error = None
        try:
            self.runner(function, event)
        except Exception as e:  # unhandled: the function never answers
            error = f"{type(e).__name__}: {e}"
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception:
            raise ResourceFailed(
                f"no response from {function['name']}"
                + (f" (it failed: {error})" if error else "")
                + "; CloudFormation would wait for the resource's timeout"
            ) from None
        if len(body) > RESPONSE_LIMIT:
            raise ResourceFailed("Response object is too long.")
        try:
            response: dict[str, Any] = json.loads(body)
        except ValueError:
            raise ResourceFailed("Response is not valid JSON") from None
        for field_name in ("StackId", "RequestId", "LogicalResourceId"):
            if response.get(field_name) != event[field_name]:
                raise ResourceFailed(f"Invalid response: {field_name} does not match the request")
        if response.get("Status") not in ("SUCCESS", "FAILED"):
            raise ResourceFailed(f"Invalid response: Status {response.get('Status')!r}")
        if not response.get("PhysicalResourceId"):
            raise ResourceFailed("Invalid PhysicalResourceId")
        if response["Status"] == "FAILED":
            raise ResourceFailed(
                response.get("Reason") or "the custom resource answered FAILED",
                response["PhysicalResourceId"],
            )
        return response


def _code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _provisioned(kind: str) -> bool:
    return kind in HANDLERS or kind.startswith("Custom::") or kind == CUSTOM_RESOURCE


def _kind(kind: str) -> type[Kind]:
    return HANDLERS.get(kind, CustomResourceKind)


def _now() -> str:
    return clock.now().isoformat(timespec="milliseconds")


def _try(make: Callable[[], Any]) -> Any:
    try:
        return make()
    except Exception:
        return None


# ---- resource types ------------------------------------------------------------------------------


class Kind:
    """How one resource type is created, updated and deleted in the embedded AWS."""

    def __init__(self, cfn: CloudFormation, run: _Run) -> None:
        self.cfn = cfn
        self.run = run

    def c(self, service: str) -> Any:
        return self.cfn.aws(service)

    @staticmethod
    def local(assembly: Assembly, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """What the local stack adds to the resolved properties (compared for changes too)."""
        return {}

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return before["PhysicalResourceId"], before.get("Attributes", {})

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        pass


class BucketKind(Kind):
    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.run.assembly.physical_name(logical_id)
        s3 = self.c("s3")
        try:
            s3.create_bucket(Bucket=name)
        except Exception as e:
            if _code(e) != "BucketAlreadyOwnedByYou":
                raise
        return name, {"Arn": f"arn:{PARTITION}:s3:::{name}"}

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.c("s3").delete_bucket(Bucket=record["PhysicalResourceId"])


class TopicKind(Kind):
    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.run.assembly.physical_name(logical_id)
        arn = self.c("sns").create_topic(Name=name)["TopicArn"]
        return arn, {"TopicArn": arn, "TopicName": name}

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.c("sns").delete_topic(TopicArn=record["PhysicalResourceId"])


class LayerKind(Kind):
    """A layer version published in the embedded Lambda (a stub package naming the staged
    folder the local stack reads); new content is a new layer version, as in AWS."""

    @staticmethod
    def local(assembly: Assembly, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        return {"folder": str(assembly.layers[logical_id].folder)}

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        props = record["Properties"]
        out = self.c("lambda").publish_layer_version(
            LayerName=props.get("LayerName") or self.run.assembly.physical_name(logical_id),
            Description=props.get("Description", ""),
            Content={"ZipFile": stub_package(record["Local"]["folder"])},
            CompatibleRuntimes=props.get("CompatibleRuntimes", []),
            CompatibleArchitectures=props.get("CompatibleArchitectures", []),
        )
        arn = out["LayerVersionArn"]
        return arn, {"LayerVersionArn": arn}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return self.create(logical_id, record)

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        name, number = record["PhysicalResourceId"].split(":layer:")[1].rsplit(":", 1)
        self.c("lambda").delete_layer_version(LayerName=name, VersionNumber=int(number))


class FunctionKind(Kind):
    @staticmethod
    def local(assembly: Assembly, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
        function = assembly.functions[logical_id]
        env = props.get("Environment", {}).get("Variables", {})
        return {
            "code": str(function.code),
            "handler": function.handler,
            "environment": {
                k: assembly.opt_path(str(v), function.layers, logical_id) for k, v in env.items()
            },
        }

    def _config(self, record: dict[str, Any]) -> dict[str, Any]:
        props = record["Properties"]
        config = {
            "Runtime": props.get("Runtime", "python3.12"),
            "Handler": props.get("Handler", "app.handler"),
            "MemorySize": int(props.get("MemorySize", 128)),
            "Timeout": int(props.get("Timeout", 3)),
            "Description": props.get("Description", ""),
            "Environment": {"Variables": record["Local"]["environment"]},
            "Layers": list(props.get("Layers", [])),
        }
        return config

    def _role(self) -> str:
        iam = self.c("iam")
        try:
            arn: str = iam.get_role(RoleName=EXECUTION_ROLE)["Role"]["Arn"]
        except Exception:
            arn = iam.create_role(
                RoleName=EXECUTION_ROLE,
                AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
            )["Role"]["Arn"]
        return arn

    def _remember(self, name: str, version: str, record: dict[str, Any]) -> None:
        self.cfn.remember_code(self.run.assembly.stack, name, version, record["Local"])

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.run.assembly.physical_name(logical_id)
        out = self.c("lambda").create_function(
            FunctionName=name,
            Role=self._role(),
            Code={"ZipFile": stub_package(record["Local"]["code"])},
            Architectures=list(record["Properties"].get("Architectures", ["x86_64"])),
            **self._config(record),
        )
        self._remember(name, "$LATEST", record)
        return name, {"Arn": out["FunctionArn"]}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        name = before["PhysicalResourceId"]
        lam = self.c("lambda")
        if record["Local"]["code"] != before.get("Local", {}).get("code"):
            lam.update_function_code(
                FunctionName=name, ZipFile=stub_package(record["Local"]["code"])
            )
        lam.update_function_configuration(FunctionName=name, **self._config(record))
        self._remember(name, "$LATEST", record)
        return name, before.get("Attributes", {})

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.c("lambda").delete_function(FunctionName=record["PhysicalResourceId"])


class VersionKind(Kind):
    """`publish_version` of the function as it is now; a changed version is a new one."""

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = record["Properties"]["FunctionName"]
        out = self.c("lambda").publish_version(
            FunctionName=name, Description=record["Properties"].get("Description", "")
        )
        version = str(out["Version"])
        self.run.versions[logical_id] = version
        stack = self.run.assembly.stack
        latest = self.cfn.code(stack).get(name, {}).get("$LATEST")
        if latest is not None:
            self.cfn.remember_code(stack, name, version, latest)
        return out["FunctionArn"], {"Version": version, "FunctionArn": out["FunctionArn"]}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return self.create(logical_id, record)

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        arn = record["PhysicalResourceId"]
        name, version = arn.rsplit(":", 1)
        self.c("lambda").delete_function(FunctionName=name, Qualifier=version)


class AliasKind(Kind):
    """An alias the template sets. With an UpdatePolicy that hands the change to CodeDeploy
    (CodeDeployLambdaAliasUpdate), an update is not applied here: CodeDeploy is not emulated."""

    def _args(self, record: dict[str, Any]) -> dict[str, Any]:
        props = record["Properties"]
        args = {
            "FunctionName": props["FunctionName"],
            "Name": props["Name"],
            "FunctionVersion": str(props["FunctionVersion"]),
        }
        if "RoutingConfig" in props:
            args["RoutingConfig"] = props["RoutingConfig"]
        return args

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        out = self.c("lambda").create_alias(**self._args(record))
        return out["AliasArn"], {"AliasArn": out["AliasArn"]}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        policy = self.run.assembly.resources.get(logical_id, {}).get("UpdatePolicy", {})
        if "CodeDeployLambdaAliasUpdate" not in policy:
            self.c("lambda").update_alias(**self._args(record))
        return before["PhysicalResourceId"], before.get("Attributes", {})

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        props = record["Properties"]
        self.c("lambda").delete_alias(FunctionName=props["FunctionName"], Name=props["Name"])


ALARM_FIELDS = [
    "AlarmName",
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
]


class AlarmKind(Kind):
    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        props = record["Properties"]
        name = props.get("AlarmName") or self.run.assembly.physical_name(logical_id)
        args = {k: props[k] for k in ALARM_FIELDS if k in props}
        args["AlarmName"] = name
        for k in ("Threshold",):
            if k in args:
                args[k] = float(args[k])
        for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if k in args:
                args[k] = int(args[k])
        self.c("cloudwatch").put_metric_alarm(**args)
        return name, {"Arn": f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return self.create(logical_id, record)

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.c("cloudwatch").delete_alarms(AlarmNames=[record["PhysicalResourceId"]])


class RuleKind(Kind):
    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        props = record["Properties"]
        name = props.get("Name") or self.run.assembly.physical_name(logical_id)
        events = self.c("events")
        args: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        if "ScheduleExpression" in props:
            args["ScheduleExpression"] = props["ScheduleExpression"]
        if "EventPattern" in props:
            args["EventPattern"] = json.dumps(props["EventPattern"])
        if "Description" in props:
            args["Description"] = props["Description"]
        arn = events.put_rule(**args)["RuleArn"]
        existing = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", [])]
        if existing:
            events.remove_targets(Rule=name, Ids=existing)
        targets = [
            {k: t[k] for k in ("Id", "Arn", "Input", "InputPath") if k in t}
            for t in props.get("Targets", [])
        ]
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        return name, {"Arn": arn}

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return self.create(logical_id, record)

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        events = self.c("events")
        name = record["PhysicalResourceId"]
        ids = [t["Id"] for t in events.list_targets_by_rule(Rule=name).get("Targets", [])]
        if ids:
            events.remove_targets(Rule=name, Ids=ids)
        events.delete_rule(Name=name)


class CustomResourceKind(Kind):
    """Requests to the function `ServiceToken` names (see the module docstring)."""

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self.cfn.request(self.run, "Create", logical_id, record)
        return response["PhysicalResourceId"], dict(response.get("Data") or {})

    def update(
        self, logical_id: str, record: dict[str, Any], before: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        response = self.cfn.request(
            self.run,
            "Update",
            logical_id,
            record,
            physical_id=before["PhysicalResourceId"],
            old=before["Properties"],
        )
        return response["PhysicalResourceId"], dict(response.get("Data") or {})

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.cfn.request(
            self.run, "Delete", logical_id, record, physical_id=record["PhysicalResourceId"]
        )


class SecretKind(Kind):
    """A Secrets Manager secret, its value given (`SecretString`) or generated as
    `GenerateSecretString` asks (length, punctuation excluded or not); Ref is its ARN
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-secretsmanager-secret.html).
    An update keeps the value: CloudFormation generates one only on create."""

    def create(self, logical_id: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        import secrets
        import string

        props = record["Properties"]
        value = props.get("SecretString")
        if value is None:
            spec = props.get("GenerateSecretString", {})
            alphabet = string.ascii_letters + string.digits
            if not spec.get("ExcludePunctuation", False):
                alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
            length = int(spec.get("PasswordLength", 32))
            value = "".join(secrets.choice(alphabet) for _ in range(length))
        name = str(props.get("Name") or self.run.assembly.physical_name(logical_id))
        arn = self.c("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        return arn, {"Id": arn}

    def delete(self, logical_id: str, record: dict[str, Any]) -> None:
        self.c("secretsmanager").delete_secret(
            SecretId=record["PhysicalResourceId"], ForceDeleteWithoutRecovery=True
        )


HANDLERS: dict[str, type[Kind]] = {
    "AWS::SecretsManager::Secret": SecretKind,
    "AWS::S3::Bucket": BucketKind,
    "AWS::SNS::Topic": TopicKind,
    "AWS::Lambda::LayerVersion": LayerKind,
    "AWS::Lambda::Function": FunctionKind,
    "AWS::Lambda::Version": VersionKind,
    "AWS::Lambda::Alias": AliasKind,
    "AWS::CloudWatch::Alarm": AlarmKind,
    "AWS::Events::Rule": RuleKind,
}
"""The resource types provisioned in the embedded AWS (custom resources besides)."""
