"""`avsev lifecycle`: watch and steer the retraining loop (see avsev.rollout.lifecycle).

    avsev lifecycle status --bucket B          # paused?, the run in flight, the last result, recent audit
    avsev lifecycle pause --bucket B --reason "label feed broken"
    avsev lifecycle resume --bucket B
    avsev lifecycle retrain --bucket B --project P --reason "new labels"   # by hand, now
    avsev lifecycle audit --bucket B           # every trigger and decision, oldest first

`--local` acts on the running local stack (`avsev local up`) instead of --bucket.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import Any

ACTIONS = ("status", "pause", "resume", "retrain", "audit")


def who() -> str:
    return os.environ.get("AVSEV_USER") or getpass.getuser()


def summary(lifecycle: Any, recent: int = 5) -> dict[str, Any]:
    """What `status` prints and `avsev rollout status` shows of the loop."""
    state = lifecycle.state()
    return {
        "paused": state.paused,
        "pause_reason": state.pause_reason,
        "changed_by": state.changed_by,
        "run_in_flight": state.run.model_dump(mode="json") if state.run else None,
        "last_started_at": state.last_started_at.isoformat() if state.last_started_at else None,
        "last_result": state.last_result,
        "recent": lifecycle.audit()[-recent:],
    }


def run(
    args: argparse.Namespace,
    *,
    aws: Callable[[str], Any],
    use_local: Callable[[argparse.Namespace], None],
) -> Any:
    from avsev.rollout.lifecycle import Lifecycle, Trigger, codebuild_starter

    use_local(args)
    if not args.bucket:
        raise ValueError("give --bucket (the stack's DataBucket output) or --local")
    start = codebuild_starter(aws("codebuild"), args.project) if args.project else None
    lifecycle = Lifecycle(aws("s3"), args.bucket, start=start)
    if args.action == "status":
        return summary(lifecycle)
    if args.action == "audit":
        return lifecycle.audit()
    if args.action == "pause":
        if not args.reason:
            raise ValueError("pause needs --reason (it is shown to whoever finds the loop paused)")
        return lifecycle.pause(args.reason, by=who()).action
    if args.action == "resume":
        return lifecycle.resume(by=who(), reason=args.reason or "").action
    if not args.project:
        raise ValueError("retrain needs --project (the stack's RetrainProject output)")
    decision = lifecycle.consider([Trigger("manual", args.reason or "asked by hand")], by=who())
    return {"action": decision.action, "reason": decision.reason}


def register(
    add: Callable[..., argparse.ArgumentParser], fn: Callable[[argparse.Namespace], int]
) -> None:
    p = add("lifecycle", fn, "the retraining loop: status, pause, resume, retrain by hand, audit")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--bucket", help="the data bucket (stack output DataBucket)")
    p.add_argument("--local", action="store_true", help="the running local stack")
    p.add_argument("--reason", help="pause: why (required); retrain, resume: why")
    p.add_argument("--project", help="retrain: the CodeBuild project (stack output RetrainProject)")
