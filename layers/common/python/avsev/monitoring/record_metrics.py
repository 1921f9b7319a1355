"""The serving metrics the record lines already say, extracted by CloudWatch Logs metric
filters on each function's log group instead of an embedded-metric-format (EMF) document per
invocation: the record line is in the log anyway, and a metric filter costs nothing itself;
the metrics it publishes are custom metrics, priced as any other
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/MonitoringLogData.html,
https://aws.amazon.com/cloudwatch/pricing/). The EMF document (~440 bytes a request, ingested
and stored as log data) is kept only for rare events (ValidationErrors, InternalErrors).

Each `RecordMetric` is one `AWS::Logs::MetricFilter` (one metric transformation each,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-logs-metricfilter.html):

- a JSON filter pattern on the record line, `{ $.record_type = "prediction" && $.shadow IS
  FALSE }` (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html):
  shadow predictions are recorded, never answered, so never counted;
- the value: "1" a record, or a field of the record (`$.latency_ms`); a field taken as the
  value is also in the pattern (`$.latency_ms = *`), as a value taken from a JSON event must
  have been matched (https://docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.aws_logs/MetricFilterProps.html);
- dimensions from fields of the record (ModelVersion ← `$.model_version`, FunctionVersion ←
  `$.function_version`), at most three a filter
  (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_MetricTransformation.html).
  A dimension's value is a field of the log event, never a constant
  (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-logs-metricfilter-dimension.html):
  so the `service` dimension the EMF metrics carry (the stage) cannot be had; the stage is in
  the namespace instead (`namespace`), so two stages in one account stay apart.

Batch (POST /predict/batch) writes one record per row: Predictions and Predicted<Label> count
rows, as the EMF metrics did; InferenceLatency is one sample per answered prediction, the
row's share of its request's model time (`latency_ms` of the record). Its Sum is the model
time, its average the model time per prediction; a batch of 100 adds 100 samples of 1/100 of
the batch's time where the EMF document added one sample of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

from avsev.serving.schema import Severity

SERVED = '$.record_type = "prediction" && $.shadow IS FALSE'
"""A prediction that was answered (a shadow prediction is recorded, never answered)."""
OUTCOME = '$.record_type = "outcome"'
VERSION_DIMENSIONS = {"ModelVersion": "$.model_version", "FunctionVersion": "$.function_version"}
"""The dimensions the rollout alarms and the dashboard read, from the prediction record."""


def namespace(base: str, stage: str) -> str:
    """The metric filters' namespace: the handlers' namespace and the stage (the stack name),
    as a filter's dimensions can only be fields of the record (see the module docstring)."""
    return f"{base}/{stage}"


@dataclass(frozen=True)
class RecordMetric:
    """One metric filter: the metric `name` from the record lines that match `pattern`."""

    name: str
    pattern: str
    """The terms inside `{ ... }`, joined by &&."""
    value: str = "1"
    unit: str = "Count"
    dimensions: dict[str, str] = field(default_factory=dict)

    @property
    def filter_pattern(self) -> str:
        return "{ " + self.pattern + " }"

    def properties(self, metric_namespace: str) -> dict[str, Any]:
        """Its AWS::Logs::MetricFilter's properties (but the log group), as the template has
        them: what the local log router reads (`avsev_tools.local.logs.MetricFilter`)."""
        transformation: dict[str, Any] = {
            "MetricNamespace": metric_namespace,
            "MetricName": self.name,
            "MetricValue": self.value,
            "Unit": self.unit,
        }
        if self.dimensions:
            transformation["Dimensions"] = [
                {"Key": k, "Value": v} for k, v in self.dimensions.items()
            ]
        return {"FilterPattern": self.filter_pattern, "MetricTransformations": [transformation]}


def _predictions() -> tuple[RecordMetric, ...]:
    labels = get_args(Severity)
    return (
        RecordMetric("Predictions", SERVED, dimensions=VERSION_DIMENSIONS),
        *(
            RecordMetric(
                f"Predicted{label}",
                f'{SERVED} && $.predicted = "{label}"',
                dimensions=VERSION_DIMENSIONS,
            )
            for label in labels
        ),
        RecordMetric(
            "InferenceLatency",
            f"{SERVED} && $.latency_ms = *",
            value="$.latency_ms",
            unit="Milliseconds",
            dimensions=VERSION_DIMENSIONS,
        ),
    )


RECORD_METRICS: dict[str, tuple[RecordMetric, ...]] = {
    "predictions": _predictions(),
    "explanations": (RecordMetric("Explanations", SERVED, dimensions=VERSION_DIMENSIONS),),
    "outcomes": (RecordMetric("Outcomes", OUTCOME),),
}
"""The metric filters of a function's log group, by the `FunctionSpec.record_metrics` it names:
predict (served predictions, by class, and their model time), explain (explanations: one
served prediction record each), outcomes (one record an outcome)."""
