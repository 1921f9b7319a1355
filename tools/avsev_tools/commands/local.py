"""`avsev local up|deploy|tick`: the whole system on this machine (embedded AWS).

avsev local up [--bundle B ...]          # start it; prints the base URL and API key first
avsev local deploy --model B_OR_VERSION  # `cdk deploy` into the running stack
avsev local tick drift|ab|rollout|retrain [--advance MINUTES]   # a scheduled job, now
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsev import clock

from avsev_tools.commands._shared import Subcommands, aws, print_json

if TYPE_CHECKING:
    from avsev.monitoring.jobs import ABResult, DriftResult


def _local_bundle(build_root: Path) -> tuple[Path, str]:
    """The newest bundle built for this machine under `build_root`, or one built now from
    the shipped data (what `make model ARCH=<this machine>` builds); and how it was found."""
    import time

    from avsev.serving.bundle import BundleError, read_card
    from avsev.serving.runtime import host_arch

    arch = host_arch()
    built = []
    for card in [*build_root.glob(f"{arch}/*/card.json"), *build_root.glob("*/card.json")]:
        try:
            if read_card(card.parent).arch == arch:
                built.append(card)
        except BundleError:  # a damaged or foreign folder is not a candidate
            continue
    if built:
        newest = max(built, key=lambda c: c.stat().st_mtime).parent
        return newest, f"the newest of {len(built)} bundle(s) built for {arch}"
    from avsev.data import default_data_path, load

    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.train import save, train

    data = default_data_path()
    print(
        f"no bundle built for {arch} yet: training on {data} and compiling (about half a minute)",
        file=sys.stderr,
        flush=True,
    )
    started = time.perf_counter()
    model_dir = save(train(load(data)), build_root.parent / "train")
    path = build_bundle(model_dir, "1.0.0", out_root=build_root / arch, arch=arch, parallel_comp=2)
    return path, f"built now from {data} in {time.perf_counter() - started:.0f} s"


def cmd_local_up(args: argparse.Namespace) -> int:
    import signal
    import threading

    from avsev.data import SHIPPED_DATA

    from avsev_tools.local.cloudformation import DeployError
    from avsev_tools.local.stack import LocalStack
    from avsev_tools.local.synth import SynthError

    bundles = args.bundle
    if not bundles:
        bundle, how = _local_bundle(
            Path(args.build_root or SHIPPED_DATA.parents[1] / "layers/model/build")
        )
        print(f"bundle: {bundle} ({how}; --bundle picks another)", file=sys.stderr, flush=True)
        bundles = [bundle]
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    console = log.open("a")
    stack = LocalStack(bundles, port=args.port, console=console)
    try:
        stack.start()
    except (SynthError, DeployError) as e:  # the template or a deploy failed (rolled back)
        print(f"avsev local up: {e}", file=sys.stderr)
        return 2
    state = stack.write_state()
    print(f"base URL: {stack.base_url}")
    print(f"API key: {stack.api_key}   (send it as the X-Api-Key header)")
    print(
        f"embedded AWS: {stack.endpoint}   (AWS_ENDPOINT_URL; `avsev rollout --local ...` uses it)",
    )
    print(
        f"OpenAPI: {stack.base_url}/openapi.json   Swagger UI: {stack.base_url}/docs   dashboard: {stack.base_url}/dashboard",
    )
    print(f"state: {state}; function logs: {log}; Ctrl-C stops", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(args.schedule_seconds or 3600):
        if args.schedule_seconds:
            for job in ("drift", "ab"):
                _tick(job, stack.state())
    stack.stop()
    state.unlink(missing_ok=True)
    print("local stack stopped")
    return 0


def _tick(job: str, state: dict[str, Any], now: Any = None) -> ABResult | DriftResult:
    import json as json_
    import urllib.request

    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis, run_drift_check
    from avsev.rollout.aliases import Rollouts, current_experiment
    from avsev.serving.bundle import read_card

    from avsev_tools.local.aws import follow_clock, use_endpoint

    use_endpoint(state["aws_endpoint_url"])
    request = urllib.request.Request(
        f"{state['base_url']}/_local/flush", method="POST", headers={"X-Api-Key": state["api_key"]}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        json_.loads(answer.read())
    clients = Clients(aws("s3"), aws("cloudwatch"), aws("sns"))
    follow_clock()
    now = now or clock.now()
    alias = Rollouts(aws("lambda"), state["functions"]["predict"]).state()
    card = read_card(Path(state["bundles"][alias.stable_version]))
    # What the hourly rollup function does in AWS (Athena), here in DuckDB.
    rollup_with_duckdb(clients.s3, state["bucket"], card, now)
    if job == "drift":
        return run_drift_check(clients, state["bucket"], card, now, topic_arn=state["topic_arn"])
    experiment = current_experiment(
        aws("lambda"), clients.s3, state["bucket"], state["functions"]["predict"]
    )
    return run_ab_analysis(
        clients,
        state["bucket"],
        now,
        topic_arn=state["topic_arn"],
        champion=experiment.champion,
        candidate=experiment.candidate,
        since=experiment.since,
    )


def _tick_retrain(
    state: dict[str, Any], advance_minutes: float, *, by_hand: str | None = None
) -> dict[str, Any]:
    """The retraining loop's daily look on the local stack's simulated clock (or a retraining
    asked by hand): each run it starts is executed here, an approved candidate deployed by its
    registry version (the autopilot's ticks, `avsev local tick rollout`, take it from 10%)."""

    from avsev.data import default_data_path
    from avsev.rollout.aliases import Rollouts
    from avsev.rollout.registry import Location, Registry
    from avsev.serving.bundle import read_card

    from avsev_tools.local.aws import advance_clock, follow_clock, use_endpoint
    from avsev_tools.local.retraining import retrain_tick

    use_endpoint(state["aws_endpoint_url"])
    advance_clock(advance_minutes)
    follow_clock()
    now = clock.now()
    alias = Rollouts(aws("lambda"), state["functions"]["predict"]).state()
    champion = Path(state["bundles"][alias.stable_version])
    sns = aws("sns")
    result = retrain_tick(
        s3=aws("s3"),
        bucket=state["bucket"],
        registry=Registry(aws("s3"), Location.parse(f"s3://{state['bucket']}/registry/")),
        data_path=default_data_path(),
        champion_bundle=champion,
        card=read_card(champion),
        at=now,
        # the build's `make deploy MODEL=<version>`: the approved version, from the registry
        deploy=lambda version: _local_deploy(version, context={}),
        alert=lambda subject, message: sns.publish(
            TopicArn=state["topic_arn"], Subject=subject[:100], Message=message
        ),
        by_hand=by_hand,
    )
    return {
        "action": result.decision.action,
        "reason": result.decision.reason,
        "runs": [
            {
                k: v
                for k, v in r.items()
                if k in ("run", "attempt", "failed", "no_candidate", "version", "decision")
            }
            for r in result.runs
        ],
        "deployed": result.deployed,
    }


def _tick_rollout(state: dict[str, Any], advance_minutes: float) -> dict[str, Any]:
    """The autopilot's scheduled tick on the local stack's simulated clock, moved on first by
    `advance_minutes` (and the hourly A/B job run at that time, so the evidence is fresh)."""
    from avsev.rollout.autopilot import autopilot_for

    from avsev_tools.local.aws import advance_clock, follow_clock

    advance_clock(advance_minutes)
    follow_clock()
    now = clock.now()
    ab = _tick("ab", state, now)
    pilot = autopilot_for(
        lambda_client=aws("lambda"),
        s3=aws("s3"),
        bucket=state["bucket"],
        function=state["functions"]["predict"],
        cloudwatch=aws("cloudwatch"),
        alarm_prefix=state["alarm_prefix"],
        sns=aws("sns"),
        topic_arn=state["topic_arn"],
        clock=lambda: now,
    )
    return {
        "report": pilot.tick() | {"simulated_time": now.isoformat(timespec="seconds")},
        "keys": ab.keys,
        "alert_sent": ab.alert_sent,
    }


def cmd_local_deploy(args: argparse.Namespace) -> int:
    """`cdk deploy` into the running local stack: synthesize the app with this model (a bundle
    folder, or a version or alias of the local registry, approved unless --force) and update
    the stack with the local CloudFormation (custom resources, rollback and all)."""
    try:
        result = _local_deploy(
            args.model, context=parse_context_args(args.context), force=args.force
        )
    except LocalDeployFailed as e:
        print(f"avsev local deploy: {e}", file=sys.stderr)
        return e.code
    print_json(result)
    return 0


class LocalDeployFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_context_args(pairs: list[str] | None) -> dict[str, Any]:
    from avsev_tools.local.synth import parse_context

    return parse_context(pairs)


def _local_deploy(
    model: str, *, context: dict[str, Any], force: str | None = None
) -> dict[str, Any]:
    """The local `cdk deploy` of `model` (a bundle folder, or a registry version or alias)."""
    import contextlib

    from avsev_tools.local.assembly import Assembly
    from avsev_tools.local.aws import follow_clock
    from avsev_tools.local.cloudformation import CloudFormation, DeployError
    from avsev_tools.local.stack import STATE_FILE, read_state, use_endpoint, version_bundles
    from avsev_tools.local.synth import SynthError, synthesize

    state = read_state()
    use_endpoint(state["aws_endpoint_url"])
    follow_clock()  # the controller stamps the handover at the stack's simulated time
    context = {**state.get("context", {}), **context}
    if (Path(model) / "card.json").is_file():
        bundle = Path(model)
    else:  # a registry version or alias: the app fetches it (the bundle given passes its check)
        bundle = Path(state["bundles"][max(state["bundles"], key=int)])
        context |= {"model": model, "registry": f"s3://{state['bucket']}/registry/"}
        if force:
            context["force"] = force
    print(f"synthesizing {state['stack']} with {model} ...", file=sys.stderr, flush=True)
    try:
        synth = synthesize(bundle, stage=state.get("stage", "prod"), context=context)
    except SynthError as e:
        raise LocalDeployFailed(str(e), 2) from e
    how = "cached" if synth.cached else "the CDK app"
    print(f"synthesized in {synth.seconds:.1f} s ({how}): {synth.folder}", file=sys.stderr)
    cfn = CloudFormation()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the functions' logs; stdout is the result
            result = cfn.deploy(Assembly.read(synth.folder, synth.stack))
    except DeployError as e:
        for event in e.events:
            if event["ResourceStatus"].endswith("FAILED"):
                print(
                    f"{event['LogicalResourceId']}: {event['ResourceStatus']}: "
                    f"{event['ResourceStatusReason']}",
                    file=sys.stderr,
                )
        raise LocalDeployFailed(str(e), 1) from e
    state["bundles"] = version_bundles(cfn.code(state["stack"]), state["functions"]["predict"])
    state["assembly"] = str(synth.folder)
    STATE_FILE.write_text(json.dumps(state, indent=1))
    return {
        "status": result.status,
        "versions": result.versions,
        "created": result.created,
        "updated": result.updated,
        "deleted": result.deleted,
        "synth_seconds": round(synth.seconds, 1),
    }


def cmd_local_tick(args: argparse.Namespace) -> int:
    from avsev_tools.local.stack import read_state

    if args.job == "retrain":
        print_json(_tick_retrain(read_state(), args.advance, by_hand=args.reason))
        return 0
    if args.job == "rollout":
        out = _tick_rollout(read_state(), args.advance)
        print_json(out["report"])
        return 0
    tick = _tick(args.job, read_state())
    print_json(tick.report)
    print(f"report: {tick.keys['markdown']}; alert sent: {tick.alert_sent}", file=sys.stderr)
    return 0


def register(sub: Subcommands) -> None:
    local = sub.add_parser(
        "local", help="the whole system on this machine (embedded AWS)"
    ).add_subparsers(dest="local_command", required=True)
    p = local.add_parser("up", help="start the local stack; prints the base URL and API key first")
    p.set_defaults(fn=cmd_local_up)
    p.add_argument(
        "--bundle",
        action="append",
        help="model bundle for this machine; repeat: each is one deploy of the synthesized stack, "
        "in order (the first creates it: version 1, live; each next one is handed to the rollout "
        "autopilot) (default: the newest built under layers/model/build, or one built from the "
        "shipped data)",
    )
    p.add_argument(
        "--build-root",
        help="where to look for bundles without --bundle (default: layers/model/build)",
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--schedule-seconds", type=float, default=0, help="run drift and A/B checks on this timer"
    )
    p.add_argument("--log", default=".avsev-local/functions.log")
    p = local.add_parser(
        "deploy", help="synthesize with a model and update the running local stack (cdk deploy)"
    )
    p.set_defaults(fn=cmd_local_deploy)
    p.add_argument(
        "--model",
        required=True,
        help="a bundle folder, or a version or alias of the local registry",
    )
    p.add_argument("--force", metavar="REASON", help="deploy an unapproved registry version")
    p.add_argument(
        "-c", "--context", action="append", metavar="KEY=VALUE", help="CDK context, as cdk -c"
    )
    p = local.add_parser("tick", help="run a scheduled job now against the running local stack")
    p.set_defaults(fn=cmd_local_tick)
    p.add_argument("job", choices=["drift", "ab", "rollout", "retrain"])
    p.add_argument(
        "--advance",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="rollout, retrain: move the local stack's simulated clock on first",
    )
    p.add_argument(
        "--reason",
        help="retrain: retrain now, asked by hand for this reason (else: the daily look)",
    )
