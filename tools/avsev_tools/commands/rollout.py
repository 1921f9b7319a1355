"""`avsev rollout`: move the live alias's weight between function versions, by hand or by
the autopilot, behind the guards (alarms, A/B advice) and into the audit trail.

    avsev rollout status --function F [--bucket B]
    avsev rollout start --function F --version V [--weight 0.1]
    avsev rollout step|promote|rollback --function F
    avsev rollout auto --function F --version V --bucket B   # the autopilot takes it from here
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from avsev.constants import LIVE_ALIAS

from avsev_tools.commands._shared import Subcommands, add, aws, print_json, use_local


def _decision(report: Any) -> str | None:
    return report.decision if report is not None else None


def rollouts_from_args(args: argparse.Namespace) -> Any:
    from avsev.monitoring.store import latest_ab_report
    from avsev.rollout.aliases import Rollouts, s3_audit

    s3 = aws("s3") if args.bucket else None
    return Rollouts(
        aws("lambda"),
        args.function,
        alias=args.alias,
        cloudwatch=aws("cloudwatch"),
        alarm_prefix=args.alarm_prefix or "avsev-",
        ab_advice=(lambda: _decision(latest_ab_report(s3, args.bucket))) if s3 else None,
        audit=s3_audit(s3, args.bucket) if s3 else None,
    )


def cmd_rollout(args: argparse.Namespace) -> int:
    from avsev.rollout.aliases import RolloutError

    use_local(args)
    if not args.function:
        print("avsev rollout: error: --function is required (or --local)", file=sys.stderr)
        return 2
    r = rollouts_from_args(args)
    try:
        if args.action in ("auto", "status") and args.bucket:
            from avsev.rollout.autopilot import Autopilot, AutopilotConfig, autopilot_for

            pilot: Autopilot = autopilot_for(
                lambda_client=aws("lambda"),
                s3=aws("s3"),
                bucket=args.bucket,
                function=args.function,
                cloudwatch=aws("cloudwatch"),
                alarm_prefix=args.alarm_prefix or "avsev-",
            )
            if args.action == "status":
                from avsev.rollout.lifecycle import Lifecycle

                result = r.status() | {
                    "autopilot": pilot.status(),
                    "retraining": Lifecycle(aws("s3"), args.bucket).summary(),
                }
            else:
                if not args.version:
                    raise RolloutError("auto needs --version (the function version to roll out)")
                config = AutopilotConfig(
                    min_minutes=args.min_minutes,
                    max_hours=args.max_hours,
                    after_shadow=args.after_shadow,
                )
                result = pilot.start(args.version, config, force=args.force)
        elif args.action == "auto":
            raise RolloutError(
                "the autopilot keeps its state in the audit: give --bucket (or --local)"
            )
        elif args.action == "status":
            result = r.status()
        elif args.action == "start":
            result = r.start(args.version, args.weight, force=args.force)
        elif args.action == "step":
            result = r.step(args.weight, force=args.force)
        elif args.action == "promote":
            result = r.promote(force=args.force)
        else:
            result = r.rollback()
    except RolloutError as e:
        print(f"avsev rollout {args.action}: refused: {e}", file=sys.stderr)
        return 3
    print_json(result)
    return 0


def register(sub: Subcommands) -> None:
    p = add(
        sub, "rollout", cmd_rollout, "alias weight shifts: status, start, step, promote, rollback"
    )
    p.add_argument("action", choices=["status", "start", "step", "promote", "rollback", "auto"])
    p.add_argument("--function", help="function name (e.g. the predict function)")
    p.add_argument(
        "--min-minutes", type=float, default=60.0, help="auto: least time at 10%% (50%% holds 30)"
    )
    p.add_argument(
        "--max-hours", type=float, default=24.0, help="auto: an inconclusive step stops after this"
    )
    p.add_argument(
        "--after-shadow",
        action="store_true",
        help="auto: start 10%% only once the candidate scored in shadow is not worse (McNemar)",
    )
    p.add_argument(
        "--local", action="store_true", help="act on the running local stack (`avsev local up`)"
    )
    p.add_argument("--alias", default=LIVE_ALIAS)
    p.add_argument("--version", help="function version to start canarying")
    p.add_argument("--weight", type=float, default=0.1)
    p.add_argument(
        "--force", metavar="REASON", help="override the guards, with a reason for the audit"
    )
    p.add_argument("--bucket", help="data bucket: A/B advice and the audit trail")
    p.add_argument(
        "--alarm-prefix",
        help="alarms that guard the rollout (name prefix; avsev-<stage>-predict- in AWS, the "
        "stack's with --local, else avsev-)",
    )
