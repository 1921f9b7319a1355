"""What a prediction costs: the synthesized template's settings, the per-request inputs measured
on the local stack (`bench/cost.py` → `bench/cost_inputs.json`) and a dated price table
(`avsev_tools/prices.json`, each price with its source page) give the cost per million predictions
and per month at a steady rate, by service, and the rate above which a provisioned alternative
(always-on Fargate tasks behind an Application Load Balancer, running the same compiled model)
costs less.

The model, per request of a route:

- API Gateway: one request at the API type's price (REST or HTTP API);
- Lambda: one request, and the billed duration × memory at the architecture's GB-second
  price; billed duration is the measured handler time scaled to the function's CPU share
  (Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB:
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), rounded up to 1 ms;
- CloudWatch Logs: every byte that reaches the log group (the record lines, the EMF metrics
  of rare events, other lines and Lambda's system lines at the function's log format and
  system log level, each event counted with its 26-byte overhead), ingested once and stored
  for the retention. The serving metrics come from the record lines by metric filters, which
  cost nothing themselves (their metrics are custom metrics, below;
  https://aws.amazon.com/cloudwatch/pricing/);
- Firehose: the record lines of one invocation are one Firehose record, billed rounded up to
  5 KB, and converted to Parquet. CloudWatch Logs sends a subscription's log events to
  Firehose gzipped, several events of a log stream in one record when it batches them
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html), and
  Firehose bills each record in 5 KB increments
  (https://aws.amazon.com/firehose/pricing/); how many events CloudWatch Logs puts in a
  record is not documented, so each invocation's records are taken as a record of their own:
  an upper bound, which is the cost at low rates;
- Athena: the bytes scanned per record by the scheduled jobs;
- X-Ray: traces recorded by the default sampling rule (1 a second, then 5%), when the predict
  function traces actively, or a REST API's stage traces (it samples; the function records
  what it sampled, https://docs.aws.amazon.com/lambda/latest/api/API_TracingConfig.html).

With the records extension (`-c records=extension`, read from the template: the serving
functions' `RECORDS_SPOOL`), the record lines never reach CloudWatch Logs: the extension
(`avsev.serving.records_extension`) puts them on Firehose in flushes of `lines_per_flush`
lines (`ExtensionFlush`: the spool's size limit or `flush_seconds` of traffic at the rate,
whichever comes first, in one warm execution environment), and prints the aggregated EMF
documents of each flush. So per request: CloudWatch Logs ingests the EMF bytes of a flush
over its lines (measured by `bench/cost.py` at flushes of 1 to 1,000 lines); Firehose bills
each record of a flush rounded up to the next 5 KB, over the flush's lines, and converts the
lines' bytes; Lambda's duration adds the spool append and the extension's check at each
event (measured), and a flush's own time over its lines (measured, plus
`PUT_ROUND_TRIP_MS` for the PutRecordBatch call, an assumption).

Fixed costs a month: custom metric series, alarms and dashboards in the template. The
scheduled functions' own runs are left out (a few hundred short runs a month).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsev_tools.local.logs import EVENT_OVERHEAD_BYTES, LoggingConfig, platform_lines

PRICES = Path(__file__).with_name("prices.json")
ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "bench" / "cost_inputs.json"
RATES = (1, 10, 100, 1000)
"""Requests a second for the monthly table."""
GB = 1024**3
FULL_VCPU_MB = 1769
"""Memory at which a function has the equivalent of one vCPU."""
PREDICT = "predict"
REFERENCE_RPS = 100.0
"""The rate the per-route table prices the records extension's flushes at."""
PUT_ROUND_TRIP_MS = 30.0
"""A PutRecordBatch call's round trip from Lambda, per flush (an assumption, not measured)."""
SPOOL_ENV = "RECORDS_SPOOL"
FLUSH_BYTES_ENV = "RECORDS_FLUSH_BYTES"
FLUSH_SECONDS_ENV = "RECORDS_FLUSH_SECONDS"
MAX_RECORD_BYTES = 1000 * 1024
"""A Firehose record's data at most (the extension packs its lines into records this size)."""


