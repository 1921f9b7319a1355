"""The whole system on one machine: a moto server as the embedded AWS, provisioned as the
CDK app would be, the real handlers loaded per function version, and an API Gateway
emulator on loopback that routes each request by the alias weights stored in moto."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import secrets
import threading
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO, cast

from avsev.constants import LIVE_ALIAS, METRICS_NAMESPACE
from avsev.local.aws import (
    ACCOUNT,
    ALARMS,
    BUCKET,
    FAKE_CREDENTIALS,
    FUNCTIONS,
    REGION,
    STATE_FILE,
    TOPIC,
    read_state,
    use_endpoint,
)
from avsev.local.aws import client as _client
from avsev.local.dashboard import Traffic
from avsev.local.gateway import serve
from avsev.local.lambda_runtime import LocalContext, load_handler_module
from avsev.local.logs import EmfForwarder, FirehoseBuffer, LogRouter, Sink, stdout_of_this_thread
from avsev.serving.bundle import read_card
from avsev.serving.records import set_sink
from avsev.serving.routes import ALIASED

__all__ = [
    "ACCOUNT",
    "ALARMS",
    "BUCKET",
    "FUNCTIONS",
    "REGION",
    "STATE_FILE",
    "LocalStack",
    "read_state",
    "use_endpoint",
]

INVOKE_LOCK = threading.RLock()
"""One invocation at a time in this process: each Lambda container is single-threaded, and
the handlers share Powertools' Metrics singleton here."""


@dataclass
class Handler:
    """One function version's handler; what it prints while invoked goes to `stdout` (the
    log router), what other threads print meanwhile does not."""

    module: ModuleType
    function: str
    version: str
    stdout: Sink

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LocalContext(
            function_name=FUNCTIONS[self.function],
            function_version=self.version,
            invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTIONS[self.function]}:live",
        )
        with INVOKE_LOCK, stdout_of_this_thread(self.stdout):
            result: dict[str, Any] = self.module.handler(event, context)
            return result


class LocalStack:
    """Start with `start()`; `base_url` and `api_key` are then what a client uses."""

    def __init__(
        self,
        bundles: Sequence[str | Path],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        console: TextIO | None = None,
    ) -> None:
        if not bundles:
            raise ValueError("at least one model bundle is needed")
        self.bundles = [Path(b).resolve() for b in bundles]
        self.cards = [read_card(b) for b in self.bundles]
        self.host = host
        self.port = port
        self.api_key = secrets.token_urlsafe(24)
        self.console = console
        self.handlers: dict[tuple[str, str], Handler] = {}
        self._moto: Any = None
        self._http: Any = None
        self._flusher: threading.Timer | None = None
        self._stopping = threading.Event()
        self.endpoint = ""
        self.base_url = ""
        self.router: LogRouter | None = None
        self.traffic = Traffic()
        """Invocations per minute by function version, with durations (the dashboard's)."""

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> LocalStack:
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
        self.router = LogRouter(
            FirehoseBuffer(lambda: _client("s3"), BUCKET),
            EmfForwarder(lambda: _client("cloudwatch")),
            console=self.console,
        )
        # the functions' records, written where the router sorts them
        set_sink(cast(TextIO, self.router))
        self._provision()
        self._load_handlers()
        # their log lines too (the Logger's stream is the stdout of when it was created);
        # their metrics are printed during each invocation: see Handler
        self._logger_stream = function_logger().setStream(self.router)
        self._http = serve(self, self.host, self.port)
        self.base_url = f"http://{self.host}:{self._http.server_address[1]}"
        self._schedule_flush()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._flusher:
            self._flusher.cancel()
        if self._http:
            self._http.shutdown()
            self._http.server_close()
        self.flush()
        set_sink(None)
        if getattr(self, "_logger_stream", None) is not None:
            function_logger().setStream(self._logger_stream)
        if self._moto:
            self._moto.stop()
        for key, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        self._flusher = threading.Timer(seconds, self._schedule_flush, args=(seconds,))
        self._flusher.daemon = True
        self._flusher.start()

    # ---- what the CDK app creates ------------------------------------------------------
    def _provision(self) -> None:
        s3, sns, lam, iam, cw = (_client(s) for s in ("s3", "sns", "lambda", "iam", "cloudwatch"))
        s3.create_bucket(Bucket=BUCKET)
        self.topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
        role = iam.create_role(
            RoleName="avsev-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("app.py", "# the real handler runs in the local API emulator\n")
        for key, name in FUNCTIONS.items():
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role["Role"]["Arn"],
                Handler="app.handler",
                Code={"ZipFile": code.getvalue()},
                Architectures=["x86_64"],
            )
            bundles = self.bundles if key in ALIASED else self.bundles[:1]
            for bundle in bundles:
                lam.update_function_configuration(
                    FunctionName=name, Environment={"Variables": {"MODEL_BUNDLE_PATH": str(bundle)}}
                )
                lam.publish_version(
                    FunctionName=name, Description=f"model {read_card(bundle)['version']}"
                )
            if key in ALIASED:
                lam.create_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion="1")
                for alarm in ALARMS:
                    cw.put_metric_alarm(
                        AlarmName=f"avsev-{key}-{alarm}",
                        Namespace=METRICS_NAMESPACE,
                        MetricName=alarm,
                        Statistic="Sum",
                        Period=60,
                        EvaluationPeriods=1,
                        Threshold=1,
                        ComparisonOperator="GreaterThanOrEqualToThreshold",
                    )

    def _load_handlers(self) -> None:
        lam = _client("lambda")
        for key, name in FUNCTIONS.items():
            versions = [
                v["Version"]
                for v in lam.list_versions_by_function(FunctionName=name)["Versions"]
                if v["Version"] != "$LATEST"
            ]
            for version in versions:
                env = lam.get_function_configuration(FunctionName=name, Qualifier=version)[
                    "Environment"
                ]["Variables"]
                self.handlers[(key, version)] = Handler(
                    load_handler_module(key, env), key, version, self._router()
                )

    def _router(self) -> LogRouter:
        if self.router is None:
            raise RuntimeError("the log router is made when the stack starts")
        return self.router

    # ---- routing -----------------------------------------------------------------------
    def pick_version(self, function: str) -> str:
        """The version alias `live` sends this invocation to (random per invocation, as in AWS)."""
        if function not in ALIASED:
            return "1"
        from moto.awslambda.models import lambda_backends

        alias = lambda_backends[ACCOUNT][REGION].get_alias(LIVE_ALIAS, FUNCTIONS[function])
        routing: Any = alias.routing_config or {}  # moto: a dict once weights are set
        weights: dict[str, Any] = routing.get("AdditionalVersionWeights") or {}
        draw = random.random()
        for version, weight in weights.items():
            if draw < float(weight):
                return str(version)
            draw -= float(weight)
        return str(alias.function_version)

    def function_modules(self) -> dict[str, ModuleType]:
        return {key: h.module for (key, _), h in self.handlers.items()}

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        version = self.pick_version(function)
        handler = self.handlers[(function, version)]
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
            "bucket": BUCKET,
            "topic_arn": self.topic_arn,
            "functions": FUNCTIONS,
            "bundles": {str(i + 1): str(b) for i, b in enumerate(self.bundles)},
            "pid": os.getpid(),
        }

    def write_state(self, path: Path = STATE_FILE) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.state(), indent=1))
        return path


def function_logger() -> logging.StreamHandler[Any]:
    """The stream handler of the functions' Powertools Logger (avsev.serving.observability)."""
    from avsev.serving.observability import logger

    handler: logging.StreamHandler[Any] = logger.registered_handler  # type: ignore[assignment]
    return handler
