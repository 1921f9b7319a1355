"""The rollout as CloudWatch metrics, put by the autopilot on each tick, so the dashboard can
draw the alias weights and the autopilot's step over time (CloudWatch has no metric of an
alias's routing weights of its own).

Per tick, in the functions' namespace with the stage's `service` dimension:
- `AliasWeight` (percent) per `FunctionName` and `FunctionVersion`: each version's share of
  the alias; a version no longer routed to gets 0 once, so its line ends at 0;
- `CandidateWeight` (percent) per `FunctionName`: the canary's share (0 with no canary);
- `AutopilotRunning` (0/1) and `AutopilotHeldMinutes` (how long the step has held) per
  `FunctionName`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def rollout_metrics(
    function: str,
    weights: Mapping[str, float],
    status: Mapping[str, Any],
    *,
    service: str,
    previous_versions: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The metric data of one tick: `weights` by function version (fractions) as the alias
    has them (`AliasState.weights`: the stable version first), `status` as `Autopilot.status()` answers, `previous_versions` versions to
    report at 0 weight (the candidate a tick just promoted or rolled back)."""
    fn = {"FunctionName": function, "service": service}

    def datum(name: str, value: float, unit: str, **dims: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Value": float(value),
            "Unit": unit,
            "Dimensions": [{"Name": k, "Value": v} for k, v in (fn | dims).items()],
        }

    # AliasState.weights lists the stable version first, the candidate (if any) second
    candidate = list(weights)[1] if len(weights) > 1 else None
    data = [
        datum("AliasWeight", round(100 * w, 3), "Percent", FunctionVersion=str(v))
        for v, w in sorted(weights.items())
    ]
    data += [
        datum("AliasWeight", 0.0, "Percent", FunctionVersion=str(v))
        for v in previous_versions
        if v not in weights
    ]
    data.append(
        datum(
            "CandidateWeight", round(100 * weights[candidate], 3) if candidate else 0.0, "Percent"
        )
    )
    running = status.get("autopilot") == "running"
    data.append(datum("AutopilotRunning", 1.0 if running else 0.0, "None"))
    if running and status.get("held_minutes") is not None:
        data.append(datum("AutopilotHeldMinutes", float(status["held_minutes"]), "None"))
    return data


def publish_rollout_metrics(
    cloudwatch: Any,
    namespace: str,
    function: str,
    status: Mapping[str, Any],
    *,
    service: str,
    previous_versions: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Put one tick's rollout metrics (`status` from `Autopilot.status()`, which holds the
    alias weights); returns what was put."""
    weights = {str(k): float(v) for k, v in (status.get("weights") or {}).items()}
    data = rollout_metrics(
        function, weights, status, service=service, previous_versions=previous_versions
    )
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    return data