@dataclass(frozen=True)
class FunctionSettings:
    name: str
    memory_mb: int
    arch: str
    logging: LoggingConfig
    traced: bool
    retention_days: int | None


@dataclass(frozen=True)
class StackSettings:
    """What the cost depends on in the synthesized template."""

    api: str
    """REST or HTTP."""
    functions: dict[str, FunctionSettings]
    """By function folder name (predict, explain, outcomes, ...)."""
    delivery_streams: int
    schedules: tuple[str, ...]
    alarms: int
    dashboards: int
    api_traced: bool = False
    """A REST API stage with X-Ray tracing on (an HTTP API has none)."""
    records: str = "logs"
    """logs: record lines through CloudWatch Logs; extension: the records extension."""
    flush_bytes: int | None = None
    flush_seconds: float | None = None
    """The extension's flush policy as the template sets it (None: its defaults)."""

    @property
    def traced(self) -> bool:
        """Whether predictions are traced: predict traces actively, or the stage samples."""
        fn = self.functions.get(PREDICT)
        return bool(fn and fn.traced) or self.api_traced


def _function_name(logical_id: str) -> str:
    """`PredictFunction51F85491` → predict, `DriftCheckFunction…` → drift_check."""
    head = logical_id.split("Function")[0]
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in head).lstrip("_")


def settings_from_template(template: Mapping[str, Any]) -> StackSettings:
    """The API type, each function's memory, architecture, LoggingConfig, tracing and log
    retention, the Firehose streams, the schedules, alarms and dashboards of a template."""
    resources: dict[str, Any] = dict(template.get("Resources", {}))
    of_type = lambda kind: {k: r for k, r in resources.items() if r.get("Type") == kind}  # noqa: E731
    retention = {
        k: r.get("Properties", {}).get("RetentionInDays")
        for k, r in of_type("AWS::Logs::LogGroup").items()
    }
    functions = {}
    records = "logs"
    flush: dict[str, str] = {}
    for logical_id, r in of_type("AWS::Lambda::Function").items():
        p = r.get("Properties", {})
        env = (p.get("Environment") or {}).get("Variables") or {}
        if _function_name(logical_id) == PREDICT and env.get(SPOOL_ENV):
            records = "extension"
            flush = {k: str(env[k]) for k in (FLUSH_BYTES_ENV, FLUSH_SECONDS_ENV) if k in env}
        logging_props = p.get("LoggingConfig") or {}
        group = logging_props.get("LogGroup")
        group_id = group.get("Ref") if isinstance(group, dict) else None
        name = _function_name(logical_id)
        functions[name] = FunctionSettings(
            name=name,
            memory_mb=int(p.get("MemorySize", 128)),
            arch=(p.get("Architectures") or ["x86_64"])[0],
            logging=LoggingConfig.from_properties(logging_props),
            traced=(p.get("TracingConfig") or {}).get("Mode") == "Active",
            retention_days=retention.get(group_id) if group_id else None,
        )
    api = (
        "HTTP"
        if of_type("AWS::ApiGatewayV2::Api") and not of_type("AWS::ApiGateway::RestApi")
        else "REST"
    )
    return StackSettings(
        api=api,
        functions=functions,
        delivery_streams=len(of_type("AWS::KinesisFirehose::DeliveryStream")),
        schedules=tuple(
            sorted(
                str(r["Properties"]["ScheduleExpression"])
                for r in of_type("AWS::Events::Rule").values()
                if "ScheduleExpression" in r.get("Properties", {})
            )
        ),
        alarms=len(of_type("AWS::CloudWatch::Alarm")),
        dashboards=len(of_type("AWS::CloudWatch::Dashboard")),
        api_traced=any(
            r.get("Properties", {}).get("TracingEnabled") is True
            for r in of_type("AWS::ApiGateway::Stage").values()
        ),
        records=records,
        flush_bytes=int(flush[FLUSH_BYTES_ENV]) if FLUSH_BYTES_ENV in flush else None,
        flush_seconds=float(flush[FLUSH_SECONDS_ENV]) if FLUSH_SECONDS_ENV in flush else None,
    )


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(path.read_text())
    return prices


