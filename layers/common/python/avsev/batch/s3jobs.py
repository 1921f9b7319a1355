"""One S3 object in, outputs out: split across invocations when it is too big for one.

Each invocation scores a part into staging keys; the last one joins the parts and publishes
the outputs (copied into place, the summary last: it is the completion marker)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import pandas as pd
from botocore.exceptions import ClientError
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config

from avsev.batch.events import Arrivals, arrivals
from avsev.batch.names import IN_PREFIX, OutputKind, OutputName
from avsev.batch.reading import CHUNK_ROWS
from avsev.batch.scoring import (
    OUTPUT_COLUMNS,
    Summary,
    SummaryDoc,
    append_rejected,
    score_stream,
    write_table,
)
from avsev.data import DataError
from avsev.parquet import read_parquet
from avsev.serving.bundle import Bundle


@with_config(ConfigDict(strict=True, extra="forbid"))
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
    sent_key: str = ""
    """The key as the event sent it, when it differs from `key` (URL-decoded): tried when
    no object has the decoded key."""

    @property
    def names(self) -> OutputName:
        return OutputName.of_output(self.out_name)

    def part_key(self, part: int, kind: OutputKind) -> str:
        return self.names.part_key(self.etag, part, kind)

    def continued(self, rows_read: int) -> Job:
        """The next part: the rows after those read so far."""
        return Job(
            self.bucket,
            self.key,
            self.etag,
            self.out_name,
            self.scored_at,
            self.skip_rows + rows_read,
            self.part + 1,
        )

    def at_key(self, key: str, etag: str) -> Job:
        """The same job on the object found at `key` (with the ETag S3 gives), its outputs
        named after that key."""
        out_name = (
            self.out_name
            if key == self.key
            else OutputName.for_input(key, parquet=self.names.parquet).output
        )
        return Job(self.bucket, key, etag or self.etag, out_name, self.scored_at)

    def as_event(self) -> dict[str, Any]:
        return {"avsev_continuation": asdict(self)}


class ObjectGone(LookupError):
    """The input named by the event is not in the bucket (deleted before the run)."""


class PartsMissing(LookupError):
    """A continuation whose earlier parts are not staged: the run cannot be joined."""


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey")


class Continuing(TypedDict):
    """An invocation that scored one part and handed the rest to the next (its event)."""

    status: Literal["continuing"]
    next_part: int
    skip_rows: int


def already_done(s3: Any, job: Job) -> SummaryDoc | None:
    """The summary of this very input (same ETag) when it was scored before; None for a job
    that names no ETag (which version it means is unknown until S3 is asked)."""
    if not job.etag:
        return None
    try:
        body = s3.get_object(Bucket=job.bucket, Key=job.names.final_keys()["summary"])[
            "Body"
        ].read()
    except ClientError as e:
        if _missing(e):
            return None
        raise
    summary: SummaryDoc = json.loads(body)
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
    """Score one part of the object into staging keys; returns the next job when not done."""
    out = workdir / f"part.{job.names.suffix}"
    rejected = workdir / "part.rejected.csv"
    try:
        body = s3.get_object(Bucket=job.bucket, Key=job.key)["Body"]
    except ClientError as e:
        if _missing(e):  # a later part: the input went between two invocations
            gone = f"s3://{job.bucket}/{job.key} was deleted while it was scored"
            raise ObjectGone(gone) from None
        raise
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
    return summary, None if done else job.continued(summary.rows_read)


def finish(s3: Any, bundle: Bundle, job: Job, workdir: Path) -> Summary:
    """Join the parts into the final outputs and publish them, the summary last."""
    total = Summary(
        source=f"s3://{job.bucket}/{job.key}",
        model_version=bundle.version,
        invocations=job.part + 1,
    )
    out = workdir / f"final.{job.names.suffix}"
    rejected = workdir / "final.rejected.csv"
    for path in (out, rejected):
        path.unlink(missing_ok=True)
    for part in range(job.part + 1):
        try:
            body = s3.get_object(Bucket=job.bucket, Key=job.part_key(part, "summary"))["Body"]
        except ClientError as e:
            if _missing(e):
                raise PartsMissing(
                    f"part {part} of s3://{job.bucket}/{job.key} is not staged (expired, or the "
                    "continuation does not match a run); upload the file again"
                ) from None
            raise
        doc = json.loads(body.read())
        part_summary = Summary.counts_of(doc)
        total.add(part_summary)
        total.seconds += part_summary.seconds
        for kind, path in (("output", out), ("rejected", rejected)):
            local = workdir / f"p{part}.{kind}"
            try:
                s3.download_file(job.bucket, job.part_key(part, kind), str(local))
            except ClientError as e:
                if _missing(e):  # a part that read no rows wrote no file
                    continue
                raise
            if kind == "output":
                frame = (
                    read_parquet(local)
                    if job.names.parquet
                    else pd.read_csv(local, dtype=str, keep_default_na=False)
                )
                write_table(frame, path, append=path.exists())
            else:
                frame = pd.read_csv(local, dtype=str, keep_default_na=False)
                append_rejected(frame.to_dict("records"), path, append=path.exists())
    keys = publish(s3, job.bucket, out, rejected, job.names, staging=job.names.staging(job.etag))
    total.seconds = round(total.seconds, 3)
    total.outputs = {k: f"s3://{job.bucket}/{v}" for k, v in keys.items()}
    doc = total.as_dict()
    doc |= {"source_etag": job.etag, "scored_at": job.scored_at}
    s3.put_object(
        Bucket=job.bucket,
        Key=keys["summary"],
        Body=json.dumps(doc, indent=1).encode(),
        ContentType="application/json",
    )
    return total


def publish(
    s3: Any, bucket: str, out: Path, rejected: Path, names: OutputName, *, staging: str
) -> dict[OutputKind, str]:
    """Put the output and rejects under their final keys: uploaded to a temporary key first,
    then copied into place, so no reader ever sees a half-written file. Empty files are
    written too (a run that scored nothing says so)."""
    if not out.exists():
        write_table(pd.DataFrame(columns=OUTPUT_COLUMNS), out, append=False)
    if not rejected.exists():
        append_rejected([], rejected, append=False)
    keys = names.final_keys()
    for kind, path in (("output", out), ("rejected", rejected)):
        temporary = f"{staging}final-{Path(keys[kind]).name}"
        s3.upload_file(str(path), bucket, temporary)
        s3.copy_object(
            Bucket=bucket, Key=keys[kind], CopySource={"Bucket": bucket, "Key": temporary}
        )
    return keys


class NotAJob(ValueError):
    """An event of a shape the batch function does not read."""


_CONTINUATION = TypeAdapter(Job)
"""A continuation event's job, checked field by field (the function's own events)."""


MAX_KEY_BYTES = 1024
"""S3's longest key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html)."""


