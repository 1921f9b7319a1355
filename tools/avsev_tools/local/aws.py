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
