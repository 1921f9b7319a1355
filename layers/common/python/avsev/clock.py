"""The one clock every part of the system stamps times with: `now()`, timezone-aware UTC.

In AWS it is the system clock. The local stack simulates hours passing (the autopilot's
hourly ticks, the retraining loop's daily looks) by moving this clock ahead of the system
clock (`set_offset`): the records its functions write, the Firehose stand-in's partitions,
the rollout and lifecycle audits, the registry and the reports then all agree on when
something happened, so a rollout step's evidence is the traffic served during that step.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

_offset: Callable[[], float] | None = None


def now() -> dt.datetime:
    """The time, in UTC: the system clock, moved by the offset the local stack set."""
    at = dt.datetime.now(dt.UTC)
    return at if _offset is None else at + dt.timedelta(minutes=_offset())


def now_ns() -> int:
    """The same clock in nanoseconds since the epoch (what orders audit entries)."""
    at = time.time_ns()
    return at if _offset is None else at + round(_offset() * 60e9)


def set_offset(minutes: float | Callable[[], float] | None) -> None:
    """Run this process's clock `minutes` ahead of the system clock (a number, or a function
    read at every `now()`: a stack shared by processes keeps it in its state file); None
    resets. Only the local stack calls it, and only moves it on (an audit ordered by it stays
    in write order)."""
    global _offset
    if minutes is None:
        _offset = None
    elif callable(minutes):
        _offset = minutes
    else:
        fixed = float(minutes)
        _offset = lambda: fixed  # noqa: E731


def offset_minutes() -> float:
    """How far ahead of the system clock this process's clock runs (0 in AWS)."""
    return 0.0 if _offset is None else _offset()