def load_inputs(path: Path = INPUTS) -> dict[str, Any]:
    inputs: dict[str, Any] = json.loads(path.read_text())
    return inputs


def billed_ms(handler_ms: float, memory_mb: int) -> int:
    """The measured handler time at the function's CPU share, rounded up to Lambda's 1 ms."""
    return max(1, math.ceil(handler_ms * max(1.0, FULL_VCPU_MB / memory_mb) - 1e-9))


def logged_bytes(route: Mapping[str, Any], fn: FunctionSettings) -> dict[str, float]:
    """Bytes a request of the route puts into CloudWatch Logs, by kind, at the function's
    logging settings: the measured application lines (kept by the application log level) and
    Lambda's system lines (`platform_lines`)."""
    app = route["app_bytes"]
    out = {kind: float(app.get(kind, 0.0)) for kind in ("record", "metrics", "other")}
    level = fn.logging.application_log_level
    if fn.logging.json and level not in (None, "TRACE", "DEBUG", "INFO"):
        out = {kind: 0.0 for kind in out}  # records and metrics are INFO: dropped above it
    lines = platform_lines(
        fn.logging,
        request_id="8f5a0c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
        version="12",
        duration_ms=float(route["handler_ms_p50"]),
        memory_mb=fn.memory_mb,
        max_memory_mb=min(fn.memory_mb, 128),
        traced=fn.traced,
    )
    out["platform"] = float(sum(len(line.encode()) + EVENT_OVERHEAD_BYTES for line in lines))
    return out


@dataclass(frozen=True)
class ExtensionFlush:
    """What one request of a route costs on the records extension's path at a rate."""

    lines_per_flush: int
    emf_bytes: float
    """EMF bytes in the log per request (the flush's over its lines, × lines a request)."""
    firehose_usd: float
    extra_ms: float
    """Lambda time per request beside the handler's: the spool append, the check at each
    event, and the flush's time over its lines."""


def lines_per_flush(
    rps: float, lines_per_request: float, line_bytes: float, flush_bytes: int, flush_s: float
) -> int:
    """Lines a flush holds at `rps` requests a second in one execution environment: the
    traffic of `flush_s` seconds, or what fills `flush_bytes`, whichever is fewer (at least
    one line)."""
    by_time = rps * lines_per_request * flush_s
    by_size = flush_bytes / max(line_bytes, 1.0)
    return max(1, int(min(by_time, by_size)))


