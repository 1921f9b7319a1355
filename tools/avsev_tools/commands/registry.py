"""`avsev registry`: the model registry, what may serve and where it came from.

avsev registry publish BUNDLE [--data FILE]     # a new version, with its lineage
avsev registry list|audit
avsev registry show|approve|reject VERSION [--reason R]
avsev registry alias VERSION --alias production|candidate --reason R
avsev registry resolve VERSION_OR_ALIAS [--force REASON]   # fetch what a deploy ships
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from avsev_tools.commands._shared import Subcommands, add, aws, print_json, use_local


def cmd_registry(args: argparse.Namespace) -> int:
    """The model registry: publish, list, show, approve, reject, alias, resolve."""
    import os

    from avsev.rollout.registry import Location, Registry, RegistryError

    use_local(args)
    url = args.registry or os.environ.get("AVSEV_REGISTRY")
    if args.local and not url:
        url = f"s3://{args.bucket}/registry/"
    if not url:
        print(
            "error: give --registry s3://bucket/prefix (or AVSEV_REGISTRY, or --local)",
            file=sys.stderr,
        )
        return 2
    registry = Registry(aws("s3"), Location.parse(url), events=aws("events"))
    try:
        if args.action == "publish":
            if not args.target:
                raise RegistryError("publish needs the bundle folder")
            data = Path(args.data) if args.data else None
            out: Any = registry.publish(Path(args.target), training_data=data)
        elif args.action == "list":
            out = registry.list()
        elif args.action == "show":
            out = registry.show(_need(args.target, "a version"))
        elif args.action in ("approve", "reject"):
            version = _need(args.target, "a version")
            reason = _need(args.reason, "--reason")
            out = (registry.approve if args.action == "approve" else registry.reject)(
                version, reason
            )
        elif args.action == "alias":
            out = registry.set_alias(
                _need(args.alias, "--alias production|candidate"),
                _need(args.target, "a version"),
                args.reason or "",
            )
        elif args.action == "resolve":  # what a deploy ships: approved, or forced with a reason
            version = registry.for_deploy(
                _need(args.target, "a version or alias"), force=args.force
            )
            out = {"version": version, "bundle": str(registry.fetch(version, Path(args.into)))}
        else:  # audit
            out = registry.audit_trail()
    except RegistryError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print_json(out)
    return 0


def _need(value: str | None, what: str) -> str:
    from avsev.rollout.registry import RegistryError

    if not value:
        raise RegistryError(f"this action needs {what}")
    return value


def register(sub: Subcommands) -> None:
    p = add(sub, "registry", cmd_registry, "the model registry: what may serve, with lineage")
    p.add_argument(
        "action",
        choices=["publish", "list", "show", "approve", "reject", "alias", "resolve", "audit"],
    )
    p.add_argument("target", nargs="?", help="bundle folder (publish), version or alias")
    p.add_argument("--registry", help="s3://bucket/prefix (default: $AVSEV_REGISTRY)")
    p.add_argument("--local", action="store_true", help="the running local stack's registry")
    p.add_argument("--bucket", help=argparse.SUPPRESS)
    p.add_argument("--reason", help="why (approve, reject, alias)")
    p.add_argument("--alias", choices=["production", "candidate"])
    p.add_argument(
        "--data", help="publish: the training data file (sha256 and size in the lineage)"
    )
    p.add_argument(
        "--force", metavar="REASON", help="resolve: deploy an unapproved version, audited"
    )
    p.add_argument(
        "--into", default="layers/model/registry", help="resolve: where to put the bundle"
    )
