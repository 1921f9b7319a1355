"""The whole system on one machine: a moto server as the embedded AWS, provisioned from the
synthesized template by a local CloudFormation (avsev_tools.local.synth → avsev_tools.local.assembly →
avsev_tools.local.cloudformation), the real handlers loaded per function version from the template's
staged code, and an API Gateway emulator on loopback that routes each request as the template's
methods say, by the alias weights stored in moto.

Each bundle given is one deploy of the stack: the first creates it, each next one updates it
(a new function version, handed to the rollout controller by the template's custom resource,
as `cdk deploy` of that bundle would). Lambda's Invoke in the embedded AWS runs the same
in-process handlers, so what calls a function through the Lambda API (the handover's parity
check, a job) reaches the real code.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import logging
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO, cast

from avsev import clock
from avsev.constants import LIVE_ALIAS
from avsev.serving.bundle import read_card
from avsev.serving.records import SPOOL_ENV, set_sink
from avsev.serving.records_extension import STREAMS_ENV, RecordsExtension

from avsev_tools.local.assembly import Assembly, Function, Route
from avsev_tools.local.aws import (
    ACCOUNT,
    CLOCK_KEY,
    FAKE_CREDENTIALS,
    REGION,
    STATE_FILE,
    advance_clock,
    clock_offset,
    read_state,
    use_endpoint,
)
from avsev_tools.local.aws import client as _client
from avsev_tools.local.cloudformation import CloudFormation, DeployResult, call_handler
from avsev_tools.local.dashboard import Traffic
from avsev_tools.local.gateway import serve
from avsev_tools.local.lambda_runtime import LocalContext, load_code
from avsev_tools.local.logs import (
    DirectPut,
    EmfForwarder,
    FirehoseBuffer,
    Invoked,
    LoggingConfig,
    LogRouter,
    MetricFilter,
    Sink,
    stdout_of_this_thread,
)
from avsev_tools.local.synth import Synth, stack_name, synthesize

__all__ = [
    "ACCOUNT",
    "REGION",
    "STATE_FILE",
    "LocalStack",
    "read_state",
    "use_endpoint",
]

INVOKE_LOCK = threading.RLock()
"""One invocation at a time in this process: each Lambda container is single-threaded, and
the handlers share Powertools' Metrics singleton here."""
LOAD_LOCK = threading.Lock()
"""One cold start at a time: a handler reads its environment, set process-wide, as it loads."""
ROUTED = "routed"
"""`invoke`'s default qualifier: the one the API's routes to the function name."""


@dataclass
class Handler:
    """One function version's handler; what it prints while invoked goes to `stdout` (the
    log router), what other threads print meanwhile does not. The records of one invocation
    are one Firehose record (`LogRouter.invocation`)."""

    module: ModuleType
    function: str
    version: str
    stdout: Sink
    function_name: str = ""
    attribute: str = "handler"
    signature: Any = None
    """What this handler was loaded from ($LATEST is reloaded when it changes)."""
    logging: LoggingConfig | None = None
    """The function's LoggingConfig: what Lambda keeps of its log (see `LogRouter.invocation`)."""
    memory_mb: int = 128
    traced: bool = False
    metric_filters: tuple[MetricFilter, ...] = ()
    """Its log group's metric filters (what CloudWatch Logs extracts from its lines)."""
    records_extension: RecordsExtension | None = None
    """The records extension, when the function has it (`-c records=extension`): its spool
    is this function version's own (as each execution environment's /tmp is), and its flush
    runs after each invocation and at the stack's stop (SHUTDOWN)."""

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        context = self._context()
        with INVOKE_LOCK, stdout_of_this_thread(self.stdout), self._log(context):
            if self.records_extension is None:
                result: dict[str, Any] = getattr(self.module, self.attribute)(event, context)
                return result
            os.environ[SPOOL_ENV] = self.records_extension.spool
            try:
                result = getattr(self.module, self.attribute)(event, context)
            finally:
                os.environ.pop(SPOOL_ENV, None)
            # the extension's INVOKE event (in Lambda it arrives as the invocation starts)
            self.records_extension.on_event()
            return result

    def shutdown_extension(self) -> None:
        """The records extension's SHUTDOWN: everything still in the spool is flushed."""
        if self.records_extension is None:
            return
        context = self._context()
        with INVOKE_LOCK, stdout_of_this_thread(self.stdout), self._log(context):
            self.records_extension.on_event(shutdown=True)

    def _context(self) -> LocalContext:
        name = self.function_name or self.function
        qualified = "" if self.version == "$LATEST" else f":{self.version}"
        return LocalContext(
            function_name=name,
            function_version=self.version,
            invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}{qualified}",
            log_group_name=f"/aws/lambda/{name}",
        )

    def _log(self, context: LocalContext) -> contextlib.AbstractContextManager[None]:
        # its records reach the streams as one subscription delivery from its log stream
        invoked = (
            Invoked(
                self.logging,
                self.memory_mb,
                version=self.version,
                traced=self.traced,
                request_id=context.aws_request_id,
                metric_filters=self.metric_filters,
            )
            if self.logging is not None
            else None
        )
        return (
            self.stdout.invocation(
                context.log_group_name, f"[{self.version}]local", function=invoked
            )
            if isinstance(self.stdout, LogRouter)
            else contextlib.nullcontext()
        )


