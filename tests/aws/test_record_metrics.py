"""The serving metrics come from the record lines: the local log router applies the metric
filters of a function's log group (`avsev.monitoring.record_metrics`, as the template has
them) to what the handlers print, and the metrics are what the handlers' EMF documents used
to say — predictions counted by rows and by class, the model time — with no EMF document
in the log for an answered request."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter

import pytest
from avsev.monitoring.record_metrics import RECORD_METRICS
from avsev.serving import records as record_format
from avsev_tools.local.lambda_runtime import LocalContext, proxy_event
from avsev_tools.local.logs import (
    EmfForwarder,
    FilterPatternError,
    FirehoseBuffer,
    Invoked,
    LoggingConfig,
    LogRouter,
    MetricFilter,
    parse_pattern,
    stdout_of_this_thread,
)
from avsev_tools.verify import REPORT
from lambda_support import load_function

NAMESPACE = "Avsev/avsev-test"


def filters(group: str) -> tuple[MetricFilter, ...]:
    return tuple(
        MetricFilter.from_properties(m.properties(NAMESPACE)) for m in RECORD_METRICS[group]
    )


FILTERS = {"predict": "predictions", "explain": "explanations", "outcomes": "outcomes"}


@pytest.fixture(scope="module")
def handlers(synthetic_bundle_dir):
    with pytest.MonkeyPatch.context() as mp:
        env = {
            "MODEL_BUNDLE_PATH": str(synthetic_bundle_dir),
            # a shadow model scored beside the served one: recorded, never counted
            "SHADOW_BUNDLE_PATH": str(synthetic_bundle_dir),
        }
        return {name: load_function(name, env, mp) for name in FILTERS}


def run(handlers, events):
    """The events through the router, each an invocation of its function with its log
    group's metric filters; the router, what it kept for the streams, and the answers."""
    firehose = FirehoseBuffer(lambda: None, "unused", max_lines=10**9)
    emf = EmfForwarder(lambda: None)
    router = LogRouter(firehose, emf, console=open(os.devnull, "w"))  # noqa: SIM115
    answers = []
    record_format.set_sink(router)
    try:
        for name, event in events:
            ctx = LocalContext(function_version="3", aws_request_id=str(uuid.uuid4()))
            invoked = Invoked(
                LoggingConfig("JSON", "INFO", "WARN"),
                1024,
                version="3",
                request_id=ctx.aws_request_id,
                metric_filters=filters(FILTERS[name]),
            )
            with (
                stdout_of_this_thread(router),
                router.invocation(ctx.log_group_name, function=invoked),
            ):
                out = handlers[name].handler(event, ctx)
            assert out["statusCode"] == 200, out
            answers.append((name, json.loads(out["body"])))
    finally:
        record_format.set_sink(None)
    return router, firehose, emf, answers


def sums(emf: EmfForwarder) -> dict[tuple[str, tuple], tuple[int, float]]:
    """(metric, dimensions) → (sample count, sum) of what is pending for CloudWatch."""
    return {
        (name, dims): (len(values), sum(values))
        for (ns, name, _, dims), values in emf.statistics().items()
        if ns == NAMESPACE
    }


def test_record_lines_give_the_serving_metrics_without_an_emf_document(handlers):
    events = [
        ("predict", proxy_event("POST", "/predict", {**REPORT, "ev_id": f"L{i}"}))
        for i in range(12)
    ]
    events.append(
        (
            "predict",
            proxy_event(
                "POST",
                "/predict/batch",
                {
                    "reports": [
                        {**REPORT, "ev_id": f"B{i}", "weather_condition": w}
                        for i, w in enumerate(["IMC", "VMC"] * 15)
                    ]
                },
            ),
        )
    )
    events += [("explain", proxy_event("POST", "/predict/explain", {**REPORT, "ev_id": "X1"}))] * 2
    events.append(
        (
            "outcomes",
            proxy_event(
                "POST",
                "/outcomes",
                {"outcomes": [{"ev_id": f"L{i}", "actual_severity": "Minor"} for i in range(3)]},
            ),
        )
    )
    router, firehose, emf, answers = run(handlers, events)

    lines = [line for r in firehose._records for line in r.lines]
    predictions, outcomes, _ = record_format.parse_records(lines)
    served = [p for p in predictions if not p.shadow]
    assert len(predictions) == 2 * len(served) == 2 * (12 + 30 + 2)  # each with its shadow
    version = served[0].model_version
    dims = (("ModelVersion", version), ("FunctionVersion", "3"))
    got = sums(emf)

    # Predictions counts rows (a batch of 30 is 30), as the EMF document did
    labels = Counter(
        p["prediction_label"]
        for name, body in answers
        if name == "predict"
        for p in body.get("predictions", [body])
    )
    assert got[("Predictions", dims)] == (42, 42.0)
    for label, n in labels.items():
        assert got[(f"Predicted{label}", dims)] == (n, float(n))
    assert {k[0] for k in got if k[0].startswith("Predicted")} == {f"Predicted{x}" for x in labels}
    # InferenceLatency: one sample per answered prediction, its share of the request's model
    # time; their sum is the model time of the requests (the EMF document's samples' sum)
    count, total = got[("InferenceLatency", dims)]
    predict_records = [p for p in served if p.ev_id != "X1"]  # not the explanations'
    assert count == len(predict_records) == 42
    assert total == pytest.approx(sum(p.latency_ms for p in predict_records))
    batch_rows = [p for p in served if "#" in p.request_id]
    assert len(batch_rows) == 30 and len({p.latency_ms for p in batch_rows}) == 1
    # Explanations: one an explanation; Outcomes: one an outcome (no version on an outcome)
    assert got[("Explanations", dims)] == (2, 2.0)
    assert got[("Outcomes", ())] == (3, 3.0) and len(outcomes) == 3
    # and no EMF document reached the log: the metrics cost no log bytes
    assert router.logged_events["metrics"] == 0 and router.logged_bytes["metrics"] == 0