def extension_flush(
    route: Mapping[str, Any],
    settings: StackSettings,
    extension: Mapping[str, Any],
    prices: Mapping[str, Any],
    rps: float,
) -> ExtensionFlush:
    """The records extension's share of a request of `route` at `rps` (see the module
    docstring); the measurements of its function (predict's for explain and batch)."""
    functions = extension["functions"]
    measured = functions.get(route["function"]) or functions[PREDICT]
    lines = float(route.get("records_per_request", route.get("rows_per_request", 1)))
    if not lines:
        return ExtensionFlush(0, 0.0, 0.0, 0.0)
    record_bytes = float(route["app_bytes"].get("record", 0.0))
    line_bytes = record_bytes / lines - EVENT_OVERHEAD_BYTES + 1  # the line and its newline
    flush_bytes = settings.flush_bytes or int(extension["flush_bytes"])
    flush_s = settings.flush_seconds or float(extension["flush_seconds"])
    n = lines_per_flush(rps, lines, line_bytes, flush_bytes, flush_s)
    sizes = sorted(int(k) for k in measured["flushes"])
    at = max([k for k in sizes if k <= n] or [sizes[0]])  # the measured flush at or below
    flush = measured["flushes"][str(at)]
    fh = prices["firehose"]
    increment = fh["record_rounding_kb"] * 1024
    data = n * line_bytes
    records = math.ceil(data / MAX_RECORD_BYTES)
    full, rest = divmod(data, MAX_RECORD_BYTES) if records > 1 else (0, data)
    billed = full * math.ceil(MAX_RECORD_BYTES / increment) * increment + (
        math.ceil(rest / increment) * increment if rest else 0
    )
    per_line_usd = (billed / n) / GB * fh["usd_per_gb_ingested"] + line_bytes / GB * fh[
        "usd_per_gb_converted"
    ]
    flush_ms = float(flush["flush_ms"]) / at + PUT_ROUND_TRIP_MS * records / n
    extra = (
        max(0.0, float(measured["handler_ms_p50_spool"]) - float(measured["handler_ms_p50_stdout"]))
        + float(measured["check_ms_p50"])
        + flush_ms * lines
    )
    return ExtensionFlush(
        lines_per_flush=n,
        emf_bytes=float(flush["emf_log_bytes"]) / at * lines,
        firehose_usd=per_line_usd * lines,
        extra_ms=extra,
    )


@dataclass
class RouteCost:
    """USD per request of one route, by service."""

    route: str
    rows: int
    billed_ms: int
    log_bytes: dict[str, float]
    usd: dict[str, float] = field(default_factory=dict)
    lines_per_flush: int | None = None
    """With the records extension: the lines a flush holds at the rate priced."""

    @property
    def total(self) -> float:
        return sum(self.usd.values())


def route_cost(
    route_name: str,
    route: Mapping[str, Any],
    settings: StackSettings,
    prices: Mapping[str, Any],
    athena_bytes_per_record: float,
    extension: Mapping[str, Any] | None = None,
    rps: float = REFERENCE_RPS,
) -> RouteCost:
    """USD per request of a route; with the records extension (the template's, measured in
    `extension`), its flushes priced at `rps`."""
    fn = settings.functions[route["function"]]
    flush = (
        extension_flush(route, settings, extension, prices, rps)
        if settings.records == "extension" and extension
        else None
    )
    handler_ms = float(route["handler_ms_p50"]) + (flush.extra_ms if flush else 0.0)
    billed = billed_ms(handler_ms, fn.memory_mb)
    logs = logged_bytes(route, fn)
    if flush is not None:  # no record line in the log: the flushes' EMF documents instead
        logs["record"] = 0.0
        logs["metrics"] += flush.emf_bytes
    cw = prices["cloudwatch_logs"]
    fh = prices["firehose"]
    api_key = "api_gateway_http" if settings.api == "HTTP" else "api_gateway_rest"
    records = int(route.get("records_per_request", route.get("rows_per_request", 1)))
    record_bytes = float(route["app_bytes"].get("record", 0.0))
    months_kept = (fn.retention_days or 3650) / 30.4
    log_gb = sum(logs.values()) / GB
    usd = {
        "API Gateway": prices[api_key]["usd_per_million_requests"] / 1e6,
        "Lambda requests": prices["lambda_requests"]["usd_per_million_requests"] / 1e6,
        "Lambda duration": prices["lambda_duration"]["usd_per_gb_second"][fn.arch]
        * (fn.memory_mb / 1024)
        * (billed / 1000),
        "CloudWatch Logs": log_gb
        * (
            cw["usd_per_gb_ingested"]
            + cw["stored_fraction_of_ingested"] * cw["usd_per_gb_month_stored"] * months_kept
        ),
        "Firehose + S3": (
            flush.firehose_usd
            if flush is not None
            else (max(record_bytes, fh["record_rounding_kb"] * 1024) / GB)
            * fh["usd_per_gb_ingested"]
            + record_bytes / GB * fh["usd_per_gb_converted"]
            if records
            else 0.0
        ),
        "Athena": records
        * athena_bytes_per_record
        / 1024**4
        * prices["athena"]["usd_per_tb_scanned"],
    }
    return RouteCost(
        route_name,
        int(route.get("rows_per_request", 1)),
        billed,
        logs,
        usd,
        lines_per_flush=flush.lines_per_flush if flush else None,
    )


