"""The rollout audit in S3: the record (one object per entry, append-only) and its index (what
the rollout controller needs of the record, one small object per function), so that reading
the state of a rollout costs the same few requests however long the record has grown.

Layout under `reports/rollout/audit/` (`AUDIT_PREFIX`):

- `<function>/log/<seq, 20 digits>-<action>-<8 hex>.json`: one entry. `seq` is the writer's
  clock in ns, so the keys sort in write order, and "the entries after the index" is one
  `ListObjectsV2` with `StartAfter` (keys are listed in UTF-8 binary order:
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html).
- `<function>/index.json`: the fold of the function's entries up to `last_key`: the autopilot
  run in progress, the alias's last weight change (a start or a step), the versions handed over
  per model (what a follower takes when its leader promotes a model).
- `<stamp>-<function>-<action>-<8 hex>.json` directly under the prefix: entries of the earlier
  layout, still read (the full history, and the index's rebuild), never written.

Reading the index: GET it, then list the log after its `last_key` (normally nothing; it finds an
entry whose writer stopped before it updated the index) and fold what is there. An index that is
missing or of another format (a bucket written by an earlier version) is rebuilt from the whole
record once; a reader that may write stores the rebuilt index.

Writing an entry: PUT the entry, read the index as above (the listing folds the new entry), and
PUT the index back on the condition that it is still the one read (`If-Match` its ETag, or
`If-None-Match: *` when there was none): of two writers at once the later gets 412 Precondition
Failed (or 409 ConditionalRequestConflict) and reads again
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html). An entry whose key sorts
before the index's `last_key` (two writers whose clocks disagree) is not in the listing: its
writer then rebuilds the index from the whole record.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from avsev.constants import AUDIT_PREFIX

STARTED = "autopilot-start"
ENDED = "autopilot-end"
HANDOVER = "handover"
"""A deploy handed a new version over (its audit entry names the version and its model)."""
WEIGHT_CHANGES = ("start", "step")
"""The actions that begin a step of a canary (its evidence counts from then)."""

INDEX_FORMAT = 1
RECENT_KEYS = 64
"""Keys of the latest entries the index remembers: how a writer knows its entry was folded."""
MODELS_KEPT = 32
"""Models whose handed-over version the index remembers (the most recent ones)."""
WRITE_ATTEMPTS = 8
CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class AuditIndexConflict(RuntimeError):
    """The index kept changing under every attempt to store it (the entry itself is written)."""


@dataclass(frozen=True)
class AuditIndex:
    """What the rollout controller needs of one function's audit record."""

    doc: Mapping[str, Any]

    @property
    def run(self) -> dict[str, Any] | None:
        """The latest autopilot start not followed by its end."""
        run = self.doc.get("run")
        return dict(run) if run else None

    @property
    def run_has_traffic(self) -> bool:
        """Has the alias started canarying since the run began (a run that began in shadow)?"""
        return bool(self.doc.get("run_traffic"))

    def step_entry(self, version: str) -> Mapping[str, Any] | None:
        """The alias's last weight change (a start or a step), if `version` is in its weights.
        A version serves as the canary only after one (an alias moved outside the controller
        has no audited step)."""
        last = self.doc.get("last_step")
        if last and version in (last.get("after") or {}):
            return dict(last)
        return None

    def step_began(self, version: str) -> dt.datetime | None:
        """When `version`'s current step began, by the writer's clock (`seq`, ns): the
        A/B evidence of the step counts from then."""
        return entry_real_time(self.step_entry(version))

    def step_at(self, version: str) -> dt.datetime | None:
        """When `version`'s current step began, by the controller's clock (`at`): how long
        the step has held."""
        entry = self.step_entry(version)
        return dt.datetime.fromisoformat(entry["at"]) if entry else None

    def handed_over(self, model_version: str | None) -> str | None:
        """The newest version handed over for `model_version`."""
        return (self.doc.get("handovers") or {}).get(str(model_version))


def entry_real_time(entry: Mapping[str, Any] | None) -> dt.datetime | None:
    if entry is None:
        return None
    if entry.get("seq"):
        return dt.datetime.fromtimestamp(int(entry["seq"]) / 1e9, tz=dt.UTC)
    return dt.datetime.fromisoformat(entry["at"])


def empty_index(function: str) -> dict[str, Any]:
    return {
        "format": INDEX_FORMAT,
        "function": function,
        "last_key": None,
        "recent_keys": [],
        "entries": 0,
        "run": None,
        "run_traffic": False,
        "last_step": None,
        "handovers": {},
    }