class LocalStack:
    """Start with `start()`; `base_url` and `api_key` are then what a client uses (with the
    HTTP API option, `-c api=http`, the key is the value of the stack's key secret).

    `bundles` are deployed in order (see the module docstring); `stage` names the stack
    (`avsev-<stage>`); `context` adds CDK context (`-c key=value`) to every synth."""

    def __init__(
        self,
        bundles: Sequence[str | Path],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        console: TextIO | None = None,
        stage: str = "prod",
        context: Mapping[str, Any] | None = None,
        synth_cache: Path | None = None,
        routing_seed: int | None = None,
    ) -> None:
        if not bundles:
            raise ValueError("at least one model bundle is needed")
        self.bundles = [Path(b).resolve() for b in bundles]
        self.cards = [read_card(b) for b in self.bundles]
        self.host = host
        self.port = port
        self.api_key = secrets.token_urlsafe(24)
        self.console = console
        self.stage = stage
        self.stack_name = stack_name(stage)
        self.context = dict(context or {})
        self.synth_cache = synth_cache
        # Alias routing's own generator: seeded, the same requests meet the same versions
        # (nothing else in the process, moto or botocore's retry jitter, draws from it).
        self._routing = random.Random(routing_seed)
        self.handlers: dict[tuple[str, str], Handler] = {}
        self.assembly: Assembly | None = None
        self.cfn = CloudFormation(_client, runner=self._run_for_cloudformation)
        self.synths: list[Synth] = []
        self.deploys: list[DeployResult] = []
        self._moto: Any = None
        self._http: Any = None
        self._flusher: threading.Timer | None = None
        self._stopping = threading.Event()
        self.endpoint = ""
        self.base_url = ""
        self.router: LogRouter | None = None
        self.direct_put: DirectPut | None = None
        """The records extension's Firehose (its direct streams), when a function has it."""
        self._spools: str | None = None
        self.traffic = Traffic()
        """Invocations per minute by function version, with durations (the dashboard's)."""
        self.clock_offset_minutes = 0.0
        """How far the stack's clock (`avsev.clock`) runs ahead of the system clock: `advance`
        moves it; once the state file is written, the file holds it (the CLI moves it there)."""
        self._state_path: Path | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> LocalStack:
        first = self.synthesize(self.bundles[0])  # the slow part, before anything runs
        try:
            self._start(first)
        except BaseException:
            self.stop()  # a failed deploy leaves nothing running
            raise
        return self

    def _start(self, first: Synth) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
        self._moto = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto keeps its state per process: start from an empty AWS every time
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30
        )
        self._saved_env = {
            k: os.environ.get(k) for k in (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE")
        }
        use_endpoint(self.endpoint)
        # one clock for the functions, the Firehose stand-in, the controller and the audits
        clock.set_offset(self._clock_offset)
        self.assembly = Assembly.read(first.folder, first.stack)
        for function in self.assembly.functions.values():  # refused now, not at an invocation
            for props in function.metric_filters:
                MetricFilter.from_properties(props)
        self.router = LogRouter(
            FirehoseBuffer(lambda: _client("s3"), self.bucket),
            EmfForwarder(lambda: _client("cloudwatch")),
            console=self.console,
        )
        self.direct_put = DirectPut(self.router.firehose, {})
        # the functions' records, written where the router sorts them
        set_sink(cast(TextIO, self.router))
        # their log lines too (the Logger's stream is the stdout of when it was created);
        # their metrics are printed during each invocation: see Handler
        self._logger_stream = function_logger().setStream(self.router)
        install_invoke(self)
        self._deploy(first, self.bundles[0])
        for bundle in self.bundles[1:]:
            self._deploy(self.synthesize(bundle), bundle)
        self._http = serve(self, self.host, self.port)
        self.base_url = f"http://{self.host}:{self._http.server_address[1]}"
        self._schedule_flush()

    def stop(self) -> None:
        self._stopping.set()
        if self._flusher:
            self._flusher.cancel()
        if self._http:
            self._http.shutdown()
            self._http.server_close()
        self.shutdown_extensions()
        if self._spools:
            shutil.rmtree(self._spools, ignore_errors=True)
        self.flush()
        set_sink(None)
        uninstall_invoke(self)
        if getattr(self, "_logger_stream", None) is not None:
            function_logger().setStream(self._logger_stream)
        if self._moto:
            self._moto.stop()
        clock.set_offset(None)
        for key, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _clock_offset(self) -> float:
        if self._state_path is not None:
            return clock_offset(self._state_path)
        return self.clock_offset_minutes

    def advance(self, minutes: float) -> dt.datetime:
        """Move the stack's clock on by `minutes` (simulated time: the autopilot's hour, the
        retraining loop's day); the stack's time now. It only moves on: the audits are
        ordered by it."""
        if minutes < 0:
            raise ValueError(f"the stack's clock only moves on, not by {minutes} minutes")
        if self._state_path is not None:
            self.clock_offset_minutes = advance_clock(minutes, self._state_path)
        else:
            self.clock_offset_minutes += float(minutes)
        return clock.now()

    def shutdown_extensions(self) -> None:
        """The records extensions' SHUTDOWN (what `stop` does first, as Lambda shuts each
        execution environment down): what is still in their spools is flushed."""
        for handler in list(self.handlers.values()):
            handler.shutdown_extension()

    def flush(self) -> int:
        """Deliver buffered records to S3 and metrics to CloudWatch now (Firehose buffers ~60 s)."""
        if self.router is None:
            return 0
        self.router.emf.flush()
        return self.router.firehose.flush()

    def _schedule_flush(self, seconds: float = 1.0) -> None:
        if self._stopping.is_set():
            return
        self.flush()
        self._follow_deploys()
        self._flusher = threading.Timer(seconds, self._schedule_flush, args=(seconds,))
        self._flusher.daemon = True
        self._flusher.start()

    # ---- deploying (what `cdk deploy` does, into the embedded AWS) ----------------------
    def synthesize(
        self, bundle: Path | str | None, context: Mapping[str, Any] | None = None
    ) -> Synth:
        synth = synthesize(
            bundle,
            stage=self.stage,
            context={**self.context, **(context or {})},
            cache=self.synth_cache,
        )
        self.synths.append(synth)
        return synth

    def deploy(
        self, bundle: Path | str | None = None, *, context: Mapping[str, Any] | None = None
    ) -> DeployResult:
        """Synthesize the app with this bundle (default: the last deployed; with context
        model=<registry version> the app fetches that one) and update the stack to it;
        `DeployError` when it failed (and rolled back)."""
        given = bundle if bundle is not None else self.bundles[-1]
        return self._deploy(self.synthesize(given, context), bundle)

    def _deploy(self, synth: Synth, bundle: Path | str | None) -> DeployResult:
        assembly = Assembly.read(synth.folder, synth.stack)
        result = self.cfn.deploy(assembly)
        self.assembly = assembly
        self.deploys.append(result)
        if "ApiKeySecret" in result.outputs:
            # the HTTP API option: its authorizer's key is the stack's secret, as in AWS
            self.api_key = str(
                _client("secretsmanager").get_secret_value(SecretId=result.outputs["ApiKeySecret"])[
                    "SecretString"
                ]
            )
        if bundle is not None and Path(bundle).resolve() not in self.bundles:
            self.bundles.append(Path(bundle).resolve())
            self.cards.append(read_card(Path(bundle)))
        return result

    def _follow_deploys(self) -> None:
        """Another process (`avsev local deploy`) may have updated the stack: take its routes."""
        try:
            tag = self.cfn.s3.head_object(
                Bucket=self.cfn.bucket, Key=self.cfn.state_key(self.stack_name)
            )["ETag"]
            if tag == getattr(self, "_state_tag", None):
                return
            state = self.cfn.stack(self.stack_name) or {}
            self._state_tag = tag
            folder = state.get("Assembly")
            if folder and self.assembly is not None and Path(folder) != self.assembly.folder:
                self.assembly = Assembly.read(folder, self.stack_name)
        except Exception:
            return

    def _run_for_cloudformation(self, record: dict[str, Any], event: dict[str, Any]) -> Any:
        """A custom resource's function, run here (its output to the log router). Not under
        INVOKE_LOCK: it may invoke other functions through Lambda (the handover's parity
        check), which run on the embedded AWS's threads."""
        with stdout_of_this_thread(self._router()):
            return call_handler(record, event, loading=LOAD_LOCK)

    # ---- what the template made --------------------------------------------------------
    def _assembly(self) -> Assembly:
        if self.assembly is None:
            raise RuntimeError("the stack is deployed when it starts")
        return self.assembly

    @property
    def functions(self) -> dict[str, str]:
        """Function short name (`predict`) → its local name."""
        return {f.key: f.name for f in self._assembly().functions.values()}

    @property
    def routes(self) -> dict[tuple[str, str], Route]:
        """(path, method) → the template's method."""
        return {(r.path, r.method): r for r in self._assembly().routes}

    @property
    def bucket(self) -> str:
        """The data bucket: where the delivery streams write the records."""
        bucket = self._assembly().data_bucket()
        if bucket is None:
            raise RuntimeError(f"{self.stack_name}: no delivery stream names a bucket")
        return bucket

    @property
    def topic_arn(self) -> str:
        topics = self._assembly().topics
        return topics[0].arn if topics else ""

    @property
    def alarms(self) -> list[str]:
        return sorted(a.name for a in self._assembly().alarms)

    def alarm_prefix(self, function: str = "predict") -> str:
        """`<stack>-<function>-`: the names of one function's rollout alarms start so."""
        from avsev.constants import alarm_prefix

        return alarm_prefix(self.stack_name, function)

    def version_bundles(self, function: str = "predict") -> dict[str, str]:
        """Each published version of a function → the bundle it serves (its staged copy)."""
        return version_bundles(self.cfn.code(self.stack_name), self.functions[function])

    def models(self, function: str = "predict") -> dict[str, str]:
        """Each published version → its model version."""
        return {
            v: read_card(Path(b)).version for v, b in self.version_bundles(function).items()
        }

    def _router(self) -> LogRouter:
        if self.router is None:
            raise RuntimeError("the log router is made when the stack starts")
        return self.router

    # ---- handlers ------------------------------------------------------------------------
    def key_of(self, name: str) -> str | None:
        for key, function_name in self.functions.items():
            if function_name == name:
                return key
        return None

    def handler(self, function: str, version: str) -> Handler:
        """The loaded handler of a function version (a cold start the first time)."""
        name = self.functions[function]
        current = self.handlers.get((function, version))
        signature = _latest_signature(name) if version == "$LATEST" else version
        if current is not None and current.signature == signature:
            return current
        with LOAD_LOCK:
            current = self.handlers.get((function, version))
            if current is not None and current.signature == signature:
                return current
            record = self.cfn.code_of(self.stack_name, name, version)
            module, attribute = load_code(
                Path(record["code"]), record["handler"], record["environment"]
            )
            os.environ.pop(SPOOL_ENV, None)  # set per invocation: each version its own spool
            loaded = Handler(module, function, version, self._router(), name, attribute, signature)
            loaded.records_extension = self._records_extension(
                function, version, record["environment"]
            )
            spec = self._function_spec(function)
            if spec is not None:
                loaded.logging = LoggingConfig.from_properties(spec.logging)
                loaded.memory_mb, loaded.traced = spec.memory, spec.traced
                loaded.metric_filters = tuple(
                    MetricFilter.from_properties(f) for f in spec.metric_filters
                )
            self.handlers[(function, version)] = loaded
            return loaded

    def _records_extension(
        self, function: str, version: str, env: Mapping[str, str]
    ) -> RecordsExtension | None:
        """The records extension of a function version synthesized with it (its environment
        names a spool): the extension's own flush logic, putting on the local streams."""
        if not env.get(SPOOL_ENV) or self.direct_put is None:
            return None
        streams = json.loads(env[STREAMS_ENV])
        self.direct_put.streams.update({name: kind for kind, name in streams.items()})
        if self._spools is None:
            self._spools = tempfile.mkdtemp(prefix="avsev-spools-")
        folder = Path(self._spools) / f"{function}-{version.replace('$', '')}"
        folder.mkdir(parents=True, exist_ok=True)
        extension = RecordsExtension.from_env(
            self.direct_put, {**env, SPOOL_ENV: str(folder / Path(env[SPOOL_ENV]).name)}
        )
        extension.stdout = cast(TextIO, self._router())
        return extension

    def _function_spec(self, key: str) -> Function | None:
        """The synthesized template's function of this key (its memory and LoggingConfig)."""
        if self.assembly is None:
            return None
        return next((f for f in self.assembly.functions.values() if f.key == key), None)

    def function_modules(self) -> dict[str, ModuleType]:
        """The module of each function the API routes to (their OpenAPI parts)."""
        out = {}
        for route in self.routes.values():
            if route.function_key and route.function_key not in out:
                version = self._target_version(route.function_key, route.qualifier)
                out[route.function_key] = self.handler(route.function_key, version).module
        return out

    # ---- routing -----------------------------------------------------------------------
    def pick_version(self, function: str, qualifier: str | None = LIVE_ALIAS) -> str:
        """The version alias `live` (or `qualifier`) sends this invocation to (random per
        invocation, as in AWS); a version qualifier is itself, none is $LATEST."""
        if qualifier is None or qualifier == "$LATEST":
            return "$LATEST"
        if qualifier.isdigit():
            return qualifier
        from moto.awslambda.models import lambda_backends

        alias = lambda_backends[ACCOUNT][REGION].get_alias(qualifier, self.functions[function])
        routing: Any = alias.routing_config or {}  # moto: a dict once weights are set
        weights: dict[str, Any] = routing.get("AdditionalVersionWeights") or {}
        draw = self._routing.random()
        for version, weight in weights.items():
            if draw < float(weight):
                return str(version)
            draw -= float(weight)
        return str(alias.function_version)

    def _target_version(self, function: str, qualifier: str | None) -> str:
        """The version a qualifier points at without weights (the alias's own version)."""
        if qualifier is None or qualifier == "$LATEST" or qualifier.isdigit():
            return qualifier or "$LATEST"
        from moto.awslambda.models import lambda_backends

        alias = lambda_backends[ACCOUNT][REGION].get_alias(qualifier, self.functions[function])
        return str(alias.function_version)

    def _routed_qualifier(self, function: str) -> str | None:
        for route in self.routes.values():
            if route.function_key == function:
                return route.qualifier
        return None

    def invoke(
        self, function: str, event: dict[str, Any], qualifier: str | None = ROUTED
    ) -> dict[str, Any]:
        """Invoke a function as API Gateway does: through the qualifier its route names
        (alias `live` for the rolled-out functions) unless another is given."""
        if qualifier == ROUTED:
            qualifier = self._routed_qualifier(function)
        version = self.pick_version(function, qualifier)
        handler = self.handler(function, version)
        with INVOKE_LOCK:  # reentrant: the duration is the handler's, not the wait for it
            started = time.perf_counter()
            status = 500
            try:
                response = handler(event)
                status = int(response.get("statusCode", 200))
                return response
            finally:
                ms = (time.perf_counter() - started) * 1000
                self.traffic.record(function, version, ms, status)

    # ---- for the CLI -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "aws_endpoint_url": self.endpoint,
            "stack": self.stack_name,
            "stage": self.stage,
            "bucket": self.bucket,
            "topic_arn": self.topic_arn,
            "functions": self.functions,
            "alarms": self.alarms,
            "alarm_prefix": self.alarm_prefix(),
            "bundles": self.version_bundles(),
            "assembly": str(self._assembly().folder),
            "context": self.context,
            "pid": os.getpid(),
            CLOCK_KEY: self._clock_offset(),
        }

    def write_state(self, path: Path = STATE_FILE) -> Path:
        """The state file the CLI reads; from now on the stack's clock is the file's."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.state(), indent=1))
        self._state_path = path
        return path


def version_bundles(code: dict[str, Any], function_name: str) -> dict[str, str]:
    """From the local CloudFormation's code records (`CloudFormation.code`): each published
    version of a function → the model bundle its environment names (MODEL_BUNDLE_PATH)."""
    versions = code.get(function_name, {})
    out = {
        v: str(r["environment"]["MODEL_BUNDLE_PATH"])
        for v, r in versions.items()
        if v.isdigit() and "MODEL_BUNDLE_PATH" in r.get("environment", {})
    }
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _latest_signature(name: str) -> Any:
    """What $LATEST of a function is now in the embedded Lambda (its code and environment)."""
    from moto.awslambda.models import lambda_backends

    fn = lambda_backends[ACCOUNT][REGION].get_function(name)
    return (fn.code_sha_256, json.dumps(fn.environment_vars, sort_keys=True))


def function_logger() -> logging.StreamHandler[Any]:
    """The stream handler of the functions' Powertools Logger (avsev.serving.observability)."""
    from avsev.serving.observability import logger

    handler: logging.StreamHandler[Any] = logger.registered_handler  # type: ignore[assignment]
    return handler


