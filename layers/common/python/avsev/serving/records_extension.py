"""The records extension (`-c records=extension`): record lines to Firehose without CloudWatch Logs.

A serving function with the extension writes its record lines to a spool file
(`records.emit` → `records.spool_append`, env `RECORDS_SPOOL`) instead of stdout. This module
is a Lambda external extension (its launcher, `layers/records-extension/extensions/
avsev-records`, execs the runtime's Python on it): it registers with the Extensions API for
INVOKE and SHUTDOWN (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html)
and at each event looks at the spool; when it is due (`FlushPolicy`: its size or the age of
its oldest line, and always at SHUTDOWN) it

1. takes the spool (`take`: a rename under the spool's `flock`, so the function's next
   append starts a new file);
2. packs the lines of each record type into Firehose records of at most 1,000 KiB, several
   JSON documents one after another in a record (`pack`): record format conversion reads
   "{"a":1}{"a":2}" as two rows, where a JSON array would fail
   (https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html);
3. puts them with `PutRecordBatch` (at most 500 records and 4 MiB a call,
   https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html) on the
   type's direct delivery stream (env `RECORDS_STREAMS`); records the response reports
   failed (`FailedPutCount`, a `RequestResponses` entry with an `ErrorCode`) are put once
   more, and what fails again is printed to stdout, where the function's log group's
   subscription filter sends it to the CloudWatch Logs stream of its type: nothing is lost;
4. prints the serving metrics of the lines it delivered as embedded-metric-format documents
   (`emf_documents`), the metrics the log group's metric filters would have counted from
   the same lines (`RECORD_METRICS`, evaluated by `avsev.monitoring.metric_filters`: one
   definition), so the dashboard and alarms read the same metrics. Lines that fell back to
   stdout are counted by the metric filters instead, never twice.

What the extension prints reaches the function's log group (Lambda captures an extension's
stdout as the `extension` log type, https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html);
that Lambda passes those JSON lines through unchanged with the JSON log format, as it does the
function's (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html:
a line without "level" is INFO), is what the fallback and the EMF documents rely on, and is
to be checked on a deployed stack.

Why separate delivery streams: the CloudWatch Logs streams decompress subscription payloads,
and such a stream takes records from CloudWatch Logs only ("Only requests from CloudWatch
Logs are supported when CloudWatch Logs decompression is enabled", InvalidSourceException,
https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html); the
extension's streams convert the same JSON to Parquet into the same table prefixes.

The shutdown phase gives external extensions 2,000 ms in all
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html): a flush at
SHUTDOWN stops putting when its deadline (`deadlineMs`) is near and prints the rest to stdout.
Work done after an INVOKE event counts toward that invocation's duration (the invocation ends
when the runtime and every extension have asked for the next event), which is why a flush is
only due every `FlushPolicy.max_seconds` or `max_bytes`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import json
import math
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from avsev import clock
from avsev.monitoring.metric_filters import MetricFilter, MetricPoint
from avsev.monitoring.record_metrics import RECORD_METRICS
from avsev.serving.records import SPOOL_ENV

RECORDS_SPOOL = "/tmp/avsev-records"
"""The spool in the execution environment's /tmp (shared by the function and its extensions)."""
STREAMS_ENV = "RECORDS_STREAMS"
"""JSON: record type ("prediction", "outcome") → the name of its direct delivery stream."""
METRICS_ENV = "RECORDS_METRICS"
"""The function's `RECORD_METRICS` key (predictions, explanations, outcomes)."""
METRICS_NAMESPACE_ENV = "RECORDS_METRICS_NAMESPACE"
"""The metric filters' namespace (`record_metrics.namespace`: the handlers' and the stage)."""
FLUSH_BYTES_ENV = "RECORDS_FLUSH_BYTES"
FLUSH_SECONDS_ENV = "RECORDS_FLUSH_SECONDS"