def fold(
    index: Mapping[str, Any], entry: Mapping[str, Any], key: str | None = None
) -> dict[str, Any]:
    """The index after one more entry (in write order); `key` is the entry's log key."""
    out = dict(index)
    out["entries"] = int(out.get("entries", 0)) + 1
    action = entry.get("action")
    if action == STARTED:
        out["run"], out["run_traffic"] = dict(entry), False
    elif action == ENDED and out.get("run") is not None:
        out["run"], out["run_traffic"] = None, False
    if action == "start" and out.get("run") is not None:
        out["run_traffic"] = True
    if action in WEIGHT_CHANGES:
        out["last_step"] = {k: entry.get(k) for k in ("action", "at", "seq", "after") if k in entry}
    if action == HANDOVER and entry.get("candidate_version") is not None:
        handovers = {
            m: v
            for m, v in (out.get("handovers") or {}).items()
            if m != str(entry.get("model_version"))
        }
        handovers[str(entry.get("model_version"))] = entry["candidate_version"]
        out["handovers"] = dict(list(handovers.items())[-MODELS_KEPT:])
    if key is not None:
        out["last_key"] = max(key, out.get("last_key") or "")
        out["recent_keys"] = [*(out.get("recent_keys") or []), key][-RECENT_KEYS:]
    return out


def index_of(
    function: str, entries: Iterable[tuple[str | None, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The index of a whole record ((log key or None, entry) in write order)."""
    index = empty_index(function)
    for key, entry in entries:
        index = fold(index, entry, key)
    return index


class S3Audit:
    """One bucket's rollout audit: write entries (`audit(entry)`, as `Rollouts` takes it), read
    a function's index (constant cost) or its whole record (every entry, for people)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = AUDIT_PREFIX) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    # ---- keys ---------------------------------------------------------------------------
    def log_prefix(self, function: str) -> str:
        return f"{self.prefix}{function}/log/"

    def index_key(self, function: str) -> str:
        return f"{self.prefix}{function}/index.json"

    def entry_key(self, entry: Mapping[str, Any]) -> str:
        return (
            f"{self.log_prefix(entry['function'])}{int(entry['seq']):020d}-{entry['action']}-"
            f"{uuid.uuid4().hex[:8]}.json"
        )

    # ---- writing ------------------------------------------------------------------------
    def __call__(self, entry: Mapping[str, Any]) -> None:
        """Record one entry, then bring its function's index up to date."""
        function = entry["function"]
        key = self.entry_key(entry)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(entry, indent=1).encode(),
            ContentType="application/json",
        )
        for _ in range(WRITE_ATTEMPTS):
            doc, etag, changed = self._load(function, known={key: entry})
            if key not in doc.get("recent_keys", []):  # sorted before the index: not listed
                doc, changed = self._rebuild(function), True
            if not changed or self._store(function, doc, etag):
                return
        raise AuditIndexConflict(
            f"the audit index of {function} changed under {WRITE_ATTEMPTS} attempts to store "
            f"entry {key}"
        )

    def _store(self, function: str, doc: Mapping[str, Any], etag: str | None) -> bool:
        """PUT the index if it is still the one read; False when another writer came first."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.index_key(function),
                Body=json.dumps(doc).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as e:
            error = e.response.get("Error", {})
            status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if error.get("Code") in CONFLICTS or status in ("409", "412"):
                return False
            raise
        return True

    # ---- reading ------------------------------------------------------------------------
    def index(self, function: str, *, store: bool = False) -> AuditIndex:
        """The function's index: one GET and one LIST when it is up to date. With `store`,
        an index that had to be rebuilt or caught up is written back (best effort)."""
        doc, etag, changed = self._load(function)
        if changed and store:
            self._store(function, doc, etag)
        return AuditIndex(doc)

    def _load(
        self, function: str, known: Mapping[str, Mapping[str, Any]] | None = None
    ) -> tuple[dict[str, Any], str | None, bool]:
        """(index, its ETag as read or None, whether it differs from what is stored)."""
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.index_key(function))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            return self._rebuild(function), None, True
        etag = got.get("ETag")
        try:
            doc = json.loads(got["Body"].read())
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
            return self._rebuild(function), etag, True
        changed = False
        for key in self._log_keys(function, after=doc.get("last_key")):
            entry = (known or {}).get(key) or self._get(key)
            if entry is not None and entry.get("function") == function:
                doc, changed = fold(doc, entry, key), True
        return doc, etag, changed

    def _rebuild(self, function: str) -> dict[str, Any]:
        return index_of(function, self._record(function))

    def entries(self, function: str) -> list[dict[str, Any]]:
        """Every entry of one function, in the order they were written (one GET each: for
        people and audits, never for a controller's tick)."""
        return [entry for _, entry in self._record(function)]

    def _record(self, function: str) -> list[tuple[str | None, dict[str, Any]]]:
        out: list[tuple[str | None, dict[str, Any]]] = []
        for key in self._legacy_keys(function):
            entry = self._get(key)
            if entry is not None and entry.get("function") == function:
                out.append((None, entry))
        for key in self._log_keys(function):
            entry = self._get(key)
            if entry is not None and entry.get("function") == function:
                out.append((key, entry))
        # Write order (`seq`, the writer's clock in ns; `at` is in seconds)
        return sorted(out, key=lambda ke: (ke[1].get("seq", 0), ke[1].get("at", ""), ke[0] or ""))

    def _log_keys(self, function: str, after: str | None = None) -> Iterator[str]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.log_prefix(function)}
        if after:
            kwargs["StartAfter"] = after
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def _legacy_keys(self, function: str) -> Iterator[str]:
        """Entries of the earlier layout (directly under the prefix, the function in the key)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if f"-{function}-" in obj["Key"]:
                    yield obj["Key"]

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