# ---- the embedded AWS's Lambda Invoke and EventBridge delivery reach the in-process handlers -----

_STACKS: dict[tuple[str, str], LocalStack] = {}
_MOTO_INVOKE: Any = None
_MOTO_SEND: Any = None


def install_invoke(stack: LocalStack) -> None:
    """Route moto's Lambda Invoke for the stack's functions to their handlers here (moto
    would start a Docker container; the local stack has none), and let EventBridge deliver
    to them as AWS does: an event-pattern rule invokes its Lambda targets asynchronously; a
    scheduled rule receives no events (moto matches every event to a rule without a pattern,
    and fails on Lambda targets)."""
    global _MOTO_INVOKE, _MOTO_SEND
    from moto.awslambda.models import LambdaBackend
    from moto.events.models import Rule

    if _MOTO_INVOKE is None:
        _MOTO_INVOKE = LambdaBackend.invoke
        LambdaBackend.invoke = _invoke_here  # type: ignore[method-assign,assignment]
    if _MOTO_SEND is None:
        _MOTO_SEND = Rule.send_to_targets
        Rule.send_to_targets = _send_to_targets_here  # type: ignore[method-assign,assignment]
    _STACKS[(ACCOUNT, REGION)] = stack


def uninstall_invoke(stack: LocalStack) -> None:
    if _STACKS.get((ACCOUNT, REGION)) is stack:
        del _STACKS[(ACCOUNT, REGION)]