MAX_RECORD_BYTES = 1_000 * 1024
"""A Firehose record's data: at most 1,000 KiB before base64
(https://docs.aws.amazon.com/firehose/latest/dev/limits.html)."""
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""PutRecordBatch: up to 500 records, 4 MiB a call
(https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html)."""
MAX_EMF_VALUES = 100
"""An EMF metric's values array holds at most 100 values
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)."""
DEFAULT_FLUSH_BYTES = 900 * 1024
"""About 1,200 prediction lines (~755 bytes each): one Firehose record."""
DEFAULT_FLUSH_SECONDS = 10.0
SHUTDOWN_MARGIN_MS = 300
"""At SHUTDOWN, what is left when the deadline is this near goes to stdout instead."""
EXTENSIONS_API = "2020-01-01/extension"


@dataclass(frozen=True)
class FlushPolicy:
    """When a flush is due: the spool holds `max_bytes` or more (its size: one `stat`; the
    lines are not counted at every event), or its oldest line (the first line's record
    `timestamp`, when the request was received) is `max_seconds` old or older."""

    max_bytes: int = DEFAULT_FLUSH_BYTES
    max_seconds: float = DEFAULT_FLUSH_SECONDS

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str] | None = None) -> FlushPolicy:
        env = os.environ if environ is None else environ
        return cls(
            max_bytes=int(env.get(FLUSH_BYTES_ENV) or DEFAULT_FLUSH_BYTES),
            max_seconds=float(env.get(FLUSH_SECONDS_ENV) or DEFAULT_FLUSH_SECONDS),
        )

    def due(self, spool: str, now: dt.datetime | None = None) -> bool:
        """Whether the spool at `spool` should be flushed now (False when it is empty)."""
        try:
            size = os.stat(spool).st_size
        except FileNotFoundError:
            return bool(taken_files(spool))  # left by an earlier flush that did not finish
        if size == 0:
            return False
        if size >= self.max_bytes:
            return True
        oldest = oldest_timestamp(spool)
        if oldest is None:  # no whole first line yet, or not a record: let a flush sort it
            return True
        now = now or clock.now()  # the clock the records were stamped with
        return (now - oldest).total_seconds() >= self.max_seconds


def oldest_timestamp(spool: str) -> dt.datetime | None:
    """The `timestamp` of the spool's first line (the records are appended in time order)."""
    try:
        with open(spool, "rb") as f:
            first = f.readline(64 * 1024)
        doc = json.loads(first)
        return dt.datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def taken_files(spool: str) -> list[str]:
    """Spools taken and not yet finished (oldest first)."""
    return sorted(glob.glob(glob.escape(spool) + ".*.taken"))


def take(spool: str) -> list[str]:
    """Take the spool: rename it under its `flock` (a writer holding the lock finishes its
    line first; one waiting finds the path gone and opens a new file, `spool_append`), then
    return the taken files to flush, with any an earlier flush left behind."""
    try:
        fd = os.open(spool, os.O_RDONLY)
    except FileNotFoundError:
        return taken_files(spool)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size > 0:
            os.rename(spool, f"{spool}.{time.time_ns():020d}.taken")
    finally:
        os.close(fd)
    return taken_files(spool)


def read_lines(paths: Iterable[str]) -> list[str]:
    """The whole lines of taken spool files, in order."""
    out: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            out.extend(line for line in f.read().split("\n") if line.strip())
    return out


