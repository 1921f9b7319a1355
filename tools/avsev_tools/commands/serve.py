"""`avsev demo|verify`: the whole serving system, shown end to end or checked after a deploy.

avsev demo [--out demo-output]           # everything locally, told step by step
avsev verify avsev-prod                  # acceptance checks of a deployed stack (or --local)
avsev verify --preflight --stage prod    # before a deploy: does the template fit the account
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avsev_tools.commands._shared import Subcommands, add, aws


def cmd_demo(args: argparse.Namespace) -> int:
    from avsev_tools.local.demo import run

    run(Path(args.out), requests=args.requests)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Acceptance checks of a deployment (a stack's outputs) or of `avsev local up`."""
    from avsev_tools import verify

    if args.preflight:
        return _verify_preflight(args)
    if args.local:
        from avsev_tools.local.stack import read_state, use_endpoint

        state = read_state()
        use_endpoint(state["aws_endpoint_url"])
        target = verify.target_from_local(state)
    elif args.stack:
        target = verify.target_from_stack(args.stack, aws)
    else:
        print(
            "avsev verify: error: give a stack name (e.g. avsev-prod) or --local", file=sys.stderr
        )
        return 2
    checks = verify.run(verify.Session(target, aws, record_timeout_s=args.record_timeout))
    print(verify.table(target, checks))
    return 0 if all(c.passed for c in checks) else 1


def _verify_preflight(args: argparse.Namespace) -> int:
    """Before a deploy: the synthesized template's needs against the account's limits."""
    import boto3

    from avsev_tools import verify

    stack = args.stack or f"avsev-{args.stage}"
    path = Path(args.template or f"cdk.out/{stack}.template.json")
    if not path.is_file():
        print(
            f"avsev verify --preflight: error: no template at {path}: run `npx aws-cdk@2 synth` "
            "with the context you deploy with first (or give --template)",
            file=sys.stderr,
        )
        return 2
    template = json.loads(path.read_text())
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("lambda", region_name=args.region) if args.region else aws("lambda")
        checks = verify.preflight(client, template)
    except (BotoCoreError, ClientError) as e:
        print(
            f"avsev verify --preflight: error: reading Lambda's account settings: {e}",
            file=sys.stderr,
        )
        return 2
    print(verify.preflight_table(stack, str(path), checks))
    return 0 if all(c.passed for c in checks) else 1


def register(sub: Subcommands) -> None:
    p = add(sub, "demo", cmd_demo, "the whole system locally, end to end, told step by step")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--requests", type=int, default=3000)

    p = add(
        sub, "verify", cmd_verify, "acceptance checks of a deployment (stack outputs) or --local"
    )
    p.add_argument("stack", nargs="?", help="stack name, e.g. avsev-prod or avsev-staging")
    p.add_argument("--local", action="store_true", help="the running `avsev local up`")
    p.add_argument("--record-timeout", type=float, default=600.0, help="seconds for the record")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="before a deploy: would the synthesized template's reserved concurrency fit the "
        "account's Lambda concurrency (exit 1 if not)",
    )
    p.add_argument("--stage", default="prod", help="with --preflight and no stack: avsev-<stage>")
    p.add_argument("--template", help="with --preflight: default cdk.out/<stack>.template.json")
    p.add_argument("--region", help="with --preflight: the region to deploy to")