def xray_traces_per_second(rps: float, prices: Mapping[str, Any]) -> float:
    """Traces the default sampling rule records: the reservoir a second, then the rate."""
    x = prices["xray"]
    reservoir = float(x["reservoir_per_second"])
    return min(rps, reservoir) + float(x["rate"]) * max(0.0, rps - reservoir)


def fixed_monthly(
    settings: StackSettings, inputs: Mapping[str, Any], prices: Mapping[str, Any]
) -> dict[str, float]:
    return {
        "CloudWatch metrics": inputs.get("metric_series", 0)
        * prices["cloudwatch_metrics"]["usd_per_metric_month"],
        "CloudWatch alarms": settings.alarms * prices["cloudwatch_alarms"]["usd_per_alarm_month"],
        "CloudWatch dashboards": settings.dashboards
        * prices["cloudwatch_dashboards"]["usd_per_dashboard_month"],
    }


def monthly(
    predict: RouteCost,
    rps: float,
    settings: StackSettings,
    inputs: Mapping[str, Any],
    prices: Mapping[str, Any],
) -> dict[str, float]:
    """USD a month at `rps` predictions a second, by service (fixed costs included)."""
    seconds = prices["hours_per_month"] * 3600
    out = {k: v * rps * seconds for k, v in predict.usd.items()}
    out["X-Ray"] = (
        xray_traces_per_second(rps, prices)
        * seconds
        * prices["xray"]["usd_per_million_traces"]
        / 1e6
        if settings.traced
        else 0.0
    )
    out.update(fixed_monthly(settings, inputs, prices))
    return out


@dataclass(frozen=True)
class Provisioned:
    """Always-on Fargate tasks (same compiled model behind a small HTTP server) behind an
    ALB: at least `min_tasks` (two Availability Zones), each serving up to `utilization` ×
    1000 / handler-ms requests a second per vCPU; the records go to Firehose directly
    (PutRecordBatch, many lines a record) instead of through CloudWatch Logs."""

    vcpu: float = 1.0
    memory_gb: float = 2.0
    min_tasks: int = 2
    utilization: float = 0.5
    request_bytes: float = 1500.0
    """Request and response bytes through the load balancer (the LCU's processed bytes)."""
    server_ms: float = 1.0
    """A Python HTTP server's own work per request on one core, beside the handler's (an
    assumption, not a measurement)."""

    def describe(self, arch: str) -> str:
        return (
            f"Fargate {arch} tasks of {self.vcpu:g} vCPU / {self.memory_gb:g} GB (at least "
            f"{self.min_tasks}, each at {self.utilization:.0%} of one core) behind an ALB"
        )

    def capacity_rps(self, handler_ms: float) -> float:
        return self.vcpu * self.utilization * 1000.0 / (handler_ms + self.server_ms)

    def monthly(
        self,
        rps: float,
        handler_ms: float,
        record_bytes: float,
        arch: str,
        prices: Mapping[str, Any],
    ) -> dict[str, float]:
        hours = prices["hours_per_month"]
        tasks = max(self.min_tasks, math.ceil(rps / self.capacity_rps(handler_ms)))
        fg = prices["fargate"]
        alb = prices["alb"]
        lcu = max(
            rps * self.request_bytes * 3600 / GB / alb["lcu_gb_per_hour"],
            rps / alb["lcu_rule_evaluations_per_second"],
        )
        seconds = hours * 3600
        return {
            "Fargate": tasks
            * hours
            * (
                self.vcpu * fg["usd_per_vcpu_hour"][arch]
                + self.memory_gb * fg["usd_per_gb_hour"][arch]
            ),
            "ALB": hours * (alb["usd_per_hour"] + lcu * alb["usd_per_lcu_hour"]),
            "Firehose + S3": rps
            * seconds
            * record_bytes
            / GB
            * (
                prices["firehose"]["usd_per_gb_ingested"]
                + prices["firehose"]["usd_per_gb_converted"]
            ),
        }


