"""The embedded AWS of the local stack: its account and region, the state file `avsev local up`
leaves for the other commands, and boto3 clients pointed at it. What the stack creates in it
(names included) comes from the synthesized template (avsev_tools.local.assembly). Imported by the
stack, its dashboard and the CLI; imports none of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
STATE_FILE = Path(os.environ.get("AVSEV_LOCAL_STATE", Path.home() / ".avsev" / "local.json"))
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": REGION,
}


def use_endpoint(endpoint: str) -> None:
    """Point every boto3 client of this process at the embedded AWS."""
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)


def client(service: str) -> Any:
    """A boto3 client in the stack's region (at the endpoint `use_endpoint` set)."""
    import boto3

    return boto3.session.Session().client(service, region_name=REGION)


def read_state(path: Path = STATE_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no local stack running (start one with `avsev local up`)")
    state: dict[str, Any] = json.loads(path.read_text())
    return state


# ---- the stack's simulated clock ----------------------------------------------------------
CLOCK_KEY = "clock_offset_minutes"
"""The state file's field: how far the stack's clock runs ahead of the system clock."""
_read_offsets: dict[Path, tuple[int, float]] = {}


def clock_offset(path: Path = STATE_FILE) -> float:
    """Minutes the local stack's clock runs ahead (its state file; 0 with none), re-read only
    when the file changes: the stack's functions stamp every record with it."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return 0.0
    seen = _read_offsets.get(path)
    if seen is None or seen[0] != mtime:
        try:
            offset = float(json.loads(path.read_text()).get(CLOCK_KEY, 0.0))
        except (OSError, ValueError):
            return seen[1] if seen else 0.0
        seen = _read_offsets[path] = (mtime, offset)
    return seen[1]


def follow_clock(path: Path = STATE_FILE) -> None:
    """This process's clock (`avsev.clock`) is the running local stack's, as its state file
    says: a command acting on the stack stamps what it does at the stack's simulated time."""
    from avsev import clock

    clock.set_offset(lambda: clock_offset(path))


def advance_clock(minutes: float, path: Path = STATE_FILE) -> float:
    """Move the running stack's clock on by `minutes` (its state file: the stack's process and
    every command follow it); the new offset."""
    state = read_state(path)
    state[CLOCK_KEY] = float(state.get(CLOCK_KEY, 0.0)) + float(minutes)
    path.write_text(json.dumps(state, indent=1))
    return float(state[CLOCK_KEY])
