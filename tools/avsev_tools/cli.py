"""The `avsev` command: train, evaluate, compare, build (and more as the system grows)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from avsev_tools.commands import (
    batch,
    cost,
    lifecycle,
    local,
    model,
    monitoring,
    records,
    registry,
    rollout,
    serve,
)

# Each group declares its own commands; this order is the order `avsev --help` lists them in.
GROUPS = (model, monitoring, rollout, registry, lifecycle, batch, serve, cost, records, local)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avsev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from avsev.data import DataError
    from avsev.serving.bundle import BundleError

    from avsev_tools.pipeline.build import BuildError
    from avsev_tools.pipeline.compile import CompileError

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (BuildError, CompileError, DataError, BundleError, FileNotFoundError, ValueError) as e:
        print(f"avsev {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