def _send_to_targets_here(rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
    if (rule.account_id, rule.region_name) not in _STACKS:
        _MOTO_SEND(rule, event, transform_input)
        return
    if rule.scheduled_expression or rule.state != "ENABLED":
        return
    if not rule.event_pattern.matches_event(event):
        return
    functions = [t for t in rule.targets if ":lambda:" in t["Arn"]]
    others = [t for t in rule.targets if t not in functions]
    if others:
        rest = copy.copy(rule)
        rest.targets = others
        _MOTO_SEND(rest, event, transform_input)
    if not functions:
        return
    from moto.awslambda.models import lambda_backends

    backend = lambda_backends[rule.account_id][rule.region_name]
    for target in functions:
        payload = target["Input"] if "Input" in target else json.dumps(event)
        backend.invoke(target["Arn"], None, payload, {"X-Amz-Invocation-Type": "Event"}, {})


def _invoke_here(
    backend: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> bytes | str | None:
    stack = _STACKS.get((backend.account_id, backend.region_name))
    fn = backend.get_function(function_name, qualifier)  # AWS's not-found error, as moto's
    key = stack.key_of(fn.function_name) if stack is not None else None
    if stack is None or key is None:
        return cast(
            bytes | str | None,
            _MOTO_INVOKE(backend, function_name, qualifier, body, headers, response_headers),
        )
    asked = qualifier or _qualifier_in(function_name)
    version = stack.pick_version(key, asked)
    event = json.loads(body) if body else {}

    def run() -> bytes:
        try:
            result = stack.handler(key, version)(event)
        except Exception as e:  # an unhandled error: Lambda's error payload
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {"errorMessage": str(e), "errorType": type(e).__name__, "stackTrace": []}
            ).encode()
        return json.dumps(result).encode()

    if (headers.get("X-Amz-Invocation-Type") or "RequestResponse") == "Event":
        threading.Thread(target=run, name=f"invoke-{key}", daemon=True).start()
        return b""
    payload = run()
    response_headers["x-amz-executed-version"] = version
    response_headers["Content-Length"] = str(len(payload))
    return payload


def _qualifier_in(function_name: str) -> str | None:
    """`name:qualifier` or `arn:...:function:name:qualifier` → qualifier."""
    tail = function_name.split(":function:")[-1]
    return tail.split(":", 1)[1] if ":" in tail else None
