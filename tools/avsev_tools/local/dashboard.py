"""The local stack's dashboard: `GET /dashboard` (a self-contained page, no CDN) drawn from
`GET /_local/dashboard.json` — the alias weights and the autopilot's step, requests per minute
and latency p50/p95 by version, the latest A/B decision with its confidence intervals, and
drift per feature. The panels of the deployed stack's CloudWatch dashboard, for the laptop.

Requests and latencies are tallied in process as the local API gateway invokes the functions
(what API Gateway and Lambda count in AWS); weights, autopilot, A/B and drift are read from
the embedded AWS, as the CLI reads them."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from avsev import clock
from avsev.serving.card import Card

from avsev_tools.local.aws import client

if TYPE_CHECKING:
    from avsev.rollout.lifecycle import LifecycleSummary

WINDOW_MINUTES = 15
"""Minutes the traffic panels show."""
KEEP_MINUTES = 60
"""Minutes of tallies kept in memory."""
HISTORY = 6
"""Latest alias changes (the rollout audit) the page lists."""
DRIFT_DISTANCE_THRESHOLD = 0.1
"""A distance (Wasserstein, Jensen-Shannon) at or above this is drift (as the drift job says)."""


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Minute:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class Traffic:
    """Invocations per minute by function and function version, with their durations."""

    def __init__(
        self, keep_minutes: int = KEEP_MINUTES, clock: Callable[[], float] = time.time
    ) -> None:
        self.keep = keep_minutes
        self.clock = clock
        self._lock = threading.Lock()
        self._minutes: dict[tuple[str, str], dict[int, _Minute]] = defaultdict(dict)

    def record(self, function: str, version: str, latency_ms: float, status: int) -> None:
        minute = int(self.clock() // 60)
        with self._lock:
            per = self._minutes[(function, version)]
            m = per.setdefault(minute, _Minute())
            m.requests += 1
            m.errors += status >= 500
            m.latencies_ms.append(latency_ms)
            for old in [k for k in per if k <= minute - self.keep]:
                del per[old]

    def series(self, function: str, minutes: int = WINDOW_MINUTES) -> dict[str, Any]:
        """Per version: requests, 5xx and latency p50/p95 for each of the last `minutes`
        minutes (the current one last), and the same over the whole window."""
        now = int(self.clock() // 60)
        starts = list(range(now - minutes + 1, now + 1))
        out: dict[str, Any] = {
            "minutes": [
                dt.datetime.fromtimestamp(m * 60, dt.UTC).isoformat(timespec="minutes")
                for m in starts
            ],
            "versions": {},
        }
        with self._lock:
            for (fn, version), per in sorted(self._minutes.items()):
                if fn != function:
                    continue
                cells = [per.get(m, _Minute()) for m in starts]
                every = [x for c in cells for x in c.latencies_ms]
                if not every:
                    continue
                out["versions"][version] = {
                    "requests_per_minute": [c.requests for c in cells],
                    "errors_per_minute": [c.errors for c in cells],
                    "p50_ms": [_round(percentile(c.latencies_ms, 50)) for c in cells],
                    "p95_ms": [_round(percentile(c.latencies_ms, 95)) for c in cells],
                    "requests": sum(c.requests for c in cells),
                    "errors": sum(c.errors for c in cells),
                    "window_p50_ms": _round(percentile(every, 50)),
                    "window_p95_ms": _round(percentile(every, 95)),
                }
        return out


class Source(Protocol):
    """What the dashboard reads of the running stack (the local stack is one)."""

    base_url: str
    cards: list[Card]
    traffic: Traffic

    @property
    def functions(self) -> dict[str, str]:
        """Function short name (`predict`) → its name in the embedded AWS."""
        ...

    @property
    def bucket(self) -> str:
        """The data bucket (records, reports, the rollout audit)."""
        ...

    def alarm_prefix(self, function: str = "predict") -> str: ...

    def models(self, function: str = "predict") -> dict[str, str]:
        """Function version → the model version it serves."""
        ...


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _section(build: Callable[[], Any]) -> Any:
    """One panel's data; a panel that cannot be read says why instead of failing the page."""
    try:
        return build()
    except Exception as e:  # the page shows the other panels
        return {"error": f"{type(e).__name__}: {e}"}


