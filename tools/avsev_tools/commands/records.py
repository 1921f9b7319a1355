"""`avsev records`: the prediction and outcome records.

avsev records redrive --stack S          # put what Firehose failed to deliver into the tables
"""

from __future__ import annotations

import argparse
import sys

from avsev_tools.commands._shared import Subcommands, aws, print_json, use_local


def cmd_records_redrive(args: argparse.Namespace) -> int:
    """Put the records Firehose failed to deliver into their tables (Parquet, by day)."""
    from avsev_tools.records_redrive import redrive

    use_local(args)
    try:
        bucket = args.bucket
        if not bucket and args.stack:
            from avsev_tools.deployment import stack_outputs

            bucket = stack_outputs(aws("cloudformation"), args.stack).get("DataBucket")
        if not bucket:
            raise ValueError("give --stack, --bucket or --local")
        result = redrive(aws("s3"), bucket, table=args.table, dry_run=args.dry_run)
    except ValueError as e:
        print(f"avsev records redrive: error: {e}", file=sys.stderr)
        return 2
    print_json(result.as_dict())
    return 1 if result.failed else 0


def register(sub: Subcommands) -> None:
    records = sub.add_parser("records", help="prediction and outcome records").add_subparsers(
        dest="records_command", required=True
    )
    p = records.add_parser(
        "redrive",
        help="put records Firehose failed to deliver (firehose-errors/) into their tables",
    )
    p.set_defaults(fn=cmd_records_redrive)
    p.add_argument("--stack", help="read the data bucket from this stack's outputs")
    p.add_argument("--bucket")
    p.add_argument("--local", action="store_true", help="the running `avsev local up`")
    p.add_argument("--table", choices=["predictions", "outcomes"], help="only this table's")
    p.add_argument("--dry-run", action="store_true", help="count, do not write or delete")
