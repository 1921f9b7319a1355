"""The stack's Lambda log settings (JSON format, system log level WARN, application log level
INFO) put fewer bytes in CloudWatch Logs than the defaults (Text, nothing filtered) and lose
no record: the handlers' output through the local stack's log router, once per setting."""

from __future__ import annotations

import json
import os
import sys
import uuid

import pytest
from avsev.serving import records as record_format
from avsev_tools.local.lambda_runtime import LocalContext, proxy_event
from avsev_tools.local.logs import (
    EmfForwarder,
    FirehoseBuffer,
    Invoked,
    LoggingConfig,
    LogRouter,
    stdout_of_this_thread,
)
from avsev_tools.verify import REPORT
from conftest import ROOT
from lambda_support import load_function

pytest.importorskip("aws_cdk")
sys.path.insert(0, str(ROOT))


def _stack_config() -> LoggingConfig:
    from infra.constructs.functions import APPLICATION_LOG_LEVEL, LOG_FORMAT, SYSTEM_LOG_LEVEL

    return LoggingConfig.from_properties(
        {
            "LogFormat": LOG_FORMAT.value,
            "SystemLogLevel": SYSTEM_LOG_LEVEL.value,
            "ApplicationLogLevel": APPLICATION_LOG_LEVEL.value,
        }
    )


@pytest.fixture(scope="module")
def handlers(synthetic_bundle_dir):
    with pytest.MonkeyPatch.context() as mp:
        env = {"MODEL_BUNDLE_PATH": str(synthetic_bundle_dir)}
        return {name: load_function(name, env, mp) for name in ("predict", "outcomes")}


def _run(handlers, config: LoggingConfig) -> tuple[LogRouter, FirehoseBuffer, set[str], int]:
    """20 predictions, a batch of 30 and 10 outcomes through the router; the request ids
    answered and the outcomes accepted."""
    firehose = FirehoseBuffer(lambda: None, "unused", max_lines=10**9)
    router = LogRouter(firehose, EmfForwarder(lambda: None), console=open(os.devnull, "w"))  # noqa: SIM115
    events = [
        ("predict", proxy_event("POST", "/predict", {**REPORT, "ev_id": f"L{i}"}))
        for i in range(20)
    ]
    events.append(
        (
            "predict",
            proxy_event(
                "POST",
                "/predict/batch",
                {"reports": [{**REPORT, "ev_id": f"B{i}"} for i in range(30)]},
            ),
        )
    )
    events += [
        (
            "outcomes",
            proxy_event(
                "POST", "/outcomes", {"outcomes": [{"ev_id": f"L{i}", "actual_severity": "Minor"}]}
            ),
        )
        for i in range(10)
    ]
    answered: set[str] = set()
    accepted = 0
    record_format.set_sink(router)  # as the local stack does
    try:
        for name, event in events:
            ctx = LocalContext(function_version="3", aws_request_id=str(uuid.uuid4()))
            invoked = Invoked(config, 1024, version="3", traced=True, request_id=ctx.aws_request_id)
            with (
                stdout_of_this_thread(router),
                router.invocation(ctx.log_group_name, function=invoked),
            ):
                out = handlers[name].handler(event, ctx)
            assert out["statusCode"] == 200, out
            body = json.loads(out["body"])
            if name == "outcomes":
                accepted += body["accepted"]
            else:
                answered |= {p["request_id"] for p in body.get("predictions", [body])}
    finally:
        record_format.set_sink(None)
    return router, firehose, answered, accepted


def test_the_stacks_log_settings_log_less_and_lose_no_record(handlers):
    before, before_stream, answered_before, accepted_before = _run(handlers, LoggingConfig())
    after, after_stream, answered, accepted = _run(handlers, _stack_config())

    for stream, ids, n_outcomes in (
        (before_stream, answered_before, accepted_before),
        (after_stream, answered, accepted),
    ):
        lines = [line for r in stream._records for line in r.lines]
        predictions, outcomes, skipped = record_format.parse_records(lines)
        assert skipped == 0
        assert sorted(p.request_id for p in predictions) == sorted(ids)  # each answer once
        assert len(ids) == 50 and len(outcomes) == n_outcomes == 10

    # the application's lines are the same lines (their sizes differ only by the digits of
    # the latencies and times they carry); Lambda's system lines are gone
    kinds = ("record", "metrics", "other")
    assert {k: after.logged_events[k] for k in kinds} == {k: before.logged_events[k] for k in kinds}
    for k in kinds:
        assert abs(after.logged_bytes[k] - before.logged_bytes[k]) <= 0.01 * before.logged_bytes[k], k
    assert before.logged_events["platform"] == 3 * 31 and after.logged_events["platform"] == 0
    assert sum(after.logged_bytes.values()) < sum(before.logged_bytes.values()) - 31 * 300


def test_an_application_log_level_above_info_would_drop_every_record(handlers):
    """Why the stack's application log level is INFO: record lines carry no level."""
    _, stream, answered, _ = _run(handlers, LoggingConfig("JSON", "WARN", "WARN"))
    assert len(answered) == 50 and stream._records == []