def _alias(stack: Source) -> dict[str, Any]:
    from avsev.rollout.aliases import Rollouts, s3_audit_entries

    function = stack.functions["predict"]
    state = Rollouts(
        client("lambda"),
        function,
        cloudwatch=client("cloudwatch"),
        alarm_prefix=stack.alarm_prefix("predict"),
    ).state()
    history = [
        {
            "at": e.get("at"),
            "action": e.get("action"),
            "weights": e.get("after"),
            "outcome": e.get("outcome"),
            "forced": bool(e.get("forced")),
        }
        for e in s3_audit_entries(client("s3"), stack.bucket, function)[-HISTORY:]
    ]
    return {
        "function": function,
        "alias": state.alias,
        "history": history,
        "stable_version": state.stable_version,
        "candidate_version": state.candidate_version,
        "weights": state.weights,
        "model_versions": state.model_versions,
        "alarms": state.alarms,
    }


def _autopilot(stack: Source) -> dict[str, Any]:
    from avsev.rollout.autopilot import autopilot_for

    pilot = autopilot_for(  # on the stack's (simulated) clock: `avsev.clock`
        lambda_client=client("lambda"),
        s3=client("s3"),
        bucket=stack.bucket,
        function=stack.functions["predict"],
    )
    return {k: v for k, v in pilot.status().items() if k != "weights"}  # the alias panel has them


def _ab(stack: Source) -> dict[str, Any] | None:
    from avsev.monitoring.store import latest_ab_report

    report = latest_ab_report(client("s3"), stack.bucket)
    if report is None:
        return None
    out: dict[str, Any] = {
        "decision": report.decision,
        "reason": report.reason,
        "as_of": report.as_of,
        "generated_at": report.generated_at,
        "champion": report.champion,
        "candidate": report.candidate,
    }
    keep = ("weighted_f1", "weighted_f1_ci95", "accuracy", "requests", "labelled")
    out["versions"] = {
        v: s.model_dump(mode="json", include=set(keep)) for v, s in report.versions.items()
    }
    c = report.comparison
    if c:
        out["comparison"] = {
            "accuracy_delta": c.accuracy_delta,
            "accuracy_delta_ci95": c.accuracy_delta_ci95,
            "weighted_f1_delta": c.weighted_f1_delta,
            "weighted_f1_delta_ci95": c.weighted_f1_delta_ci95,
            "always_valid_p": c.always_valid_p,
        }
    return out


def _drift(stack: Source) -> dict[str, Any] | None:
    from avsev.monitoring.store import latest_drift_report

    report = latest_drift_report(client("s3"), stack.bucket)
    if report is None:
        return None
    features = {}
    for name, r in (report.features or {}).items():
        distance = r.p_value is None
        features[name] = {
            "score": r.score,
            "drift": r.drift,
            "test": r.test,
            "statistic": r.statistic,
            "p_value": r.p_value,
            # the score is the distance, or 1 - p for a test: drift at 0.1, or at 1 - α
            "score_threshold": (
                float(r.threshold if r.threshold is not None else DRIFT_DISTANCE_THRESHOLD)
                if distance
                else 1.0 - float(r.threshold if r.threshold is not None else 0.05)
            ),
        }
    return {
        "status": report.status,
        "reason": report.reason,
        "generated_at": report.generated_at,
        "model": report.model.model_dump(),
        "rows": report.rows,
        "dataset_drift": report.dataset_drift,
        "drift_share": report.drift_share,
        "drifted_features": report.drifted_features,
        "features": features,
    }


def _retraining(stack: Source) -> LifecycleSummary:
    from avsev.rollout.lifecycle import Lifecycle

    return Lifecycle(client("s3"), stack.bucket).summary(recent=3)


def snapshot(stack: Source) -> dict[str, Any]:
    """Everything the page draws, read now."""
    traffic = stack.traffic.series("predict")
    models = _section(stack.models)
    for version, v in traffic["versions"].items():
        v["model_version"] = models.get(version)
    return {
        "generated_at": clock.now().isoformat(timespec="seconds"),
        "base_url": stack.base_url,
        "alias": _section(lambda: _alias(stack)),
        "autopilot": _section(lambda: _autopilot(stack)),
        "retraining": _section(lambda: _retraining(stack)),
        "traffic": traffic,
        "ab": _section(lambda: _ab(stack)),
        "drift": _section(lambda: _drift(stack)),
    }


def to_json(data: Any) -> bytes:
    """JSON a browser parses: a non-finite number (a p-value of an empty test) is null."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(data), allow_nan=False, default=str).encode()


@functools.cache
def page() -> bytes:
    """The page: plain HTML, CSS and script, shipped with the package."""
    return importlib.resources.files("avsev_tools.local").joinpath("dashboard.html").read_bytes()
