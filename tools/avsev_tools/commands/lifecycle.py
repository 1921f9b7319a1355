"""`avsev lifecycle`: watch and steer the retraining loop (see avsev.rollout.lifecycle).

    avsev lifecycle status --bucket B          # paused?, the run in flight, the last result, recent audit
    avsev lifecycle pause --bucket B --reason "label feed broken"
    avsev lifecycle resume --bucket B
    avsev lifecycle retrain --bucket B --project P --reason "new labels"   # by hand, now
    avsev lifecycle audit --bucket B           # every trigger and decision, oldest first
    avsev lifecycle run --bucket B --registry s3://R/registry/ --champion production
        # one retraining (what the CodeBuild project runs): the file plus the labelled traffic,
        # compile, gates against the champion, publish with lineage, approve by --approval;
        # prints the result (its "version" and "decision"); exit 1 if it could not retrain

`--local` acts on the running local stack (`avsev local up`) instead of --bucket.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from avsev_tools.commands._shared import Subcommands, add, aws, print_json, use_local

ACTIONS = ("status", "pause", "resume", "retrain", "audit", "run")


def who() -> str:
    return os.environ.get("AVSEV_USER") or getpass.getuser()


def cmd_lifecycle(args: argparse.Namespace) -> int:
    try:
        out = run(args)
    except ValueError as e:
        print(f"avsev lifecycle {args.action}: error: {e}", file=sys.stderr)
        return 2
    print_json(out)
    return 0


def run(args: argparse.Namespace) -> Any:
    from avsev.rollout.lifecycle import Lifecycle, Trigger, codebuild_starter

    use_local(args)
    if not args.bucket:
        raise ValueError("give --bucket (the stack's DataBucket output) or --local")
    start = (
        codebuild_starter(aws("codebuild"), args.project, args.champion) if args.project else None
    )
    lifecycle = Lifecycle(aws("s3"), args.bucket, start=start)
    if args.action == "status":
        return lifecycle.summary()
    if args.action == "audit":
        return lifecycle.audit()
    if args.action == "run":
        return retrain_once(args)
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


def retrain_once(args: argparse.Namespace) -> dict[str, Any]:
    """`avsev lifecycle run`: one retraining against the registry's champion."""
    import datetime as dt
    import tempfile
    from pathlib import Path

    from avsev.constants import Env
    from avsev.data import default_data_path
    from avsev.rollout.registry import Location, Registry

    from avsev_tools.pipeline.retrain import RetrainingFailed, held_message, run_retraining

    if not args.registry:
        raise ValueError("run needs --registry s3://bucket/prefix/")
    registry = Registry(aws("s3"), Location.parse(args.registry), events=aws("events"))
    work = Path(args.work or tempfile.mkdtemp(prefix="avsev-retrain-"))
    champion = registry.fetch(registry.resolve(args.champion), work / "champion")
    try:
        produced = run_retraining(
            s3=aws("s3"),
            bucket=args.bucket,
            registry=registry,
            data_path=Path(args.data) if args.data else default_data_path(),
            champion_bundle=champion,
            work=work,
            at=dt.datetime.now(dt.UTC),
            approval=args.approval,
            run_id=os.environ.get("AVSEV_RUN_ID"),
        )
    except RetrainingFailed as e:  # nothing to learn from yet: the build succeeds, no candidate
        return {"version": None, "decision": {"status": "none"}, "reason": str(e)}
    topic = os.environ.get(Env.ALERTS_TOPIC_ARN)
    if produced["decision"].get("status") != "approved" and topic:
        subject, message = held_message(produced)
        aws("sns").publish(TopicArn=topic, Subject=subject[:100], Message=message)
    return produced


def register(sub: Subcommands) -> None:
    p = add(
        sub,
        "lifecycle",
        cmd_lifecycle,
        "the retraining loop: status, pause, resume, retrain by hand, audit",
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--bucket", help="the data bucket (stack output DataBucket)")
    p.add_argument("--local", action="store_true", help="the running local stack")
    p.add_argument("--reason", help="pause: why (required); retrain, resume: why")
    p.add_argument("--project", help="retrain: the CodeBuild project (stack output RetrainProject)")
    p.add_argument("--registry", help="run: the model registry, s3://bucket/prefix/")
    p.add_argument("--champion", default="production", help="run: version or alias to beat")
    p.add_argument("--data", help="run: the training file (default: the shipped NTSB data)")
    p.add_argument("--approval", choices=["auto", "manual"], default="auto", help="run: policy")
    p.add_argument("--work", help="run: a folder for the records, model and bundle")
