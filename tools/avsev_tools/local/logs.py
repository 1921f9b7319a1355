"""What CloudWatch Logs, the subscription filter, Firehose, metric filters and EMF extraction
do in AWS, done locally: the handlers' stdout lines are routed — prediction and outcome
records to S3 in Firehose's layout and format (Parquet, and what record format conversion
rejects under `firehose-errors/`), EMF blobs and what the log group's metric filters extract
to CloudWatch metrics, the rest to the console."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from avsev import clock
from avsev.constants import ERRORS_PREFIX
from avsev.monitoring.firehose import (
    FORMAT_CONVERSION_FAILED,
    ConversionError,
    cloudwatch_payload,
    convert_record,
    error_document,
    row_line,
)
from avsev.monitoring.metric_filters import (
    PATTERN_SUBSET,
    FilterPatternError,
    MetricFilter,
    MetricPoint,
    Term,
    parse_pattern,
)
from avsev.monitoring.query import write_records_parquet
from avsev.monitoring.tables import partition

from avsev_tools.local.aws import ACCOUNT

__all__ = [  # the metric filters' evaluation lives in the library (the records extension's too)
    "PATTERN_SUBSET",
    "FilterPatternError",
    "MetricFilter",
    "MetricPoint",
    "Term",
    "parse_pattern",
]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
"""Lambda's log levels, most detailed first
(https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html)."""

SYSTEM_EVENT_LEVELS = {"platform.start": "INFO", "platform.report": "INFO"}
"""The level of the system log events a JSON-format invocation writes, per the log-level page
(platform.start and platform.report are INFO, platform.runtimeDone is DEBUG and not written at
INFO): with SystemLogLevel=WARN none of them reaches CloudWatch Logs, so the per-invocation
START/REPORT lines (and with them the REPORT line's duration and memory) are gone from the log;
Lambda's own metrics (Duration, Invocations, Errors) do not come from these lines."""

EVENT_OVERHEAD_BYTES = 26
"""What CloudWatch Logs counts for each log event beside its message: "the sum of all event
messages in UTF-8, plus 26 bytes for each log event"
(https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html)."""


@dataclass(frozen=True)
class LoggingConfig:
    """A function's LoggingConfig (log format, application and system log levels), as the
    template gives it (https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html).

    Log-level filtering applies to the JSON format only; with it, a line the function writes
    that is a JSON object is filtered by its "level" key, and one without a level (or not JSON)
    counts as INFO (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
    Record lines and EMF blobs carry no level: they are INFO, kept at ApplicationLogLevel INFO
    or more detailed, so the subscription filter still sees every record."""

    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None

    @classmethod
    def from_properties(cls, props: dict[str, Any] | None) -> LoggingConfig:
        """From an AWS::Lambda::Function's `LoggingConfig` property (None: the defaults)."""
        props = props or {}
        fmt = str(props.get("LogFormat", "Text"))
        return cls(
            log_format="JSON" if fmt.upper() == "JSON" else "Text",
            application_log_level=props.get("ApplicationLogLevel"),
            system_log_level=props.get("SystemLogLevel"),
        )

    @property
    def json(self) -> bool:
        return self.log_format == "JSON"

    def keeps_application(self, line: str) -> bool:
        """Whether Lambda sends this line of the function's output to CloudWatch Logs."""
        if not self.json:
            return True
        level = "INFO"
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("level"), str):
                given = doc["level"].upper()
                level = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(given, given)
                if level not in LOG_LEVELS:
                    level = "INFO"
        return _at_least(level, self.application_log_level or "INFO")

    def keeps_system(self, event_type: str) -> bool:
        if not self.json:
            return True
        return _at_least(
            SYSTEM_EVENT_LEVELS.get(event_type, "INFO"), self.system_log_level or "INFO"
        )


def _at_least(level: str, threshold: str) -> bool:
    return LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)


