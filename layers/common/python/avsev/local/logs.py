"""What CloudWatch Logs, the subscription filter, Firehose and EMF extraction do in AWS,
done locally: the handlers' stdout lines are routed — prediction and outcome records to S3
in Firehose's layout and format (Parquet), EMF blobs to CloudWatch metrics, the rest to the console."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from avsev.monitoring.query import write_records_parquet
from avsev.monitoring.tables import partition


class FirehoseBuffer:
    """Buffers record lines and writes them as the stack's delivery streams do: one stream per
    record type, a timestamp prefix `<type>s/dt=YYYY-MM-DD/` (arrival day, UTC), and record
    format conversion to Parquet by the tables' schema (avsev.monitoring.tables)."""

    def __init__(
        self, s3_factory: Callable[[], Any], bucket: str, *, max_lines: int = 2000
    ) -> None:
        self._s3_factory = s3_factory
        self._s3: Any = None
        self.bucket = bucket
        self.max_lines = max_lines
        self._lines: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self.objects_written = 0

    def put(self, record_type: str, line: str) -> None:
        with self._lock:
            self._lines.setdefault(record_type, []).append(line)
            full = sum(len(v) for v in self._lines.values()) >= self.max_lines
        if full:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered; returns the number of lines written."""
        with self._flush_lock:
            with self._lock:
                pending, self._lines = self._lines, {}
            if not pending:
                return 0
            if self._s3 is None:
                self._s3 = self._s3_factory()
            now = dt.datetime.now(dt.UTC)
            written = 0
            for record_type, lines in pending.items():
                table = f"{record_type}s"
                name = f"avsev-local-{table}-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
                with tempfile.TemporaryDirectory(prefix="avsev-firehose-") as folder:
                    path = Path(folder) / name
                    written += write_records_parquet(lines, table, path)
                    self._s3.upload_file(
                        str(path), self.bucket, f"{table}/{partition(now.date())}/{name}"
                    )
                self.objects_written += 1
            return written


class EmfForwarder:
    """Embedded-metric-format blobs → CloudWatch PutMetricData (as Lambda's EMF extraction)."""

    def __init__(self, cloudwatch_factory: Callable[[], Any]) -> None:
        self._factory = cloudwatch_factory
        self._client: Any = None
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def put(self, blob: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(blob)

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        if self._client is None:
            self._client = self._factory()
        # Aggregate per metric and dimensions into statistic sets, as CloudWatch stores them.
        stats: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], list[float]] = {}
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


class LogRouter(io.TextIOBase):
    """A stdout that sorts whole lines: records, EMF metrics, everything else."""

    def __init__(
        self, firehose: FirehoseBuffer, emf: EmfForwarder, console: TextIO | None = None
    ) -> None:
        super().__init__()
        self.firehose = firehose
        self.emf = emf
        self.console = console or sys.__stdout__
        self._partial = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        buffered = getattr(self._partial, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._partial.text = rest
        for line in lines:
            self._route(line)
        return len(text)

    def _route(self, line: str) -> None:
        # Records are serialised with record_type first: route them without parsing.
        for kind in ("prediction", "outcome"):
            if line.startswith(f'{{"record_type":"{kind}"'):
                self.firehose.put(kind, line)
                return
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                record_type = doc.get("record_type")
                if record_type in ("prediction", "outcome"):
                    self.firehose.put(record_type, line)
                    return
                if "_aws" in doc:
                    self.emf.put(doc)
                    return
        if self.console is not None:
            self.console.write(line + "\n")

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
