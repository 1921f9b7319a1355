"""The records extension's logic (`avsev.serving.records_extension`): the function's spool
appends, when a flush is due, taking the spool while functions append, packing lines into
Firehose records, retries and the stdout fallback, and EMF documents that say what the log
group's metric filters would have counted from the same lines."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from typing import Any

import pytest
from avsev.monitoring.metric_filters import MetricFilter
from avsev.serving import records
from avsev.serving import records_extension as ext
from avsev.serving.records import OutcomeRecord, PredictionRecord

NAMESPACE = "Avsev/avsev-test"
STREAMS = {"prediction": "avsev-test-predictions-direct", "outcome": "avsev-test-outcomes-direct"}


def prediction(
    i: int,
    *,
    label: str = "Minor",
    shadow: bool = False,
    at: dt.datetime | None = None,
    version: str = "1.0.0",
    latency: float | None = None,
) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r-{i}",
        ev_id=f"E{i}",
        timestamp=at or dt.datetime.now(dt.UTC),
        model_name="avsev-severity",
        model_version=version,
        function_version="3",
        shadow=shadow,
        features={"aircraft_age": i % 40, "make": "Cessna"},
        probabilities={"Fatal": 0.1, "Serious": 0.1, "Minor": 0.7, "None": 0.1},
        predicted=label,  # type: ignore[arg-type]
        latency_ms=latency if latency is not None else 0.1 + i / 1000,
    )


def outcome(i: int) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=f"o-{i}",
        ev_id=f"E{i}",
        timestamp=dt.datetime.now(dt.UTC),
        actual_severity="Serious",
        seq=0,
    )


class FakeFirehose:
    """PutRecordBatch as the API answers it: FailedPutCount and one RequestResponses entry per
    record, an ErrorCode on a failed one
    (https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html)."""

    def __init__(self, fail: set[int] | None = None, fail_calls: int = 0) -> None:
        self.fail = fail or set()  # the n-th record put (over all calls) fails
        self.fail_calls = fail_calls  # the first calls raise
        self.calls: list[tuple[str, list[bytes]]] = []
        self.seen = 0

    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]
    ) -> dict[str, Any]:
        if self.fail_calls:
            self.fail_calls -= 1
            raise ConnectionError("endpoint unreachable")
        assert len(Records) <= ext.MAX_BATCH_RECORDS
        assert sum(len(r["Data"]) for r in Records) <= ext.MAX_BATCH_BYTES
        answers = []
        for r in Records:
            n, self.seen = self.seen, self.seen + 1
            if n in self.fail:
                answers.append(
                    {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
                )
            else:
                answers.append({"RecordId": f"id-{n}"})
                self.calls.append((DeliveryStreamName, [r["Data"]]))
        return {
            "FailedPutCount": sum(1 for a in answers if "ErrorCode" in a),
            "Encrypted": False,
            "RequestResponses": answers,
        }

    def lines(self, stream: str) -> list[str]:
        return [
            line
            for s, datas in self.calls
            if s == stream
            for d in datas
            for line in d.decode().splitlines()
        ]


def extension(
    tmp_path, firehose, metrics: str = "predictions", **policy: Any
) -> tuple[ext.RecordsExtension, io.StringIO]:
    out = io.StringIO()
    return ext.RecordsExtension(
        spool=str(tmp_path / "avsev-records"),
        streams=STREAMS,
        firehose=firehose,
        filters=ext.record_filters(metrics, NAMESPACE),
        policy=ext.FlushPolicy(**policy),
        stdout=out,
    ), out


def test_emit_appends_whole_lines_to_the_spool_the_environment_names(tmp_path, monkeypatch, capsys):
    spool = tmp_path / "avsev-records"
    monkeypatch.setenv(records.SPOOL_ENV, str(spool))
    recs = [prediction(i) for i in range(3)]
    later = outcome(1)
    records.emit(recs)
    records.emit([later])
    assert spool.read_text() == records.lines(recs) + records.lines([later])
    assert capsys.readouterr().out == ""  # nothing on stdout


def test_flush_is_due_by_size_or_by_the_age_of_the_oldest_line(tmp_path, monkeypatch):
    spool = tmp_path / "avsev-records"
    policy = ext.FlushPolicy(max_bytes=10_000, max_seconds=10)
    assert not policy.due(str(spool))  # no spool yet
    now = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)
    records.spool_append(str(spool), records.lines([prediction(1, at=now)]))
    assert not policy.due(str(spool), now + dt.timedelta(seconds=9))
    assert policy.due(str(spool), now + dt.timedelta(seconds=10))
    small = ext.FlushPolicy(max_bytes=spool.stat().st_size, max_seconds=3600)
    assert small.due(str(spool), now)


def test_on_invoke_flushes_only_when_due_and_shutdown_always(tmp_path):
    firehose = FakeFirehose()
    x, _ = extension(tmp_path, firehose, max_bytes=10**9, max_seconds=3600)
    records.spool_append(x.spool, records.lines([prediction(i) for i in range(5)]))
    assert x.on_event().delivered == 0 and not firehose.calls
    result = x.on_event(shutdown=True)
    assert result.delivered == 5 and result.fallback == 0
    assert len(firehose.lines(STREAMS["prediction"])) == 5
    assert x.on_event(shutdown=True).delivered == 0  # nothing left: nothing put twice


def test_taking_the_spool_while_functions_append_loses_and_splits_no_line(tmp_path):
    firehose = FakeFirehose()
    x, _ = extension(tmp_path, firehose)
    writers, per_writer = 4, 300
    expected = {f"r-{w}-{i}" for w in range(writers) for i in range(per_writer)}

    def write(w: int) -> None:
        for i in range(per_writer):
            rec = prediction(i).model_copy(update={"request_id": f"r-{w}-{i}"})
            records.spool_append(x.spool, records.lines([rec] * (1 + i % 3)))  # 1-3 lines a write
            if i % 20 == 0:
                time.sleep(0.001)  # the flushes land between writes

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    flushes = 0  # flushes that took lines while the writers were writing
    while any(t.is_alive() for t in threads):
        flushes += x.flush().delivered > 0
    for t in threads:
        t.join()
    x.flush()
    got = [
        json.loads(line) for line in firehose.lines(STREAMS["prediction"])
    ]  # each line parses whole
    assert {d["request_id"] for d in got} == expected
    assert len(got) == sum(1 + i % 3 for i in range(per_writer)) * writers  # none twice, none lost
    assert flushes > 1
    assert not ext.taken_files(x.spool)


def test_lines_are_packed_into_records_of_at_most_1000_kib_in_order():
    lines = [
        json.dumps({"record_type": "prediction", "n": i, "pad": "x" * 700}) for i in range(3000)
    ]
    packed, oversized = ext.pack(lines)
    assert not oversized
    assert all(len(r) <= 1000 * 1024 for r in packed)
    assert len(packed) == 3  # ~2.2 MB of lines: three records, each full but the last
    assert [line for r in packed for line in r.decode().splitlines()] == lines
    assert all(r.endswith(b"\n") for r in packed)
    huge = json.dumps({"record_type": "prediction", "pad": "x" * (1000 * 1024)})
    assert ext.pack([lines[0], huge]) == ([lines[0].encode() + b"\n"], [huge])


def test_calls_hold_at_most_500_records_and_4_mib():
    sizes = [b"x" * 900_000] * 9 + [b"y"] * 700
    groups = list(ext.batches(sizes))
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    for g in groups:
        assert len(g) <= 500 and sum(len(sizes[i]) for i in g) <= 4 * 1024 * 1024


def test_a_failed_record_is_put_once_more(tmp_path):
    firehose = FakeFirehose(fail={0})
    x, out = extension(tmp_path, firehose)
    records.spool_append(x.spool, records.lines([prediction(i) for i in range(4)]))
    result = x.flush()
    assert result.delivered == 4 and result.fallback == 0
    assert len(firehose.lines(STREAMS["prediction"])) == 4
    assert "record_type" not in out.getvalue()  # only the EMF documents


def test_lines_that_fail_twice_go_to_stdout_and_are_not_counted_in_emf(tmp_path):
    firehose = FakeFirehose(fail_calls=2)  # the put and its retry both raise
    x, out = extension(tmp_path, firehose)
    lines = records.lines([prediction(i) for i in range(4)] + [outcome(1)])
    records.spool_append(x.spool, lines)
    result = x.flush()
    assert result.fallback == 4 and result.delivered == 1  # the outcomes' stream took its line
    printed = out.getvalue().splitlines()
    assert [p for p in printed if '"record_type":"prediction"' in p] == lines.splitlines()[:4]
    assert not any(p.startswith('{"_aws"') for p in printed)  # no metric for what fell back
    assert not ext.taken_files(x.spool) and not (tmp_path / "avsev-records").exists()


def test_at_shutdown_what_the_deadline_leaves_no_time_for_goes_to_stdout(tmp_path):
    firehose = FakeFirehose()
    x, out = extension(tmp_path, firehose)
    records.spool_append(x.spool, records.lines([prediction(i) for i in range(3)]))
    result = x.on_event(shutdown=True, deadline_ms=0)  # long past
    assert result.fallback == 3 and not firehose.calls
    assert len([p for p in out.getvalue().splitlines() if "record_type" in p]) == 3


def _statistics(points) -> dict:
    out: dict = {}
    for namespace, name, unit, dims, value in points:
        s = out.setdefault((namespace, name, unit, dims), [0.0, float("inf"), float("-inf")])
        s[0] += value
    return {k: round(v[0], 9) for k, v in out.items()}


@pytest.mark.parametrize("metrics", ["predictions", "explanations"])
def test_emf_documents_sum_to_what_the_metric_filters_count(tmp_path, metrics):
    from avsev_tools.local.logs import EmfForwarder

    firehose = FakeFirehose()
    x, out = extension(tmp_path, firehose, metrics=metrics)
    labels = ["Fatal", "Serious", "Minor", "None"]
    recs = [
        prediction(
            i,
            label=labels[i % 4],
            shadow=i % 7 == 0,
            version="1.0.0" if i < 180 else "1.1.0",
            latency=0.2 + (i % 13) / 100,
        )
        for i in range(250)
    ]
    lines = records.lines(recs)
    records.spool_append(x.spool, lines)
    x.flush()
    docs = [json.loads(p) for p in out.getvalue().splitlines()]
    assert docs and all("_aws" in d for d in docs)
    for d in docs:
        for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            v = d[m["Name"]]
            assert not isinstance(v, list) or len(v) <= 100
    # what the log group's metric filters would give, line by line
    filters = [
        MetricFilter.from_properties(m.properties(NAMESPACE))
        for m in __import__("avsev.monitoring.record_metrics", fromlist=["x"]).RECORD_METRICS[
            metrics
        ]
    ]
    points = [
        p for line in lines.splitlines() for f in filters if (p := f.measure(json.loads(line)))
    ]
    from_filters = _statistics(points)
    emf = EmfForwarder(lambda: None)
    for d in docs:
        emf.put(d)
    from_emf = {k: round(sum(v), 9) for k, v in emf.statistics().items()}
    assert from_emf == from_filters
    served = [r for r in recs if not r.shadow]
    assert from_filters[
        (
            NAMESPACE,
            "Predictions" if metrics == "predictions" else "Explanations",
            "Count",
            (("ModelVersion", "1.0.0"), ("FunctionVersion", "3")),
        )
    ] == sum(1 for r in served if r.model_version == "1.0.0")
    if (
        metrics == "predictions"
    ):  # latency: every sample, so its count, min and max are the filter's
        stats = emf.statistics()
        key = (
            NAMESPACE,
            "InferenceLatency",
            "Milliseconds",
            (("ModelVersion", "1.0.0"), ("FunctionVersion", "3")),
        )
        assert sorted(stats[key]) == sorted(
            r.latency_ms for r in served if r.model_version == "1.0.0"
        )


def test_outcome_metrics_have_no_dimensions(tmp_path):
    firehose = FakeFirehose()
    x, out = extension(tmp_path, firehose, metrics="outcomes")
    records.spool_append(x.spool, records.lines([outcome(i) for i in range(7)]))
    x.flush()
    (doc,) = [json.loads(p) for p in out.getvalue().splitlines()]
    assert doc["Outcomes"] == 7
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE


def test_from_env_reads_the_functions_settings(tmp_path):
    env = {
        records.SPOOL_ENV: str(tmp_path / "s"),
        ext.STREAMS_ENV: json.dumps(STREAMS),
        ext.METRICS_ENV: "outcomes",
        ext.METRICS_NAMESPACE_ENV: NAMESPACE,
        ext.FLUSH_BYTES_ENV: "1234",
        ext.FLUSH_SECONDS_ENV: "2.5",
    }
    x = ext.RecordsExtension.from_env(FakeFirehose(), env)
    assert x.spool == str(tmp_path / "s") and x.streams == STREAMS
    assert x.policy == ext.FlushPolicy(1234, 2.5)
    assert [f.name for f in x.filters] == ["Outcomes"]


def test_the_extension_registers_and_flushes_at_its_events(tmp_path, monkeypatch):
    """The Extensions API loop against a stand-in of the API: register (the extension's name,
    INVOKE and SHUTDOWN), then an INVOKE that finds nothing due and a SHUTDOWN that flushes
    what the spool holds (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html)."""
    import http.server

    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    events = [
        {"eventType": "INVOKE", "deadlineMs": 0, "requestId": "r1"},
        {"eventType": "SHUTDOWN", "deadlineMs": int(time.time() * 1e3) + 2000},
    ]

    class Api(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(("POST", self.path, dict(self.headers), body))
            self._answer({}, {"Lambda-Extension-Identifier": "ext-1"})

        def do_GET(self) -> None:
            seen.append(("GET", self.path, dict(self.headers), b""))
            self._answer(events.pop(0))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spool = tmp_path / "avsev-records"
    for k, v in {
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        records.SPOOL_ENV: str(spool),
        ext.STREAMS_ENV: json.dumps(STREAMS),
        ext.METRICS_ENV: "predictions",
        ext.METRICS_NAMESPACE_ENV: NAMESPACE,
        ext.FLUSH_SECONDS_ENV: "3600",
    }.items():
        monkeypatch.setenv(k, v)
    records.spool_append(str(spool), records.lines([prediction(i) for i in range(3)]))
    firehose = FakeFirehose()
    try:
        ext.main("avsev-records", firehose)
    finally:
        server.shutdown()
    register, first, second = seen
    assert register[1] == "/2020-01-01/extension/register"
    assert register[2]["Lambda-Extension-Name"] == "avsev-records"
    assert json.loads(register[3]) == {"events": ["INVOKE", "SHUTDOWN"]}
    assert first[1] == second[1] == "/2020-01-01/extension/event/next"
    assert first[2]["Lambda-Extension-Identifier"] == "ext-1"
    assert len(firehose.lines(STREAMS["prediction"])) == 3  # at SHUTDOWN, not at the INVOKE
    assert not spool.exists()


def test_a_record_that_fails_conversion_is_read_back_by_the_redrive():
    """A direct stream's failed record lands in the error prefix as it was put (JSON lines):
    `avsev records redrive` reads its lines back (`extract_messages`)."""
    from avsev.monitoring.firehose import extract_messages

    lines = records.lines([prediction(i) for i in range(5)]).splitlines()
    (record,), _ = ext.pack(lines)
    assert extract_messages(record) == lines
