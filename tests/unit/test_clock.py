"""The one clock (`avsev.clock`): the system clock in AWS; on the local stack, moved ahead by
an offset that every process acting on the stack reads from its state file."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from avsev import clock
from avsev_tools.local.aws import advance_clock, clock_offset, follow_clock


@pytest.fixture(autouse=True)
def _reset():
    yield
    clock.set_offset(None)


def test_without_an_offset_it_is_the_system_clock():
    before = dt.datetime.now(dt.UTC)
    at, ns = clock.now(), clock.now_ns()
    assert before <= at <= dt.datetime.now(dt.UTC) and at.tzinfo is not None
    assert abs(ns - time.time_ns()) < 1e9 and clock.offset_minutes() == 0.0


def test_an_offset_moves_now_and_now_ns_alike():
    clock.set_offset(90)
    ahead = clock.now() - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=89) < ahead < dt.timedelta(minutes=91)
    assert abs(clock.now_ns() - time.time_ns() - 90 * 60e9) < 1e9
    clock.set_offset(None)
    assert clock.now() - dt.datetime.now(dt.UTC) < dt.timedelta(seconds=1)


def test_a_process_follows_the_stack_state_file(tmp_path):
    state = tmp_path / "local.json"
    state.write_text(json.dumps({"base_url": "http://127.0.0.1:1"}))
    follow_clock(state)
    assert clock.offset_minutes() == 0.0
    assert advance_clock(61, state) == 61.0
    assert clock_offset(state) == 61.0 and clock.offset_minutes() == 61.0
    time.sleep(0.01)  # another process moves it: the file changes, this process sees it
    advance_clock(31, state)
    assert clock.offset_minutes() == 92.0
    assert json.loads(state.read_text())["base_url"] == "http://127.0.0.1:1"  # the rest kept
    state.unlink()
    assert clock.offset_minutes() == 0.0  # no stack: the system clock
