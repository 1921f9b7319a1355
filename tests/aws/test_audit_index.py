"""The rollout audit's index (avsev.rollout.audit) against moto's S3: it is the fold of the
record, it catches up with entries whose writer stopped before updating it, an index of
another format or one that a write sorted before is rebuilt, and of two writers at once the
later one reads again (S3 conditional writes)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from avsev.rollout.audit import INDEX_FORMAT, S3Audit, index_of
from test_aws_monitoring import BUCKET, aws  # noqa: F401  (fixture)

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def entry(minutes: float, action: str, **details: Any) -> dict[str, Any]:
    at = T0 + dt.timedelta(minutes=minutes)
    return {
        "at": at.isoformat(timespec="seconds"),
        "seq": int(at.timestamp() * 1e9),
        "action": action,
        "function": "predict",
        "alias": "live",
        **details,
    }


RUN = [
    entry(0, "handover", candidate_version="2", model_version="1.1.0"),
    entry(1, "start", after={"1": 0.9, "2": 0.1}),
    entry(2, "autopilot-start", candidate_version="2", config={}),
    entry(70, "step", after={"1": 0.5, "2": 0.5}),
]


def _fold_of_record(audit: S3Audit) -> dict[str, Any]:
    return index_of("predict", audit._record("predict"))


def test_the_index_is_the_fold_of_the_record(aws):  # noqa: F811
    audit = S3Audit(aws["s3"], BUCKET)
    for e in RUN:
        audit(e)
    index = audit.index("predict")
    assert index.doc == _fold_of_record(audit)
    assert index.run is not None and index.run["candidate_version"] == "2"
    assert not index.run_has_traffic  # only a start after the run began (from shadow) counts
    assert index.step_at("2") == T0 + dt.timedelta(minutes=70)
    assert index.step_began("2") == T0 + dt.timedelta(minutes=70)
    assert index.step_began("3") is None
    assert index.handed_over("1.1.0") == "2"
    audit(entry(100, "promote", after={"2": 1.0}))
    audit(entry(100.5, "autopilot-end", candidate_version="2", outcome="promoted"))
    assert audit.index("predict").run is None
    assert [e["action"] for e in audit.entries("predict")][-2:] == ["promote", "autopilot-end"]


def test_an_entry_whose_writer_stopped_before_the_index_is_caught_up(aws):  # noqa: F811
    s3 = aws["s3"]
    audit = S3Audit(s3, BUCKET)
    for e in RUN[:3]:
        audit(e)
    lost = RUN[3]  # written, but its writer stopped before it updated the index
    s3.put_object(Bucket=BUCKET, Key=audit.entry_key(lost), Body=json.dumps(lost).encode())
    assert audit.index("predict").step_at("2") == T0 + dt.timedelta(minutes=70)
    assert audit.index("predict", store=True).doc == _fold_of_record(audit)
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=audit.index_key("predict"))["Body"].read())
    assert stored == _fold_of_record(audit)


def test_an_index_of_another_format_is_rebuilt(aws):  # noqa: F811
    s3 = aws["s3"]
    audit = S3Audit(s3, BUCKET)
    for e in RUN:
        audit(e)
    s3.put_object(
        Bucket=BUCKET,
        Key=audit.index_key("predict"),
        Body=json.dumps({"format": INDEX_FORMAT + 1, "run": None}).encode(),
    )
    assert audit.index("predict").run is not None
    audit(entry(80, "rollback", after={"1": 1.0}))
    assert audit.index("predict").doc == _fold_of_record(audit)
    assert audit.index("predict").doc["format"] == INDEX_FORMAT


def test_an_entry_that_sorts_before_the_index_rebuilds_it(aws):  # noqa: F811
    """A writer whose clock is behind: its entry's key sorts before the index's last key, so
    no listing after the index would find it; its writer rebuilds the index."""
    audit = S3Audit(aws["s3"], BUCKET)
    for e in RUN:
        audit(e)
    audit(entry(60, "autopilot-end", candidate_version="2", outcome="ended by hand"))
    index = audit.index("predict")
    assert index.run is None
    assert index.doc == _fold_of_record(audit)


def test_of_two_writers_at_once_the_later_reads_the_index_again(aws):  # noqa: F811
    """The index is put only if it is still the one read (If-Match its ETag): a writer that
    read it before another writer stored it gets 412 and folds its entry into the new one."""
    s3 = aws["s3"]
    audit = S3Audit(s3, BUCKET)
    for e in RUN[:2]:
        audit(e)
    other = S3Audit(s3, BUCKET)

    class Interleaved:
        """S3 where another writer records its entry just after this writer read the index."""

        def __init__(self) -> None:
            self.done = False
            self.refused = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def get_object(self, **kw: Any) -> Any:
            got = s3.get_object(**kw)
            if kw["Key"] == audit.index_key("predict") and not self.done:
                self.done = True
                other(RUN[3])
            return got

        def put_object(self, **kw: Any) -> Any:
            try:
                return s3.put_object(**kw)
            except s3.exceptions.ClientError:
                self.refused += 1
                raise

    racing = Interleaved()
    S3Audit(racing, BUCKET)(RUN[2])
    assert racing.refused == 1
    index = audit.index("predict")
    assert index.doc == _fold_of_record(audit)
    assert index.run is not None and index.step_at("2") == T0 + dt.timedelta(minutes=70)