def pack(lines: Sequence[str], max_bytes: int = MAX_RECORD_BYTES) -> tuple[list[bytes], list[str]]:
    """Lines packed in order into records of at most `max_bytes`, each line ended by a
    newline (several JSON documents in one record, read as one row each); a line longer than
    a record on its own is returned apart (it goes to stdout)."""
    records: list[bytes] = []
    oversized: list[str] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode() + b"\n"
        if len(data) > max_bytes:
            oversized.append(line)
            continue
        if size + len(data) > max_bytes:
            records.append(b"".join(current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        records.append(b"".join(current))
    return records, oversized


def batches(records: Sequence[bytes]) -> Iterator[list[int]]:
    """Indexes of `records` grouped into PutRecordBatch calls (≤ 500 records, ≤ 4 MiB)."""
    group: list[int] = []
    size = 0
    for i, data in enumerate(records):
        if group and (len(group) == MAX_BATCH_RECORDS or size + len(data) > MAX_BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(i)
        size += len(data)
    if group:
        yield group


class Firehose(Protocol):
    """The part of the Firehose client the extension calls (boto3's `firehose` client, or
    the local stack's stand-in)."""

    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]
    ) -> dict[str, Any]: ...


def put_records(
    firehose: Firehose,
    stream: str,
    records: Sequence[bytes],
    *,
    attempts: int = 2,
    time_left: Callable[[], float] | None = None,
) -> list[int]:
    """Put `records` on `stream`; the indexes of those still failed after `attempts` tries
    (a call that raises fails all of its records). `time_left()` (seconds) stops early at
    SHUTDOWN: what was not put is returned as failed."""
    pending = list(range(len(records)))
    for _ in range(attempts):
        failed: list[int] = []
        for group in batches([records[i] for i in pending]):
            indexes = [pending[j] for j in group]
            if time_left is not None and time_left() <= 0:
                failed.extend(indexes)
                continue
            try:
                response = firehose.put_record_batch(
                    DeliveryStreamName=stream, Records=[{"Data": records[i]} for i in indexes]
                )
            except Exception:  # throttling, network, credentials: all of this call's records
                failed.extend(indexes)
                continue
            if response.get("FailedPutCount", 0):
                answers = response.get("RequestResponses", [])
                failed.extend(
                    i
                    for i, answer in zip(indexes, answers, strict=False)
                    if answer.get("ErrorCode")
                )
        pending = failed
        if not pending:
            break
    return pending


def record_filters(metrics: str, metric_namespace: str) -> tuple[MetricFilter, ...]:
    """The function's metric filters as the template has them (`RecordMetric.properties`)."""
    return tuple(
        MetricFilter.from_properties(m.properties(metric_namespace))
        for m in RECORD_METRICS.get(metrics, ())
    )


def measure(filters: Sequence[MetricFilter], lines: Iterable[str]) -> list[MetricPoint]:
    """The data points the metric filters would give for these lines (one per match)."""
    points: list[MetricPoint] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            points.extend(p for f in filters if (p := f.measure(doc)) is not None)
    return points


def emf_documents(
    filters: Sequence[MetricFilter], points: Sequence[MetricPoint], timestamp_ms: int
) -> list[dict[str, Any]]:
    """The points aggregated into EMF documents, one per namespace and dimension values
    (more when a metric has over 100 values: the values array's limit). A metric whose
    filter publishes a constant (a count) is one value, the sum of its points, so its Sum is
    what the filter's would be; one whose value is a field (`InferenceLatency`) keeps every
    value, so its Sum, SampleCount, Minimum and Maximum are the filter's
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)."""
    constant = {f.name for f in filters if not f.value.startswith("$")}
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], dict[tuple[str, str], list[float]]] = {}
    for namespace, name, unit, dims, value in points:
        groups.setdefault((namespace, dims), {}).setdefault((name, unit), []).append(value)
    docs: list[dict[str, Any]] = []
    for (namespace, dims), metrics in groups.items():
        values = {key: [math.fsum(vs)] if key[0] in constant else vs for key, vs in metrics.items()}
        chunks = max(math.ceil(len(vs) / MAX_EMF_VALUES) for vs in values.values())
        for c in range(chunks):
            part = {
                key: vs[c * MAX_EMF_VALUES : (c + 1) * MAX_EMF_VALUES]
                for key, vs in values.items()
                if vs[c * MAX_EMF_VALUES : (c + 1) * MAX_EMF_VALUES]
            }
            doc: dict[str, Any] = {
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": namespace,
                            "Dimensions": [[k for k, _ in dims]],
                            "Metrics": [{"Name": n, "Unit": u} for n, u in part],
                        }
                    ],
                },
                **dict(dims),
            }
            for (name, _), vs in part.items():
                doc[name] = vs[0] if len(vs) == 1 else vs
            docs.append(doc)
    return docs


@dataclass
class FlushResult:
    """What a flush did: lines put on the streams, lines printed to stdout, EMF documents."""

    delivered: int = 0
    fallback: int = 0
    metric_documents: int = 0
    firehose_records: list[int] = field(default_factory=list)
    """The byte size of each Firehose record put."""