LONGEST_ETAG = "0" * 32 + "-10000"
"""The longest ETag an object has: a multipart upload's (MD5 of the parts' MD5s, a dash,
up to 10,000 parts)."""


def _input_problem(key: str) -> str | None:
    """Why an object is no batch input, or None when it is one."""
    if not key.startswith(IN_PREFIX) or key.endswith("/"):
        return f"{key[:200]!r} is not a file under {IN_PREFIX}"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return f"{key[:200]!r} is not UTF-8 text, so no S3 key"
    return None


def _job_problem(job: Job, bucket: str | None) -> str | None:
    """Why a job cannot run here: not an input, another bucket, or a name too long for the
    keys of its outputs and staged parts (which repeat the input's name)."""
    if problem := _input_problem(job.key):
        return problem
    if bucket and job.bucket != bucket:
        return f"bucket {job.bucket[:100]!r} is not the batch bucket"
    names, etag = job.names, LONGEST_ETAG
    longest = max(
        len(k.encode("utf-8"))
        for k in (
            *names.final_keys().values(),
            names.part_key(etag, 99_999, "rejected"),
            f"{names.staging(etag)}final-{names.name('rejected')}",
        )
    )
    if longest > MAX_KEY_BYTES:
        return (
            f"{job.key[:100]!r}...: its outputs' keys would be {longest} bytes, "
            f"more than S3's {MAX_KEY_BYTES}"
        )
    return None