def test_a_rare_event_keeps_its_emf_metric(handlers):
    """A request answered 4xx has no record; its ValidationErrors metric is still EMF."""
    router = LogRouter(
        FirehoseBuffer(lambda: None, "unused"),
        EmfForwarder(lambda: None),
        console=open(os.devnull, "w"),  # noqa: SIM115
    )
    ctx = LocalContext(function_version="3", aws_request_id=str(uuid.uuid4()))
    with stdout_of_this_thread(router), router.invocation(ctx.log_group_name):
        out = handlers["predict"].handler(
            proxy_event("POST", "/predict", {**REPORT, "latitude": 123}), ctx
        )
    assert out["statusCode"] == 422
    names = {k[1] for k in router.emf.statistics()}
    assert "ValidationErrors" in names and router.logged_events["metrics"] == 1


@pytest.mark.parametrize(
    "pattern",
    [
        '{ $.a = "x" || $.b = "y" }',
        "{ $.latency_ms > 5 }",
        '{ $.a = "x*" }',
        "ERROR",
        '{ $.a != "x" }',
        '{ ($.a = "x") }',
    ],
)
def test_a_pattern_outside_the_local_subset_is_refused(pattern):
    with pytest.raises(FilterPatternError, match="not supported locally; use a JSON pattern"):
        parse_pattern(pattern)


def test_the_subset_matches_as_cloudwatch_logs_does():
    terms = parse_pattern('{ $.record_type = "prediction" && $.shadow IS FALSE && $.x.y = * }')
    doc = {"record_type": "prediction", "shadow": False, "x": {"y": 0}}
    assert all(t.matches(doc) for t in terms)
    for other in (
        {**doc, "shadow": "false"},  # a string is not the boolean
        {**doc, "shadow": None},
        {k: v for k, v in doc.items() if k != "shadow"},
        {**doc, "record_type": "Prediction"},  # exact, case-sensitive
        {**doc, "x": {}},
    ):
        assert not all(t.matches(other) for t in terms), other
    # a dimension whose field is absent is left out; a value that is not a number gives nothing
    f = MetricFilter.from_properties(
        {
            "FilterPattern": '{ $.kind = "a" && $.v = * }',
            "MetricTransformations": [
                {
                    "MetricNamespace": "N",
                    "MetricName": "M",
                    "MetricValue": "$.v",
                    "Dimensions": [{"Key": "D", "Value": "$.d"}],
                }
            ],
        }
    )
    assert f.measure({"kind": "a", "v": 2.5}) == ("N", "M", "None", (), 2.5)
    assert f.measure({"kind": "a", "v": 1, "d": "x"}) == ("N", "M", "None", (("D", "x"),), 1.0)
    assert f.measure({"kind": "a", "v": "slow"}) is None
    with pytest.raises(FilterPatternError, match=r"a `\$.field` of the event"):
        MetricFilter.from_properties(
            {
                "FilterPattern": '{ $.kind = "a" }',
                "MetricTransformations": [
                    {
                        "MetricNamespace": "N",
                        "MetricName": "M",
                        "MetricValue": "1",
                        "Dimensions": [{"Key": "service", "Value": "avsev-prod"}],
                    }
                ],
            }
        )