@dataclass
class RecordsExtension:
    """The flush logic, apart from the Extensions API loop (`main`) so that the local stack
    runs the same code at each invocation and at stop."""

    spool: str
    streams: dict[str, str]
    """Record type → delivery stream name."""
    firehose: Firehose
    filters: tuple[MetricFilter, ...] = ()
    policy: FlushPolicy = field(default_factory=FlushPolicy)
    stdout: TextIO | None = None
    """Where fallback lines and EMF documents go (None: `sys.stdout` at the time)."""

    @classmethod
    def from_env(
        cls, firehose: Firehose, environ: dict[str, str] | os._Environ[str] | None = None
    ) -> RecordsExtension:
        env = os.environ if environ is None else environ
        return cls(
            spool=env[SPOOL_ENV],
            streams=dict(json.loads(env[STREAMS_ENV])),
            firehose=firehose,
            filters=record_filters(env.get(METRICS_ENV, ""), env.get(METRICS_NAMESPACE_ENV, "")),
            policy=FlushPolicy.from_env(env),
        )

    def on_event(self, *, shutdown: bool = False, deadline_ms: int | None = None) -> FlushResult:
        """An INVOKE event (flush when due) or SHUTDOWN (flush everything)."""
        if not shutdown and not self.policy.due(self.spool):
            return FlushResult()
        return self.flush(deadline_ms=deadline_ms)

    def flush(self, *, deadline_ms: int | None = None) -> FlushResult:
        """Take the spool and deliver its lines (see the module docstring); `deadline_ms`
        (epoch ms) bounds the puts."""
        paths = take(self.spool)
        if not paths:
            return FlushResult()
        lines = read_lines(paths)
        time_left = (
            None
            if deadline_ms is None
            else lambda: (deadline_ms - SHUTDOWN_MARGIN_MS) / 1e3 - time.time()
        )
        by_type: dict[str, list[str]] = {}
        fallback: list[str] = []
        for line in lines:
            kind = _record_type(line)
            if kind in self.streams:
                by_type.setdefault(kind, []).append(line)
            else:
                fallback.append(line)  # not a record this extension can route: to the log
        result = FlushResult()
        delivered: list[str] = []
        for kind, kind_lines in by_type.items():
            records, oversized = pack(kind_lines)
            fallback.extend(oversized)
            failed = set(
                put_records(self.firehose, self.streams[kind], records, time_left=time_left)
            )
            for i, data in enumerate(records):
                record_lines = data.decode().splitlines()
                if i in failed:
                    fallback.extend(record_lines)
                else:
                    delivered.extend(record_lines)
                    result.firehose_records.append(len(data))
        out = self.stdout or sys.stdout
        docs = emf_documents(self.filters, measure(self.filters, delivered), int(time.time() * 1e3))
        text = "".join(line + "\n" for line in fallback) + "".join(
            json.dumps(d, separators=(",", ":")) + "\n" for d in docs
        )
        if text:
            out.write(text)
            out.flush()
        for path in paths:
            os.remove(path)
        result.delivered, result.fallback, result.metric_documents = (
            len(delivered),
            len(fallback),
            len(docs),
        )
        return result


def _record_type(line: str) -> str | None:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    kind = doc.get("record_type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def _call(api: str, path: str, *, data: bytes | None = None, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        f"http://{api}/{EXTENSIONS_API}/{path}",
        data=data,
        headers=headers,
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(request) as response:
        return response.headers, json.loads(response.read() or b"{}")


def main(name: str, firehose: Firehose | None = None) -> None:
    """Register as extension `name` (its file name under /opt/extensions) for INVOKE and
    SHUTDOWN, then flush at each event until SHUTDOWN
    (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html: POST
    `register` with the `Lambda-Extension-Name` header, then GET `event/next` with the
    `Lambda-Extension-Identifier` it answered, each call blocking until the next event).
    `firehose`: the client to put with (default: boto3's, the runtime's SDK)."""
    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    headers, _ = _call(
        api,
        "register",
        data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
        headers={"Lambda-Extension-Name": name},
    )
    identifier = headers["Lambda-Extension-Identifier"]
    if firehose is None:
        import boto3  # the runtime's AWS SDK (/var/runtime), loaded in the extension only
        from botocore.config import Config

        firehose = boto3.client(
            "firehose",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 2}),
        )
    extension = RecordsExtension.from_env(firehose)
    while True:
        _, event = _call(api, "event/next", headers={"Lambda-Extension-Identifier": identifier})
        if event.get("eventType") == "SHUTDOWN":
            extension.on_event(shutdown=True, deadline_ms=event.get("deadlineMs"))
            return
        try:
            extension.on_event()
        except Exception as e:  # never let a flush error end the extension (and the env)
            print(json.dumps({"level": "ERROR", "message": f"records extension: {e!r}"}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "avsev-records")