def crossover(
    serverless: Any,
    provisioned: Any,
    *,
    low: float = 0.01,
    high: float = 100_000.0,
    step: float = 1.01,
) -> float | None:
    """The lowest rate (requests a second) from which on the provisioned alternative costs
    less up to `high`; None if it never does. Both are functions rate → USD a month."""
    rates = []
    r = low
    while r <= high:
        rates.append(r)
        r *= step
    cheaper = [provisioned(r) < serverless(r) for r in rates]
    if not cheaper[-1]:
        return None
    i = len(cheaper) - 1
    while i > 0 and cheaper[i - 1]:
        i -= 1
    return rates[i]


@dataclass
class Estimate:
    settings: StackSettings
    routes: dict[str, RouteCost]
    per_month: dict[float, dict[str, float]]
    provisioned_per_month: dict[float, dict[str, float]]
    crossover_rps: float | None
    alternative: str
    prices_as_of: str
    lines_per_flush: dict[float, int | None] = field(default_factory=dict)
    """With the records extension: the lines a flush of predictions holds at each rate."""
    flush_policy: tuple[int, float] | None = None
    """With the records extension: its flush limits (bytes, seconds) as priced."""


def estimate(
    template: Mapping[str, Any],
    inputs: Mapping[str, Any],
    prices: Mapping[str, Any],
    rates: Sequence[float] = RATES,
    alternative: Provisioned | None = None,
) -> Estimate:
    settings = settings_from_template(template)
    athena = float(inputs.get("athena_bytes_scanned_per_record", 0.0))
    extension = inputs.get("extension")
    if settings.records == "extension" and not extension:
        raise ValueError(
            "the template uses the records extension; its inputs are missing from "
            "bench/cost_inputs.json (`python bench/cost.py --extension-only`)"
        )
    routes = {
        name: route_cost(name, route, settings, prices, athena, extension)
        for name, route in inputs["routes"].items()
    }
    predict = routes[PREDICT]

    def predict_at(rps: float) -> RouteCost:
        """Predict's cost a request at `rps` (the extension's flushes hold more at more)."""
        if settings.records != "extension":
            return predict
        return route_cost(
            PREDICT, inputs["routes"][PREDICT], settings, prices, athena, extension, rps
        )

    alt = alternative or Provisioned()
    arch = settings.functions[PREDICT].arch
    handler_ms = float(inputs["routes"][PREDICT]["handler_ms_p50"])
    record_bytes = float(inputs["routes"][PREDICT]["app_bytes"].get("record", 0.0))

    def serverless_total(rps: float) -> float:
        return sum(monthly(predict_at(rps), rps, settings, inputs, prices).values())

    def provisioned_total(rps: float) -> float:
        return sum(alt.monthly(rps, handler_ms, record_bytes, arch, prices).values())

    return Estimate(
        settings=settings,
        routes=routes,
        per_month={r: monthly(predict_at(r), r, settings, inputs, prices) for r in rates},
        lines_per_flush={r: predict_at(r).lines_per_flush for r in rates},
        flush_policy=(
            (
                settings.flush_bytes or int(extension["flush_bytes"]),
                settings.flush_seconds or float(extension["flush_seconds"]),
            )
            if settings.records == "extension" and extension
            else None
        ),
        provisioned_per_month={
            r: alt.monthly(r, handler_ms, record_bytes, arch, prices) for r in rates
        },
        crossover_rps=crossover(serverless_total, provisioned_total),
        alternative=alt.describe(arch),
        prices_as_of=str(prices.get("as_of", "?")),
    )


