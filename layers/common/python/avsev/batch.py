"""Batch scoring: files of accidents in, predictions out.

Input: an NTSB export CSV (either column style, read by `avsev.data` chunk by chunk) or
JSON lines of `AccidentReport`. Every row is validated as the API would; valid rows are
scored by the compiled runtime's C batch loop, rejected rows go to a `.rejected.csv` with
their row number and reason. Output rows: ev_id, predicted_severity, prob_* per class,
model_version, scored_at (CSV, or Parquet for a `.parquet` output name).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from avsev.data import DataError, load_frame
from avsev.parquet import read_parquet, write_parquet
from avsev.serving.bundle import Bundle
from avsev.serving.errors import details_from_validation
from avsev.serving.schema import AccidentReport

CHUNK_ROWS = 20_000
OUTPUT_COLUMNS = [
    "ev_id",
    "predicted_severity",
    "prob_fatal",
    "prob_serious",
    "prob_minor",
    "prob_none",
    "model_version",
    "scored_at",
]
REJECTED_COLUMNS = ["row", "ev_id", "reason"]
SNIFF_BYTES = 1 << 16


@dataclass
class Summary:
    source: str
    model_version: str
    rows_read: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    dropped_values: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    invocations: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: Summary) -> None:
        self.rows_read += other.rows_read
        self.scored += other.scored
        self.rejected += other.rejected
        for column, reasons in other.dropped_values.items():
            mine = self.dropped_values.setdefault(column, {})
            for reason, n in reasons.items():
                mine[reason] = mine.get(reason, 0) + n


def file_kind(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "csv"


def _text(stream: IO[bytes]) -> IO[str]:
    """UTF-8 when the start of the file reads as UTF-8, else Latin-1 (the NTSB export's)."""
    head = stream.read(SNIFF_BYTES)
    if not head.strip():
        raise DataError("empty file")
    if b"\x00" in head:
        raise DataError("not a text file (binary content)")
    try:
        head.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as e:
        # a multi-byte character cut at the sniff boundary is still UTF-8
        encoding = "utf-8" if e.start >= len(head) - 3 else "latin-1"
    rest = io.BufferedReader(_Chain(head, stream))  # type: ignore[arg-type]
    return io.TextIOWrapper(rest, encoding=encoding, errors="replace", newline="")


class _Chain(io.RawIOBase):
    """The sniffed head, then the rest of the stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head = head
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass
class Chunk:
    """Rows of one chunk: validated reports (with their 1-based row numbers) and rejects.

    A row is a validated report's field values by name (`vars(report)`: ev_id and every
    field, None where missing), read column by column when scored."""

    rows: list[dict[str, Any]]
    numbers: list[int]
    rejected: list[dict[str, Any]]
    read: int
    dropped: dict[str, dict[str, int]]


def _reason(errors: list[Any]) -> str:
    return "; ".join(
        f"{d.field}: {d.problem}" + (f" (allowed: {d.allowed})" if d.allowed else "")
        for d in details_from_validation(errors)
    )


def _validate(
    rows: list[dict[str, Any]], first_row: int
) -> tuple[list[dict[str, Any]], list[int], list[dict[str, Any]]]:
    good, numbers, rejected = [], [], []
    for i, row in enumerate(rows):
        number = first_row + i
        try:
            report = AccidentReport.model_validate(row)
        except ValidationError as e:
            rejected.append(
                {"row": number, "ev_id": row.get("ev_id"), "reason": _reason(e.errors())}
            )
            continue
        good.append(vars(report))
        numbers.append(number)
    return good, numbers, rejected


def read_chunks(
    stream: IO[bytes], name: str, *, chunk_rows: int = CHUNK_ROWS, skip_rows: int = 0
) -> Iterator[Chunk]:
    """Stream a file as validated chunks, never whole in memory. `skip_rows` data rows are
    passed over (a continuation resumes there)."""
    text = _text(stream)
    if file_kind(name) == "jsonl":
        yield from _jsonl_chunks(text, chunk_rows, skip_rows)
        return
    try:
        reader = pd.read_csv(
            text,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_rows,
            skiprows=range(1, skip_rows + 1) if skip_rows else None,
        )
    except pd.errors.EmptyDataError as e:
        raise DataError("empty file, no header") from e
    first = skip_rows + 1
    for frame in reader:
        loaded = load_frame(frame, path=name, require_label=False, row_offset=first)
        good, numbers, rejected = _validate(loaded.reports(), first)  # (no label in reports)
        yield Chunk(good, numbers, rejected, len(frame), loaded.dropped)
        first += len(frame)


def _jsonl_chunks(text: IO[str], chunk_rows: int, skip_rows: int) -> Iterator[Chunk]:
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    numbers: list[int] = []
    read = 0
    for number, line in enumerate(text, start=1):
        if number <= skip_rows:
            continue
        read += 1
        if line.strip():
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                rejected.append({"row": number, "ev_id": None, "reason": f"not a JSON object: {e}"})
            else:
                good, nums, bad = _validate([doc], number)
                rows += good
                numbers += nums
                rejected += bad
        if read == chunk_rows:
            yield Chunk(rows, numbers, rejected, read, {})
            rows, rejected, numbers, read = [], [], [], 0
    if read:
        yield Chunk(rows, numbers, rejected, read, {})


def score_chunk(bundle: Bundle, chunk: Chunk, scored_at: str) -> pd.DataFrame:
    """The C batch loop over one chunk: rows are encoded column by column into float32 once,
    scored in one call."""
    n = len(chunk.rows)
    if n == 0:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    spec = bundle.spec
    x = spec.encode_rows({s: [r[s] for r in chunk.rows] for s in spec.sources}, n)
    out = bundle.model.predict_buffer(x, n)
    proba = np.frombuffer(out, dtype=np.float32).reshape(n, len(bundle.classes))
    frame = pd.DataFrame({"ev_id": [r["ev_id"] for r in chunk.rows]})
    frame["predicted_severity"] = np.asarray(bundle.classes)[proba.argmax(axis=1)]
    for i, cls in enumerate(bundle.classes):
        frame[f"prob_{cls.lower()}"] = np.round(proba[:, i].astype(float), 6)
    frame["model_version"] = bundle.version
    frame["scored_at"] = scored_at
    return frame[OUTPUT_COLUMNS]


def write_table(frame: pd.DataFrame, path: Path, *, append: bool) -> None:
    if path.suffix == ".parquet":
        if append and path.exists():
            frame = pd.concat([read_parquet(path), frame], ignore_index=True)
        write_parquet(frame, path)
    else:
        frame.to_csv(path, mode="a" if append else "w", header=not append, index=False)


def score_stream(
    bundle: Bundle,
    stream: IO[bytes],
    name: str,
    out: Path,
    rejected_out: Path,
    *,
    scored_at: str,
    chunk_rows: int = CHUNK_ROWS,
    skip_rows: int = 0,
    keep_going: Callable[[int], bool] = lambda chunks: True,
    append: bool = False,
) -> tuple[Summary, bool]:
    """Score a stream into local files; returns the summary and whether the input is done
    (False when `keep_going(chunks done)` said stop: continue from `skip_rows + rows_read`)."""
    summary = Summary(source=name, model_version=bundle.version)
    t0 = time.perf_counter()
    done = True
    chunks = (
        c for c in read_chunks(stream, name, chunk_rows=chunk_rows, skip_rows=skip_rows) if c.read
    )
    chunk = next(chunks, None)
    i = 0
    while chunk is not None:
        write_table(score_chunk(bundle, chunk, scored_at), out, append=append or i > 0)
        pd.DataFrame(chunk.rejected, columns=REJECTED_COLUMNS).to_csv(
            rejected_out,
            mode="a" if (append or i > 0) else "w",
            header=not (append or i > 0),
            index=False,
        )
        summary.add(
            Summary(
                name,
                bundle.version,
                chunk.read,
                len(chunk.rows),
                len(chunk.rejected),
                dropped_values=chunk.dropped,
            )
        )
        i += 1
        chunk = next(chunks, None)  # look ahead: a stop after the last chunk is no stop
        if chunk is not None and not keep_going(i):
            done = False
            break
    if done and summary.rows_read == 0 and not append and skip_rows == 0:
        raise DataError("no data rows")
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary, done


def score_file(
    bundle: Bundle, data: Path, out: Path, *, scored_at: str, chunk_rows: int = CHUNK_ROWS
) -> Summary:
    """Offline (`avsev score`): a local file → output, `.rejected.csv` and `.summary.json`."""
    rejected_out = rejected_path(out)
    with data.open("rb") as f:
        summary, _ = score_stream(
            bundle, f, data.name, out, rejected_out, scored_at=scored_at, chunk_rows=chunk_rows
        )
    summary.outputs = {
        "output": str(out),
        "rejected": str(rejected_out),
        "summary": str(summary_path(out)),
    }
    summary_path(out).write_text(json.dumps(summary.as_dict(), indent=1))
    return summary


def output_name(input_key: str, *, parquet: bool = False) -> str:
    """`batch/in/x/recent.csv` → `recent.csv` (`recent.parquet` when Parquet is asked for)."""
    base = input_key.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem}.parquet" if parquet or base.endswith(".parquet") else f"{stem}.csv"


def rejected_path(out: Path) -> Path:
    return out.with_name(out.name.rsplit(".", 1)[0] + ".rejected.csv")


def summary_path(out: Path) -> Path:
    return out.with_name(out.name.rsplit(".", 1)[0] + ".summary.json")


# ---- S3: one object in, outputs out, split across invocations when it is too big ---------

IN_PREFIX = "batch/in/"
OUT_PREFIX = "batch/out/"
TMP_PREFIX = "batch/tmp/"
INCOMING_PREFIX = "incoming/"


@dataclass
class Job:
    """What one invocation works on (a continuation event carries it to the next)."""

    bucket: str
    key: str
    etag: str
    out_name: str
    scored_at: str
    skip_rows: int = 0
    part: int = 0

    @property
    def stem(self) -> str:
        return self.out_name.rsplit(".", 1)[0]

    def part_key(self, part: int, kind: str) -> str:
        suffix = {
            "output": self.out_name.rsplit(".", 1)[1],
            "rejected": "rejected.csv",
            "summary": "summary.json",
        }[kind]
        return f"{TMP_PREFIX}{self.stem}/{self.etag}/part-{part:05d}.{suffix}"


def final_keys(out_name: str) -> dict[str, str]:
    stem = out_name.rsplit(".", 1)[0]
    return {
        "output": f"{OUT_PREFIX}{out_name}",
        "rejected": f"{OUT_PREFIX}{stem}.rejected.csv",
        "summary": f"{OUT_PREFIX}{stem}.summary.json",
    }


def already_done(s3: Any, job: Job) -> dict[str, Any] | None:
    """The summary of this very input (same ETag) when it was scored before."""
    try:
        body = s3.get_object(Bucket=job.bucket, Key=final_keys(job.out_name)["summary"])[
            "Body"
        ].read()
    except s3.exceptions.NoSuchKey:
        return None
    summary = json.loads(body)
    return summary if summary.get("source_etag") == job.etag else None


def run_part(
    s3: Any,
    bundle: Bundle,
    job: Job,
    workdir: Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
    keep_going: Callable[[int], bool] = lambda chunks: True,
) -> tuple[Summary, Job | None]:
    """Score one part of the object into tmp keys; returns the next job when not done."""
    out = workdir / f"part.{job.out_name.rsplit('.', 1)[1]}"
    rejected = workdir / "part.rejected.csv"
    body = s3.get_object(Bucket=job.bucket, Key=job.key)["Body"]
    summary, done = score_stream(
        bundle,
        body,
        job.key,
        out,
        rejected,
        scored_at=job.scored_at,
        chunk_rows=chunk_rows,
        skip_rows=job.skip_rows,
        keep_going=keep_going,
    )
    for kind, path in (("output", out), ("rejected", rejected)):
        if path.exists():
            s3.upload_file(str(path), job.bucket, job.part_key(job.part, kind))
    s3.put_object(
        Bucket=job.bucket,
        Key=job.part_key(job.part, "summary"),
        Body=json.dumps(summary.as_dict()).encode(),
    )
    if done:
        return summary, None
    return summary, Job(
        job.bucket,
        job.key,
        job.etag,
        job.out_name,
        job.scored_at,
        job.skip_rows + summary.rows_read,
        job.part + 1,
    )


def finish(s3: Any, bundle: Bundle, job: Job, workdir: Path) -> Summary:
    """Join the parts into the final outputs: written under tmp keys, then copied into
    place; the summary (the completion marker) last."""
    total = Summary(
        source=f"s3://{job.bucket}/{job.key}",
        model_version=bundle.version,
        invocations=job.part + 1,
    )
    out = workdir / f"final.{job.out_name.rsplit('.', 1)[1]}"
    rejected = workdir / "final.rejected.csv"
    for path in (out, rejected):
        path.unlink(missing_ok=True)
    for part in range(job.part + 1):
        part_summary = json.loads(
            s3.get_object(Bucket=job.bucket, Key=job.part_key(part, "summary"))["Body"].read()
        )
        total.add(
            Summary(
                **{
                    k: part_summary[k]
                    for k in (
                        "source",
                        "model_version",
                        "rows_read",
                        "scored",
                        "rejected",
                        "dropped_values",
                    )
                }
            )
        )
        total.seconds += part_summary["seconds"]
        for kind, path in (("output", out), ("rejected", rejected)):
            local = workdir / f"p{part}.{kind}"
            try:
                s3.download_file(job.bucket, job.part_key(part, kind), str(local))
            except Exception:  # an empty part has no file
                continue
            frame = (
                read_parquet(local)
                if local_is_parquet(kind, job)
                else pd.read_csv(local, dtype=str, keep_default_na=False)
            )
            if kind == "output":
                write_table(frame, path, append=path.exists())
            else:
                frame.to_csv(
                    path, mode="a" if path.exists() else "w", header=not path.exists(), index=False
                )
    keys = publish(
        s3, job.bucket, out, rejected, job.out_name, staging=f"{TMP_PREFIX}{job.stem}/{job.etag}/"
    )
    total.seconds = round(total.seconds, 3)
    total.outputs = {k: f"s3://{job.bucket}/{v}" for k, v in keys.items()}
    doc = total.as_dict() | {"source_etag": job.etag, "scored_at": job.scored_at}
    s3.put_object(
        Bucket=job.bucket,
        Key=keys["summary"],
        Body=json.dumps(doc, indent=1).encode(),
        ContentType="application/json",
    )
    return total


def publish(
    s3: Any, bucket: str, out: Path, rejected: Path, out_name: str, *, staging: str
) -> dict[str, str]:
    """Put the output and rejects under their final keys: uploaded to a temporary key first,
    then copied into place, so no reader ever sees a half-written file. Empty files are
    written too (a run that scored nothing says so)."""
    if not out.exists():
        write_table(pd.DataFrame(columns=OUTPUT_COLUMNS), out, append=False)
    if not rejected.exists():
        pd.DataFrame(columns=REJECTED_COLUMNS).to_csv(rejected, index=False)
    keys = final_keys(out_name)
    for kind, path in (("output", out), ("rejected", rejected)):
        temporary = f"{staging}final-{Path(keys[kind]).name}"
        s3.upload_file(str(path), bucket, temporary)
        s3.copy_object(
            Bucket=bucket, Key=keys[kind], CopySource={"Bucket": bucket, "Key": temporary}
        )
    return keys


def local_is_parquet(kind: str, job: Job) -> bool:
    return kind == "output" and job.out_name.endswith(".parquet")


def job_from_event(event: dict[str, Any], *, parquet: bool = False) -> Job | None:
    """An S3 "Object Created" event (EventBridge or S3 notification) or a continuation."""
    if "avsev_continuation" in event:
        return Job(**event["avsev_continuation"])
    if event.get("detail-type") == "Object Created":
        detail = event["detail"]
        bucket, key = detail["bucket"]["name"], detail["object"]["key"]
        etag, when = detail["object"].get("etag", ""), event["time"]
    elif event.get("Records"):
        record = event["Records"][0]
        bucket, key = record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
        etag, when = record["s3"]["object"].get("eTag", ""), record["eventTime"]
    else:
        return None
    if not key.startswith(IN_PREFIX) or key.endswith("/"):
        return None
    return Job(bucket, key, etag.strip('"'), output_name(key, parquet=parquet), when)


def error_summary(s3: Any, job: Job, error: Exception, model_version: str) -> dict[str, Any]:
    """A file that cannot be scored: a summary that says why, and no output."""
    doc = Summary(
        source=f"s3://{job.bucket}/{job.key}",
        model_version=model_version,
        status="error",
        error=f"{type(error).__name__}: {error}",
    ).as_dict() | {"source_etag": job.etag}
    s3.put_object(
        Bucket=job.bucket,
        Key=final_keys(job.out_name)["summary"],
        Body=json.dumps(doc, indent=1).encode(),
    )
    return doc


def process(
    s3: Any,
    bundle: Bundle,
    job: Job,
    workdir: Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
    keep_going: Callable[[int], bool] = lambda chunks: True,
) -> tuple[dict[str, Any], Job | None]:
    """One invocation's work on a job: skip it if done, score a part, finish or hand on."""
    done = already_done(s3, job) if job.part == 0 else None
    if done:
        return done | {"status": "already_done"}, None
    try:
        _, following = run_part(
            s3, bundle, job, workdir, chunk_rows=chunk_rows, keep_going=keep_going
        )
        if following is not None:
            return {
                "status": "continuing",
                "next_part": following.part,
                "skip_rows": following.skip_rows,
            }, following
        return finish(s3, bundle, job, workdir).as_dict(), None
    except (DataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        return error_summary(s3, job, e, bundle.version), None


def run_daily(
    s3: Any,
    bundle: Bundle,
    bucket: str,
    at: str,
    workdir: Path,
    *,
    days: int = 30,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Score what arrived under incoming/ in the last `days` days into one dated output."""
    import datetime as dt

    when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    since = when - dt.timedelta(days=days)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=INCOMING_PREFIX
        )
        for o in page.get("Contents", [])
        if since <= o["LastModified"] <= when and not o["Key"].endswith("/")
    ]
    job = Job(
        bucket, ",".join(sorted(keys)), f"daily-{when.date()}", f"daily-{when.date()}.csv", at
    )
    out, rejected = workdir / "daily.csv", workdir / "daily.rejected.csv"
    for path in (out, rejected):
        path.unlink(missing_ok=True)
    total = Summary(
        source=f"s3://{bucket}/{INCOMING_PREFIX} ({len(keys)} files, {days} days)",
        model_version=bundle.version,
    )
    errors = []
    for key in sorted(keys):
        try:
            summary, _ = score_stream(
                bundle,
                s3.get_object(Bucket=bucket, Key=key)["Body"],
                key,
                out,
                rejected,
                scored_at=at,
                chunk_rows=chunk_rows,
                append=out.exists(),
            )
            total.add(summary)
        except (DataError, pd.errors.ParserError, ValueError) as e:
            errors.append(f"{key}: {e}")
    keys_out = publish(s3, bucket, out, rejected, job.out_name, staging=f"{TMP_PREFIX}{job.stem}/")
    total.outputs = {k: f"s3://{bucket}/{v}" for k, v in keys_out.items()}
    doc = total.as_dict() | {"files": sorted(keys), "file_errors": errors, "scored_at": at}
    s3.put_object(Bucket=bucket, Key=keys_out["summary"], Body=json.dumps(doc, indent=1).encode())
    return doc