def platform_lines(
    config: LoggingConfig,
    *,
    request_id: str,
    version: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int,
    traced: bool,
    at: dt.datetime | None = None,
) -> list[str]:
    """The system log events Lambda writes for one warm invocation, as CloudWatch Logs holds
    them: in Text format START, END and REPORT (with the X-Ray trace line when traced;
    https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html), in JSON format
    platform.start and platform.report, each kept only at the function's system log level
    (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-logformat.html)."""
    billed = max(1, math.ceil(duration_ms))
    trace = "1-6753a1b2-3c4d5e6f7a8b9c0d1e2f3a4b"
    segment = "5e6f7a8b9c0d1e2f"
    if not config.json:
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {billed} ms\tMemory Size: {memory_mb} MB\t"
            f"Max Memory Used: {max_memory_mb} MB\t"
        )
        if traced:
            report += f"\nXRAY TraceId: {trace}\tSegmentId: {segment}\tSampled: true\t"
        return [
            f"START RequestId: {request_id} Version: {version}",
            f"END RequestId: {request_id}",
            report,
        ]
    stamp = (at or clock.now()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    events: list[tuple[str, dict[str, Any]]] = [
        ("platform.start", {"requestId": request_id, "version": version}),
        (
            "platform.report",
            {
                "requestId": request_id,
                "metrics": {
                    "durationMs": round(duration_ms, 3),
                    "billedDurationMs": billed,
                    "memorySizeMB": memory_mb,
                    "maxMemoryUsedMB": max_memory_mb,
                },
                **(
                    {
                        "tracing": {
                            "spanId": segment,
                            "type": "X-Amzn-Trace-Id",
                            "value": f"Root={trace};Parent={segment};Sampled=1",
                        }
                    }
                    if traced
                    else {}
                ),
                "status": "success",
            },
        ),
    ]
    return [
        json.dumps({"time": stamp, "type": kind, "record": record}, separators=(",", ":"))
        for kind, record in events
        if config.keeps_system(kind)
    ]


@dataclass(frozen=True)
class Invoked:
    """The function an invocation runs, as far as its log is concerned."""

    logging: LoggingConfig
    memory_mb: int
    version: str = "$LATEST"
    traced: bool = False
    request_id: str = "00000000-0000-4000-8000-000000000000"
    metric_filters: tuple[MetricFilter, ...] = ()
    """Its log group's metric filters."""


LOCAL_LOG_GROUP = "/aws/lambda/avsev-local"
LOCAL_LOG_STREAM = "local"
"""Where lines written outside an invocation come from (a CloudWatch Logs payload names one)."""


@dataclass
class FirehoseRecord:
    """One record of a delivery stream: the record lines of one subscription delivery."""

    table: str
    lines: list[str]
    arrival: dt.datetime
    log_group: str = LOCAL_LOG_GROUP
    log_stream: str = LOCAL_LOG_STREAM
    data: bytes | None = None
    """The record as put by PutRecordBatch (the records extension's direct streams)."""

    def raw(self) -> bytes:
        """The record as it arrived: the gzipped CloudWatch Logs payload, or the data put."""
        if self.data is not None:
            return self.data
        return cloudwatch_payload(
            self.lines,
            log_group=self.log_group,
            log_stream=self.log_stream,
            timestamp_ms=_millis(self.arrival),
            owner=ACCOUNT,
            subscription_filter=f"{self.table}-records",
        )


class FirehoseBuffer:
    """Buffers records and writes them as the stack's delivery streams do: one stream per
    record type; record format conversion to Parquet by the tables' schema under
    `<type>s/dt=YYYY-MM-DD/` (the day the oldest record of the object arrived, UTC: "Firehose
    uses the approximate arrival timestamp of the oldest record that's contained in the Amazon
    S3 object being written", https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html); a record
    that fails conversion goes, as it arrived (compressed), under
    `firehose-errors/<type>s/format-conversion-failed/dt=YYYY-MM-DD/`, one error line per
    record (`avsev.monitoring.firehose` has the rules, the layout and the AWS pages).

    A record is one subscription delivery (`put_batch`: the lines of one invocation, see
    `LogRouter.invocation`), so one bad line keeps its whole batch out of the table, as in
    AWS. The stack's streams decompress CloudWatch Logs payloads, so they take records from
    CloudWatch Logs only (a direct PutRecord is refused with InvalidSourceException,
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html); the
    local stack has no Firehose API either (its CloudFormation records the streams without
    creating them): records reach the streams only through the log router."""

    def __init__(
        self, s3_factory: Callable[[], Any], bucket: str, *, max_lines: int = 2000
    ) -> None:
        self._s3_factory = s3_factory
        self._s3: Any = None
        self.bucket = bucket
        self.max_lines = max_lines
        self._records: list[FirehoseRecord] = []
        self._lines = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.objects_written = 0
        self.records_failed = 0

    def put(self, record_type: str, line: str) -> None:
        """One line that arrived on its own (one subscription delivery of one log event)."""
        self.put_batch(record_type, [line])

    def put_batch(
        self,
        record_type: str,
        lines: Sequence[str],
        *,
        log_group: str = LOCAL_LOG_GROUP,
        log_stream: str = LOCAL_LOG_STREAM,
        data: bytes | None = None,
    ) -> None:
        """One subscription delivery: record lines of one type from one log stream (or, with
        `data`, one record put on a direct stream: its lines)."""
        if not lines:
            return
        record = FirehoseRecord(
            f"{record_type}s", list(lines), clock.now(), log_group, log_stream, data
        )
        with self._lock:
            self._records.append(record)
            self._lines += len(record.lines)
            full = self._lines >= self.max_lines
        if full:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; returns the number of lines written to the tables."""
        with self._flush_lock:
            with self._lock:
                pending, self._records, self._lines = self._records, [], 0
            if not pending:
                return 0
            if self._s3 is None:
                self._s3 = self._s3_factory()
            by_table: dict[str, list[FirehoseRecord]] = {}
            for record in pending:
                by_table.setdefault(record.table, []).append(record)
            return sum(self._deliver(table, records) for table, records in by_table.items())

    def _deliver(self, table: str, records: list[FirehoseRecord]) -> int:
        rows: list[str] = []
        converted: list[FirehoseRecord] = []
        failed: list[tuple[FirehoseRecord, ConversionError]] = []
        for record in records:
            try:
                rows.extend(row_line(r) for r in convert_record(record.lines, table))
                converted.append(record)
            except ConversionError as e:
                failed.append((record, e))
        if rows:
            oldest = min(r.arrival for r in converted)
            name = f"avsev-local-{table}-1-{oldest:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
            with tempfile.TemporaryDirectory(prefix="avsev-firehose-") as folder:
                path = Path(folder) / name
                write_records_parquet(rows, table, path)
                self._s3.upload_file(
                    str(path), self.bucket, f"{table}/{partition(oldest.date())}/{name}"
                )
            self.objects_written += 1
        if failed:
            oldest = min(r.arrival for r, _ in failed)
            ended = _millis(clock.now())
            body = "".join(
                error_document(
                    r.raw(), e.code, e.message, arrival_ms=_millis(r.arrival), ended_ms=ended
                )
                + "\n"
                for r, e in failed
            )
            key = (
                f"{ERRORS_PREFIX}{table}/{FORMAT_CONVERSION_FAILED}/{partition(oldest.date())}/"
                f"avsev-local-{table}-1-{oldest:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
            )
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode())
            self.objects_written += 1
            self.records_failed += len(failed)
        return len(rows)


class DirectPut:
    """Firehose's PutRecordBatch for the records extension's direct streams
    (`avsev.serving.records_extension`), handing each record's lines to the stand-in
    (`FirehoseBuffer.put_batch`, one record each, so a line that fails conversion keeps its
    record out of the table as in AWS). The answer has the API's shape: `FailedPutCount`,
    `Encrypted` and one `RequestResponses` entry per record in order, a `RecordId` for one
    put (https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html).
    A record's data is JSON documents one after another, one a line (what the extension
    writes, and what record format conversion reads as one row each,
    https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html)."""

    def __init__(self, firehose: FirehoseBuffer, streams: dict[str, str]) -> None:
        """`streams`: delivery stream name → the record type it takes."""
        self.firehose = firehose
        self.streams = dict(streams)
        self.records_put = 0
        self.bytes_put: list[int] = []
        """The size of each record put (what Firehose bills, rounded up to 5 KB)."""

    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]
    ) -> dict[str, Any]:
        record_type = self.streams.get(DeliveryStreamName)
        if record_type is None:
            raise ValueError(
                f"ResourceNotFoundException: Firehose stream {DeliveryStreamName} not found"
            )
        answers = []
        for record in Records:
            data = record["Data"]
            self.firehose.put_batch(record_type, data.decode().splitlines(), data=data)
            self.records_put += 1
            self.bytes_put.append(len(data))
            answers.append({"RecordId": uuid.uuid4().hex})
        return {"FailedPutCount": 0, "Encrypted": False, "RequestResponses": answers}


def _millis(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


class EmfForwarder:
    """Embedded-metric-format blobs (as Lambda's EMF extraction) and the data points of metric
    filters → CloudWatch PutMetricData."""

    def __init__(self, cloudwatch_factory: Callable[[], Any]) -> None:
        self._factory = cloudwatch_factory
        self._client: Any = None
        self._pending: list[dict[str, Any]] = []
        self._points: list[MetricPoint] = []
        self._lock = threading.Lock()

    def put(self, blob: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(blob)

    def put_point(self, point: MetricPoint) -> None:
        """One data point of a metric filter."""
        with self._lock:
            self._points.append(point)

    def statistics(
        self,
    ) -> dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[float]]:
        """What is pending, by namespace, metric, unit and dimensions: the values."""
        with self._lock:
            return self._aggregate(list(self._pending), list(self._points))

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
            points, self._points = self._points, []
        if not pending and not points:
            return 0
        if self._client is None:
            self._client = self._factory()
        stats = self._aggregate(pending, points)
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for (namespace, name, unit, dims), values in stats.items():
            by_namespace.setdefault(namespace, []).append(
                {
                    "MetricName": name,
                    "Unit": unit,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                    "StatisticValues": {
                        "SampleCount": len(values),
                        "Sum": sum(values),
                        "Minimum": min(values),
                        "Maximum": max(values),
                    },
                }
            )
        for namespace, data in by_namespace.items():
            for i in range(0, len(data), 500):
                self._client.put_metric_data(Namespace=namespace, MetricData=data[i : i + 500])
        return len(stats)

    @staticmethod
    def _aggregate(
        pending: list[dict[str, Any]], points: list[MetricPoint]
    ) -> dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[float]]:
        # Aggregate per metric and dimensions into statistic sets, as CloudWatch stores them.
        stats: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[float]] = {}
        for namespace, name, unit, dims, value in points:
            stats.setdefault((namespace, name, unit, dims), []).append(value)
        for blob in pending:
            for directive in blob["_aws"].get("CloudWatchMetrics", []):
                dims = tuple(
                    (d, str(blob[d]))
                    for group in directive.get("Dimensions", [])
                    for d in group
                    if d in blob
                )
                for m in directive.get("Metrics", []):
                    values: Any = blob.get(m["Name"])
                    key = (directive["Namespace"], m["Name"], m.get("Unit", "None"), dims)
                    stats.setdefault(key, []).extend(
                        float(v) for v in (values if isinstance(values, list) else [values])
                    )
        return stats


class LogRouter(io.TextIOBase):
    """A stdout that sorts whole lines: records, EMF metrics, everything else.

    Records are what the stack's subscription filters pick, `{ $.record_type = "prediction" }`
    (or "outcome"): a JSON pattern matches JSON log events only, so a line that is not JSON
    stays in the log (the console) as in AWS. The record lines of one invocation go to the
    stream as one record (`invocation`), as CloudWatch Logs combines log events into one
    Firehose record; outside an invocation the lines of one write are one record."""

    def __init__(
        self,
        firehose: FirehoseBuffer,
        emf: EmfForwarder,
        console: TextIO | None = None,
        *,
        logging_config: LoggingConfig | None = None,
        metric_filters: Sequence[MetricFilter] = (),
    ) -> None:
        super().__init__()
        self.firehose = firehose
        self.emf = emf
        self.metric_filters = tuple(metric_filters)
        """The log group's metric filters outside an invocation (within one: the function's)."""
        self.console = console or sys.__stdout__
        self.logging_config = logging_config or LoggingConfig()
        """What Lambda drops before CloudWatch Logs (log-level filtering, JSON format only)."""
        self.logged_bytes: Counter[str] = Counter()
        """Bytes that reached the log, by kind (record, metrics, other, platform): each event's
        message in UTF-8 plus CloudWatch Logs' per-event overhead (`EVENT_OVERHEAD_BYTES`)."""
        self.logged_events: Counter[str] = Counter()
        self._partial = threading.local()
        self._batch = threading.local()

    def writable(self) -> bool:
        return True

    @contextlib.contextmanager
    def invocation(
        self,
        log_group: str = LOCAL_LOG_GROUP,
        log_stream: str = LOCAL_LOG_STREAM,
        *,
        function: Invoked | None = None,
    ) -> Iterator[None]:
        """Within: this thread's record lines are collected and handed to the stream at the
        end as one record per type (one subscription delivery from this log stream). With
        `function`, its LoggingConfig filters the lines as Lambda would, and the system lines
        Lambda writes for the invocation (`platform_lines`) are counted at the end."""
        outer = getattr(self._batch, "lines", None)
        if outer is not None:  # nested (a function invoking another in this thread)
            yield
            return
        self._batch.lines = {}
        self._batch.config = function.logging if function else None
        self._batch.filters = function.metric_filters if function else None
        started = time.perf_counter()
        try:
            yield
        finally:
            batch: dict[str, list[str]] = self._batch.lines
            self._batch.lines = None
            self._batch.config = None
            self._batch.filters = None
            for kind, lines in batch.items():
                self.firehose.put_batch(kind, lines, log_group=log_group, log_stream=log_stream)
            if function is not None:
                self.platform(
                    platform_lines(
                        function.logging,
                        request_id=function.request_id,
                        version=function.version,
                        duration_ms=(time.perf_counter() - started) * 1e3,
                        memory_mb=function.memory_mb,
                        max_memory_mb=min(function.memory_mb, 128),
                        traced=function.traced,
                    )
                )

    def write(self, text: str) -> int:
        buffered = getattr(self._partial, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._partial.text = rest
        records: dict[str, list[str]] = {}
        config = getattr(self._batch, "config", None) or self.logging_config
        for line in lines:
            if not config.keeps_application(line):
                continue
            kind = self._route(line)
            if kind is not None:
                records.setdefault(kind, []).append(line)
        batch: dict[str, list[str]] | None = getattr(self._batch, "lines", None)
        for kind, found in records.items():
            if batch is not None:
                batch.setdefault(kind, []).extend(found)
            else:
                self.firehose.put_batch(kind, found)
        return len(text)

    def platform(self, lines: Sequence[str]) -> None:
        """System log lines of an invocation (`platform_lines`): counted, not printed."""
        for line in lines:
            self._meter("platform", line)

    def _meter(self, kind: str, line: str) -> None:
        self.logged_bytes[kind] += len(line.encode()) + EVENT_OVERHEAD_BYTES
        self.logged_events[kind] += 1

    def _route(self, line: str) -> str | None:
        """The record type of a record line (for the stream); other lines are sent on. Every
        JSON line that reaches the log goes through the log group's metric filters."""
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                filters = getattr(self._batch, "filters", None)
                for metric_filter in self.metric_filters if filters is None else filters:
                    point = metric_filter.measure(doc)
                    if point is not None:
                        self.emf.put_point(point)
                record_type = doc.get("record_type")
                if record_type in ("prediction", "outcome"):
                    self._meter("record", line)
                    return str(record_type)
                if "_aws" in doc:
                    self._meter("metrics", line)
                    self.emf.put(doc)
                    return None
        self._meter("other", line)
        if self.console is not None:
            self.console.write(line + "\n")
        return None

    def flush(self) -> None:
        if self.console is not None:
            self.console.flush()


class Sink(Protocol):
    """Where lines are written: a stream, the log router."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ThreadStdout:
    """sys.stdout during one invocation: what the invoking thread writes goes to `target`,
    what any other thread writes goes where it went before (`previous`). Once the invocation
    is over it passes everything on, even if someone kept a reference to it."""

    def __init__(self, previous: TextIO, target: Sink) -> None:
        self.previous = previous
        self.target = target
        self.thread = threading.get_ident()
        self.active = True

    def _stream(self) -> Sink:
        mine = self.active and threading.get_ident() == self.thread
        return self.target if mine else self.previous

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def writelines(self, lines: Iterator[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.previous, name)  # encoding, fileno, isatty... of the real one


@contextlib.contextmanager
def stdout_of_this_thread(target: Sink) -> Iterator[None]:
    """Within: this thread's writes to sys.stdout (print: the handlers' EMF metrics) go to
    `target`; other threads' output is left alone. The Lambda runtime captures an
    invocation's stdout; this captures only the invocation's."""
    previous = sys.stdout
    proxy = ThreadStdout(previous, target)
    sys.stdout = proxy  # type: ignore[assignment]
    try:
        yield
    finally:
        proxy.active = False
        if sys.stdout is proxy:  # unless someone replaced it meanwhile: then theirs stays
            sys.stdout = previous
