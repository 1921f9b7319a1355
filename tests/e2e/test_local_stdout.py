"""The local stack captures what a handler prints (its EMF metrics, its log lines) during its
invocation only, and only from the invoking thread: other threads' output, and anything
printed between invocations, goes where it always went."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
from types import SimpleNamespace

from avsev_tools.local.logs import EmfForwarder, LogRouter, stdout_of_this_thread
from avsev_tools.local.stack import Handler

EMF = {
    "_aws": {
        "Timestamp": 0,
        "CloudWatchMetrics": [
            {"Namespace": "Avsev", "Dimensions": [["service"]], "Metrics": [{"Name": "Hits"}]}
        ],
    },
    "service": "avsev",
    "Hits": [1.0],
}


class Lines:
    """A firehose that keeps the record lines it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def put_batch(self, record_type: str, lines: list[str], **source: str) -> None:
        self.lines.extend((record_type, line) for line in lines)


def meanwhile(text: str, started: threading.Event, done: threading.Event) -> threading.Thread:
    """Another thread that prints `text` once the invocation has begun, before it ends."""

    def run() -> None:
        started.wait(5)
        print(text)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_only_the_invoking_threads_output_is_captured():
    # Given a process whose stdout is `outside`, and another thread printing meanwhile
    outside, captured = io.StringIO(), io.StringIO()
    started, done = threading.Event(), threading.Event()
    with contextlib.redirect_stdout(outside):
        other = meanwhile("other thread", started, done)
        # When this thread prints within the capture
        with stdout_of_this_thread(captured):
            print("handler line")
            started.set()
            assert done.wait(5)
            print("handler again")
        other.join()
        print("after")
        # Then the capture has this thread's lines only, and stdout is as it was
        assert sys.stdout is outside
    assert captured.getvalue() == "handler line\nhandler again\n"
    assert outside.getvalue() == "other thread\nafter\n"


def test_a_kept_reference_passes_everything_on_after_the_invocation():
    outside, captured = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(outside):
        with stdout_of_this_thread(captured):
            kept = sys.stdout  # as a logger created during an invocation would keep it
        print("later", file=kept)
    assert captured.getvalue() == "" and outside.getvalue() == "later\n"


def test_a_handlers_metrics_go_to_cloudwatch_and_another_threads_output_stays_out():
    # Given a function whose handler prints an EMF blob, a record and a log line
    started, done = threading.Event(), threading.Event()

    def handler(event, context):
        print(json.dumps(EMF))
        print('{"record_type":"prediction","request_id":"r1"}')
        started.set()
        assert done.wait(5)  # another thread prints while this invocation runs
        print("a log line of the handler")
        return {"statusCode": 200, "body": "{}"}

    firehose, console, outside = Lines(), io.StringIO(), io.StringIO()
    emf = EmfForwarder(lambda: None)
    router = LogRouter(firehose, emf, console=console)  # type: ignore[arg-type]
    function = Handler(SimpleNamespace(handler=handler), "predict", "1", router)  # type: ignore[arg-type]
    with contextlib.redirect_stdout(outside):
        other = meanwhile("not the function's", started, done)
        # When it is invoked
        assert function({"path": "/predict"})["statusCode"] == 200
        other.join()
        # Then stdout is the process's again
        assert sys.stdout is outside
    # and the router sorted the function's lines; the other thread's went where they go
    assert emf._pending == [EMF]
    assert firehose.lines == [("prediction", '{"record_type":"prediction","request_id":"r1"}')]
    assert console.getvalue() == "a log line of the handler\n"
    assert outside.getvalue() == "not the function's\n"
