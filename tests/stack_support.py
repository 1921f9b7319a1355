"""A local stack (moto server as AWS, the API emulator, the real handlers) for a test module,
in process or as `avsev local up` in its own process; an A/B report that says promote."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

AVSEV = Path(sys.executable).parent / "avsev"
REPORT = {
    "ev_id": "ERA19FA001",
    "event_date": "2019-03-02",
    "dec_latitude": 35.2,
    "dec_longitude": -80.9,
    "weather_condition": "IMC",
    "make": "Cessna",
    "broad_phase_of_flight": "Cruise",
}
"""A valid report with a few fields blank, as the e2e tests send it."""


def serving(*bundles: Path, context: dict[str, Any] | None = None) -> Iterator[Any]:
    """Yield a running local stack that serves these bundles (the first is live), on its own
    embedded AWS even when the shell points AWS_ENDPOINT_URL elsewhere; a fixture's body.
    `context`: CDK context for its synth (`{"api": "http"}`)."""
    from avsev_tools.local.stack import LocalStack

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        with LocalStack(list(bundles), context=context) as s:
            yield s


def local_up_process(bundle: Path, tmp: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """`avsev local up --bundle …` in its own process, until the fixture ends (Ctrl-C): yields
    the environment that points the CLI at it, and its state file; a fixture's body."""
    env = {**os.environ, "AVSEV_LOCAL_STATE": str(tmp / "local.json")}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen(
        [str(AVSEV), "local", "up", "--bundle", str(bundle), "--port", "0", "--log", str(tmp / "fn.log")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("base URL: ")
        for _ in range(4):
            proc.stdout.readline()
        yield env, tmp / "local.json"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=180)


def promote_report(at: dt.datetime, champion: str, candidate: str) -> Any:
    """The hourly A/B report for this champion and candidate, made at `at`, advising promote."""
    from avsev.monitoring.reports import ABReport, RecordCounts

    return ABReport(
        generated_at=at.isoformat(),
        window={},
        records=RecordCounts(predictions=4000, labelled=1600, skipped_newer_schema=0),
        champion=champion,
        candidate=candidate,
        decision_metric="log_loss",
        versions={},
        comparison=None,
        decision="promote",
        reason="better on log loss (always-valid p 0.001)",
        as_of=at.isoformat(),
    )
