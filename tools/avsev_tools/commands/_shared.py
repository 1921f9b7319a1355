"""What the command groups share: how a group declares a command, the JSON a command prints,
the AWS clients, and `--local` (the running local stack in place of a deployment)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, Protocol

Command = Callable[[argparse.Namespace], int]


class Subcommands(Protocol):
    """Where a group adds its commands: what `ArgumentParser.add_subparsers()` returns."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add(sub: Subcommands, name: str, fn: Command, help_: str) -> argparse.ArgumentParser:
    """`avsev <name> …`, run by `fn`; its one-line help is also its `--help` description."""
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(fn=fn)
    return p


def print_json(doc: Any) -> None:
    """A report model as the JSON it is written in; anything else as json.dumps sees it."""
    from pydantic import BaseModel

    if isinstance(doc, BaseModel):
        doc = doc.model_dump(mode="json")
    print(json.dumps(doc, indent=1, default=str))


def aws(service: str) -> Any:
    """A boto3 client; it honours AWS_ENDPOINT_URL (the local stack) like every client here."""
    import boto3

    return boto3.client(service)


def use_local(args: argparse.Namespace) -> None:
    """`--local`: act on the running local stack (its embedded AWS, function and bucket)."""
    if not getattr(args, "local", False):
        return
    from avsev_tools.local.aws import follow_clock, read_state, use_endpoint

    state = read_state()
    use_endpoint(state["aws_endpoint_url"])
    follow_clock()  # what it does is stamped at the stack's simulated time
    if getattr(args, "function", None) is None:
        args.function = state["functions"]["predict"]
    if getattr(args, "bucket", None) is None:
        args.bucket = state["bucket"]
    if hasattr(args, "alarm_prefix") and args.alarm_prefix is None:
        args.alarm_prefix = state["alarm_prefix"]