def _tracing(settings: StackSettings) -> str:
    fn = settings.functions[PREDICT]
    if fn.traced:
        return "active"
    return "passthrough, sampled by the REST stage" if settings.api_traced else "passthrough"


def _extension_note(e: Estimate) -> list[str]:
    size, seconds = e.flush_policy or (0, 0.0)
    at = ", ".join(f"{n:,} at {r:g}/s" for r, n in e.lines_per_flush.items() if n is not None)
    return [
        f"Records: the records extension (record lines to Firehose, not through CloudWatch "
        f"Logs), a flush every {seconds:g} s or {size / 1024:,.0f} KiB of lines, in one warm "
        f"environment; the route table at {REFERENCE_RPS:g}/s; lines a flush of predictions "
        f"holds: {at}.",
    ]


def render(e: Estimate) -> str:
    """The tables `avsev cost` prints (Markdown)."""
    predict = e.routes[PREDICT]
    fn = e.settings.functions[PREDICT]
    services = list(predict.usd)
    lines = [
        f"Settings: {e.settings.api} API; predict {fn.memory_mb} MB {fn.arch}, log format "
        f"{fn.logging.log_format}, system log level {fn.logging.system_log_level or '-'}, "
        f"application log level {fn.logging.application_log_level or '-'}, retention "
        f"{fn.retention_days} days, tracing {_tracing(e.settings)}; "
        f"{e.settings.delivery_streams} Firehose streams; schedules: {', '.join(e.settings.schedules)}.",
        *(_extension_note(e) if e.settings.records == "extension" else []),
        f"Prices: us-east-1 list prices as of {e.prices_as_of} (avsev_tools/prices.json).",
        "",
        "USD per million requests, by route and service:",
        "",
        "| route | rows | billed ms | log bytes | "
        + " | ".join(services)
        + " | total | per million rows |",
        "|---" * (len(services) + 6) + "|",
    ]
    for r in e.routes.values():
        lines.append(
            f"| {r.route} | {r.rows} | {r.billed_ms} | {sum(r.log_bytes.values()):.0f} | "
            + " | ".join(f"{r.usd[s] * 1e6:.3f}" for s in services)
            + f" | {r.total * 1e6:.3f} | {r.total * 1e6 / max(r.rows, 1):.3f} |"
        )
    rates = list(e.per_month)
    head = list(next(iter(e.per_month.values())))
    lines += [
        "",
        "USD a month at a steady rate of predictions (POST /predict):",
        "",
        "| service | " + " | ".join(f"{r:g}/s" for r in rates) + " |",
        "|---" * (len(rates) + 1) + "|",
    ]
    for s in head:
        lines.append(f"| {s} | " + " | ".join(f"{e.per_month[r][s]:,.2f}" for r in rates) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(f"**{sum(e.per_month[r].values()):,.2f}**" for r in rates)
        + " |"
    )
    lines.append(
        "| per million predictions | "
        + " | ".join(f"{sum(e.per_month[r].values()) / (r * 730 * 3600 / 1e6):,.3f}" for r in rates)
        + " |"
    )
    lines.append(
        "| provisioned alternative | "
        + " | ".join(f"{sum(e.provisioned_per_month[r].values()):,.2f}" for r in rates)
        + " |"
    )
    lines += [
        "",
        f"Provisioned alternative: {e.alternative}; records straight to Firehose.",
        (
            f"It costs less from about {e.crossover_rps:,.0f} predictions a second "
            f"({e.crossover_rps * 730 * 3600 / 1e6:,.0f} million a month)."
            if e.crossover_rps is not None
            else "It never costs less up to 100,000 predictions a second."
        ),
    ]
    return "\n".join(lines)