def jobs_from_event(
    event: Any, *, parquet: bool = False, bucket: str | None = None
) -> tuple[list[Job], Arrivals]:
    """The jobs an event asks for: a continuation, or the objects it announces under
    `batch/in/` of `bucket` (any bucket when None; see `avsev.batch.events` for the shapes
    read), and what it announced (objects that are not inputs among its `skipped`).
    Raises `NotAJob` for a continuation that does not name a job."""
    if isinstance(event, dict) and "avsev_continuation" in event:
        try:  # as the JSON it came in: strict types, a dict for the job
            job = _CONTINUATION.validate_json(json.dumps(event["avsev_continuation"]))
        except (ValidationError, TypeError, ValueError) as e:
            raise NotAJob(f"avsev_continuation: not a job ({e})") from None
        problem = _job_problem(job, bucket)
        if problem:
            raise NotAJob(f"avsev_continuation: {problem}")
        return [job], Arrivals()
    found = arrivals(event)
    jobs = []
    for o in found.objects:
        job = Job(
            o.bucket,
            o.key,
            o.etag,
            OutputName.for_input(o.key, parquet=parquet).output,
            o.time,
            sent_key=o.sent_key if o.sent_key != o.key else "",
        )
        if problem := _job_problem(job, bucket):
            found.skipped.append(problem)
        else:
            jobs.append(job)
    return jobs, found


def locate(s3: Any, job: Job) -> Job:
    """The job on the object as it is now: at its decoded key, else at the key as sent
    (an object whose name merely looks encoded), with the ETag S3 gives. Raises
    `ObjectGone` when neither exists."""
    for key in (job.key, job.sent_key):
        if not key:
            continue
        try:
            head = s3.head_object(Bucket=job.bucket, Key=key)
        except ClientError as e:
            if _missing(e):
                continue
            raise
        return job.at_key(key, str(head.get("ETag", "")).strip('"'))
    raise ObjectGone(f"s3://{job.bucket}/{job.key} does not exist (deleted before the run?)")


def error_summary(s3: Any, job: Job, error: Exception, model_version: str) -> SummaryDoc:
    """A file that cannot be scored: a summary that says why, and no output."""
    doc = Summary(
        source=f"s3://{job.bucket}/{job.key}",
        model_version=model_version,
        status="error",
        error=f"{type(error).__name__}: {error}",
    ).as_dict()
    doc["source_etag"] = job.etag
    s3.put_object(
        Bucket=job.bucket,
        Key=job.names.final_keys()["summary"],
        Body=json.dumps(doc, indent=1).encode(),
    )
    return doc


UNREADABLE_INPUT = (
    DataError,
    pd.errors.ParserError,
    UnicodeDecodeError,
    ValueError,
    ObjectGone,
    PartsMissing,
)
"""What a file that cannot be scored raises (it gets an error summary, not a retry)."""


def process(
    s3: Any,
    bundle: Bundle,
    job: Job,
    workdir: Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
    keep_going: Callable[[int], bool] = lambda chunks: True,
) -> tuple[SummaryDoc | Continuing, Job | None]:
    """One invocation's work on a job: skip it if done, score a part, finish or hand on."""
    try:
        if job.part == 0:
            done = already_done(s3, job)  # before looking: a scored input may be gone since
            if not done:
                found = locate(s3, job)
                done = already_done(s3, found) if found.etag != job.etag else None
                job = found
            if done:
                done["status"] = "already_done"
                return done, None
        _, following = run_part(
            s3, bundle, job, workdir, chunk_rows=chunk_rows, keep_going=keep_going
        )
        if following is not None:
            return Continuing(
                status="continuing", next_part=following.part, skip_rows=following.skip_rows
            ), following
        return finish(s3, bundle, job, workdir).as_dict(), None
    except UNREADABLE_INPUT as e:
        return error_summary(s3, job, e, bundle.version), None
