"""The `avsev` command: train, evaluate, compare, build (and more as the system grows)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from avsev.constants import LIVE_ALIAS


def _print_json(doc: Any) -> None:
    """A report model as the JSON it is written in; anything else as json.dumps sees it."""
    from pydantic import BaseModel

    if isinstance(doc, BaseModel):
        doc = doc.model_dump(mode="json")
    print(json.dumps(doc, indent=1, default=str))


def _load_data(path: str | None, *, rows: int = 20_000, seed: int = 0) -> Any:
    from avsev.data import load
    from avsev.pipeline.synthetic import generate

    return load(path) if path else generate(rows, seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    from avsev.pipeline.train import save, train

    data = _load_data(args.data, rows=args.synthetic_rows, seed=args.seed)
    params = json.loads(args.params) if args.params else None
    result = train(data, params=params, balanced=args.balanced, seed=args.seed, rounds=args.rounds)
    out = save(result, args.out)
    from avsev.pipeline.evaluate import summary_lines

    info = result.info
    test = result.metrics["test"]
    base = test["baseline_majority"]
    aug = info["augmentation"]
    print(f"trained on {data.summary()['path']}: {info['split']}", file=sys.stderr)
    print(
        f"{info['n_trees']} trees, blank-field augmentation rate {aug['rate']} (chosen on "
        f"validation); shipped: refit on {info['refit']['on']} ({info['refit']['rows']} rows); "
        f"test weighted F1 {test['weighted_f1']:.3f} (majority baseline "
        f"{base['weighted_f1']:.3f}); written to {out}",
        file=sys.stderr,
    )
    print("held-out test rows:", file=sys.stderr)
    for line in summary_lines(test, info["calibration"]):
        print("  " + line, file=sys.stderr)
    blank = result.metrics["test_top_field_blank"]
    print(
        f"  with {blank['field']} blanked in {blank['share']:.0%} of them: log loss "
        f"{blank['log_loss']:.4f}, gain over prior {blank['gain_over_prior']:.1%}",
        file=sys.stderr,
    )
    _print_json(result.metrics)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from avsev.pipeline.build import build_bundle

    path = build_bundle(
        args.model,
        args.version,
        out_root=args.out,
        arch=args.arch,
        name=args.name,
        parallel_comp=args.parallel_comp,
    )
    print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from avsev.data import load
    from avsev.pipeline.evaluate import evaluate, summary_lines

    result = evaluate(args.bundle, load(args.data))
    print(f"{result['bundle']} on {args.data}", file=sys.stderr)
    for line in summary_lines(result["metrics"], result["calibration"]):
        print("  " + line, file=sys.stderr)
    _print_json(result)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from avsev.data import load
    from avsev.pipeline.evaluate import compare

    result = compare(args.a, args.b, load(args.data))
    _print_json(result)
    print(result["verdict"], file=sys.stderr)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    """Has my new data moved? An export file against a bundle's reference profile, through
    the same rollup queries (DuckDB) and report as the scheduled drift check."""
    import datetime as dt

    from avsev.data import load
    from avsev.monitoring.offline import reports_from_records
    from avsev.pipeline.evaluate import predict_proba
    from avsev.serving.bundle import load_bundle
    from avsev.serving.records import OutcomeRecord, PredictionRecord
    from avsev.serving.schema import Severity

    bundle = load_bundle(args.bundle, explain=False)
    data = load(args.data, require_label=False)
    rows = data.reports()
    proba: Any = predict_proba(bundle, data) if rows else []
    at = dt.datetime.now(dt.UTC)
    records: list[PredictionRecord | OutcomeRecord] = []
    labels = data.frame.get("severity")
    for i, (row, p) in enumerate(zip(rows, proba, strict=True)):
        ev = str(row.get("ev_id") or f"row{i}")
        records.append(
            PredictionRecord(
                request_id=f"file-{i}",
                ev_id=ev,
                timestamp=at,
                model_name=bundle.name,
                model_version=bundle.version,
                function_version="file",
                features={k: v for k, v in row.items() if k != "ev_id"},
                probabilities={c: float(x) for c, x in zip(bundle.classes, p, strict=True)},
                predicted=cast(Severity, bundle.classes[int(p.argmax())]),
                latency_ms=0.0,
            )
        )
        if labels is not None and isinstance(labels.iloc[i], str):
            records.append(
                OutcomeRecord(
                    request_id=f"file-{i}", ev_id=ev, timestamp=at, actual_severity=labels.iloc[i]
                )
            )
    report = reports_from_records(
        records,
        card=bundle.card,
        window={"data": str(args.data)},
        dataset_drift_share=args.dataset_drift_share,
    ).drift
    _print_json(report)
    return 0


def _aws(service: str) -> Any:
    import boto3

    return boto3.client(
        service
    )  # honours AWS_ENDPOINT_URL (the local stack) like every client here


def cmd_ab_report(args: argparse.Namespace) -> int:
    import datetime as dt

    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis
    from avsev.monitoring.performance import parse_cost_matrix

    _use_local(args)
    at = dt.datetime.fromisoformat(args.at) if args.at else dt.datetime.now(dt.UTC)
    clients = Clients(_aws("s3"), _aws("cloudwatch"), _aws("sns"))
    if args.local or args.rollup == "duckdb":
        # The local stack has no scheduled rollup: roll the window up here first.
        rollup_with_duckdb(clients.s3, args.bucket, None, at, days=args.days)
    out = run_ab_analysis(
        clients,
        args.bucket,
        at,
        days=args.days,
        champion=args.champion,
        candidate=args.candidate,
        topic_arn=args.topic,
        decision_metric=args.metric,
        cost=parse_cost_matrix(args.cost_matrix),
        margin=args.margin,
    )
    _print_json(out["report"])
    print(f"report: s3://{args.bucket}/{out['keys']['markdown']}", file=sys.stderr)
    return 0


def _decision(report: Any) -> str | None:
    return report.decision if report is not None else None


def rollouts_from_args(args: argparse.Namespace) -> Any:
    from avsev.monitoring.store import latest_ab_report
    from avsev.rollout.aliases import Rollouts, s3_audit

    s3 = _aws("s3") if args.bucket else None
    return Rollouts(
        _aws("lambda"),
        args.function,
        alias=args.alias,
        cloudwatch=_aws("cloudwatch"),
        alarm_prefix=args.alarm_prefix or "avsev-",
        ab_advice=(lambda: _decision(latest_ab_report(s3, args.bucket))) if s3 else None,
        audit=s3_audit(s3, args.bucket) if s3 else None,
    )


def _use_local(args: argparse.Namespace) -> None:
    """`--local`: act on the running local stack (its embedded AWS, function and bucket)."""
    if not getattr(args, "local", False):
        return
    from avsev.local.stack import read_state, use_endpoint

    state = read_state()
    use_endpoint(state["aws_endpoint_url"])
    if getattr(args, "function", None) is None:
        args.function = state["functions"]["predict"]
    if getattr(args, "bucket", None) is None:
        args.bucket = state["bucket"]
    if hasattr(args, "alarm_prefix") and args.alarm_prefix is None:
        args.alarm_prefix = state["alarm_prefix"]


def cmd_registry(args: argparse.Namespace) -> int:
    """The model registry: publish, list, show, approve, reject, alias, resolve."""
    import os

    from avsev.rollout.registry import Location, Registry, RegistryError

    _use_local(args)
    url = args.registry or os.environ.get("AVSEV_REGISTRY")
    if args.local and not url:
        url = f"s3://{args.bucket}/registry/"
    if not url:
        print(
            "error: give --registry s3://bucket/prefix (or AVSEV_REGISTRY, or --local)",
            file=sys.stderr,
        )
        return 2
    registry = Registry(_aws("s3"), Location.parse(url), events=_aws("events"))
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
    _print_json(out)
    return 0


def _need(value: str | None, what: str) -> str:
    from avsev.rollout.registry import RegistryError

    if not value:
        raise RegistryError(f"this action needs {what}")
    return value


def _local_clock(args: argparse.Namespace) -> Any:
    """The local stack's simulated clock (`avsev local tick rollout --advance M`), else None."""
    if not getattr(args, "local", False):
        return None
    import datetime as dt

    from avsev.local.stack import read_state

    offset = dt.timedelta(minutes=float(read_state().get("clock_offset_minutes", 0.0)))
    return lambda: dt.datetime.now(dt.UTC) + offset


def cmd_rollout(args: argparse.Namespace) -> int:
    from avsev.rollout.aliases import RolloutError

    _use_local(args)
    if not args.function:
        print("avsev rollout: error: --function is required (or --local)", file=sys.stderr)
        return 2
    r = rollouts_from_args(args)
    try:
        if args.action in ("auto", "status") and args.bucket:
            from avsev.rollout.autopilot import Autopilot, AutopilotConfig, autopilot_for

            pilot: Autopilot = autopilot_for(
                lambda_client=_aws("lambda"),
                s3=_aws("s3"),
                bucket=args.bucket,
                function=args.function,
                cloudwatch=_aws("cloudwatch"),
                alarm_prefix=args.alarm_prefix or "avsev-",
                clock=_local_clock(args),
            )
            if args.action == "status":
                from avsev.commands.lifecycle import summary
                from avsev.rollout.lifecycle import Lifecycle

                result = r.status() | {
                    "autopilot": pilot.status(),
                    "retraining": summary(Lifecycle(_aws("s3"), args.bucket)),
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
    _print_json(result)
    return 0


def cmd_lifecycle(args: argparse.Namespace) -> int:
    from avsev.commands import lifecycle
    from avsev.pipeline.retrain import RetrainingFailed

    try:
        out = lifecycle.run(args, aws=_aws, use_local=_use_local)
    except RetrainingFailed as e:
        print(f"avsev lifecycle {args.action}: failed: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"avsev lifecycle {args.action}: error: {e}", file=sys.stderr)
        return 2
    _print_json(out)
    return 0


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
            if read_card(card.parent).get("arch") == arch:
                built.append(card)
        except BundleError:  # a damaged or foreign folder is not a candidate
            continue
    if built:
        newest = max(built, key=lambda c: c.stat().st_mtime).parent
        return newest, f"the newest of {len(built)} bundle(s) built for {arch}"
    from avsev.data import default_data_path, load
    from avsev.pipeline.build import build_bundle
    from avsev.pipeline.train import save, train

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
    from avsev.local.cloudformation import DeployError
    from avsev.local.stack import LocalStack
    from avsev.local.synth import SynthError

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


def _tick(job: str, state: dict[str, Any], now: Any = None) -> dict[str, Any]:
    import datetime as dt
    import json as json_
    import urllib.request

    from avsev.local.stack import use_endpoint
    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis, run_drift_check
    from avsev.rollout.aliases import Rollouts
    from avsev.serving.bundle import read_card

    use_endpoint(state["aws_endpoint_url"])
    request = urllib.request.Request(
        f"{state['base_url']}/_local/flush", method="POST", headers={"X-Api-Key": state["api_key"]}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        json_.loads(answer.read())
    clients = Clients(_aws("s3"), _aws("cloudwatch"), _aws("sns"))
    offset = dt.timedelta(minutes=float(state.get("clock_offset_minutes", 0.0)))
    now = now or dt.datetime.now(dt.UTC) + offset
    alias = Rollouts(_aws("lambda"), state["functions"]["predict"]).state()
    card = read_card(Path(state["bundles"][alias.stable_version]))
    # What the hourly rollup function does in AWS (Athena), here in DuckDB.
    rollup_with_duckdb(clients.s3, state["bucket"], card, now)
    if job == "drift":
        return run_drift_check(clients, state["bucket"], card, now, topic_arn=state["topic_arn"])
    champion = alias.model_versions.get(alias.stable_version)
    candidate = (
        alias.model_versions.get(alias.candidate_version) if alias.candidate_version else None
    )
    return run_ab_analysis(
        clients,
        state["bucket"],
        now,
        topic_arn=state["topic_arn"],
        champion=champion if candidate else None,
        candidate=candidate,
    )


def _tick_retrain(
    state: dict[str, Any], advance_minutes: float, *, by_hand: str | None = None
) -> dict[str, Any]:
    """The retraining loop's daily look on the local stack's simulated clock (or a retraining
    asked by hand): each run it starts is executed here, an approved candidate deployed."""
    import datetime as dt

    from avsev.data import default_data_path
    from avsev.local.retraining import retrain_tick
    from avsev.local.stack import STATE_FILE, use_endpoint
    from avsev.rollout.aliases import Rollouts
    from avsev.rollout.registry import Location, Registry
    from avsev.serving.bundle import read_card

    use_endpoint(state["aws_endpoint_url"])
    state["clock_offset_minutes"] = float(state.get("clock_offset_minutes", 0.0)) + advance_minutes
    STATE_FILE.write_text(json.dumps(state, indent=1))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=state["clock_offset_minutes"])
    alias = Rollouts(_aws("lambda"), state["functions"]["predict"]).state()
    champion = Path(state["bundles"][alias.stable_version])
    sns = _aws("sns")
    result = retrain_tick(
        s3=_aws("s3"),
        bucket=state["bucket"],
        registry=Registry(_aws("s3"), Location.parse(f"s3://{state['bucket']}/registry/")),
        data_path=default_data_path(),
        champion_bundle=champion,
        card=read_card(champion),
        at=now,
        deploy=lambda bundle: _local_deploy(str(bundle), context={}),
        alert=lambda subject, message: sns.publish(
            TopicArn=state["topic_arn"], Subject=subject[:100], Message=message
        ),
        by_hand=by_hand,
    )
    return {
        "action": result.decision.action,
        "reason": result.decision.reason,
        "runs": [
            {k: v for k, v in r.items() if k in ("run", "attempt", "failed", "version", "decision")}
            for r in result.runs
        ],
        "deployed": result.deployed,
    }


def _tick_rollout(state: dict[str, Any], advance_minutes: float) -> dict[str, Any]:
    """The autopilot's scheduled tick on the local stack's simulated clock, moved on first by
    `advance_minutes` (and the hourly A/B job run at that time, so the evidence is fresh)."""
    import datetime as dt
    import json as json_

    from avsev.local.stack import STATE_FILE
    from avsev.rollout.autopilot import autopilot_for

    state["clock_offset_minutes"] = float(state.get("clock_offset_minutes", 0.0)) + advance_minutes
    STATE_FILE.write_text(json_.dumps(state, indent=1))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=state["clock_offset_minutes"])
    ab = _tick("ab", state, now)
    pilot = autopilot_for(
        lambda_client=_aws("lambda"),
        s3=_aws("s3"),
        bucket=state["bucket"],
        function=state["functions"]["predict"],
        cloudwatch=_aws("cloudwatch"),
        alarm_prefix=state["alarm_prefix"],
        sns=_aws("sns"),
        topic_arn=state["topic_arn"],
        clock=lambda: now,
    )
    return {
        "report": pilot.tick() | {"simulated_time": now.isoformat(timespec="seconds")},
        "keys": ab["keys"],
        "alert_sent": ab["alert_sent"],
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
    _print_json(result)
    return 0


class LocalDeployFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_context_args(pairs: list[str] | None) -> dict[str, Any]:
    from avsev.local.synth import parse_context

    return parse_context(pairs)


def _local_deploy(
    model: str, *, context: dict[str, Any], force: str | None = None
) -> dict[str, Any]:
    """The local `cdk deploy` of `model` (a bundle folder, or a registry version or alias)."""
    import contextlib

    from avsev.local.assembly import Assembly
    from avsev.local.cloudformation import CloudFormation, DeployError
    from avsev.local.stack import STATE_FILE, read_state, use_endpoint, version_bundles
    from avsev.local.synth import SynthError, synthesize

    state = read_state()
    use_endpoint(state["aws_endpoint_url"])
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
    from avsev.local.stack import read_state

    if args.job == "retrain":
        _print_json(_tick_retrain(read_state(), args.advance, by_hand=args.reason))
        return 0
    if args.job == "rollout":
        out = _tick_rollout(read_state(), args.advance)
        _print_json(out["report"])
        return 0
    out = _tick(args.job, read_state())
    _print_json(out["report"])
    print(f"report: {out['keys']['markdown']}; alert sent: {out['alert_sent']}", file=sys.stderr)
    return 0


def _score_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """`--bundle` a directory, `--data` a file, `--out` a file in an existing directory;
    raises ValueError naming the option otherwise."""
    bundle, data, out = Path(args.bundle), Path(args.data), Path(args.out)
    if not bundle.is_dir():
        problem = "is a file" if bundle.exists() else "does not exist"
        raise ValueError(f"--bundle {bundle}: {problem}; a model bundle directory is expected")
    if data.is_dir():
        raise ValueError(f"--data {data}: is a directory; a CSV or JSON-lines file is expected")
    if not data.is_file():
        raise ValueError(f"--data {data}: does not exist; a CSV or JSON-lines file is expected")
    if out.is_dir():
        raise ValueError(
            f"--out {out}: is a directory; an output .csv or .parquet file is expected"
        )
    if not out.parent.is_dir():
        problem = "is a file" if out.parent.exists() else "does not exist"
        raise ValueError(f"--out {out}: its directory {out.parent} {problem}")
    from avsev.batch import OutputName

    names = OutputName.of_output(out.name)
    written = [out] + [names.beside(out, kind) for kind in ("rejected", "summary")]
    if any(path.resolve() == data.resolve() for path in written):
        raise ValueError(f"--out {out}: would overwrite --data {data}")
    return bundle, data, out


def _positive(text: str) -> int:
    """A count of at least 1 (`--chunk-rows`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number is expected") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def cmd_score(args: argparse.Namespace) -> int:
    import datetime as dt

    from avsev.batch import score_file
    from avsev.serving.bundle import load_bundle

    bundle_dir, data, out = _score_paths(args)
    bundle = load_bundle(bundle_dir, explain=False)
    scored_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary = score_file(bundle, data, out, scored_at=scored_at, chunk_rows=args.chunk_rows)
    _print_json(summary.as_dict())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from avsev.local.demo import run

    run(Path(args.out), requests=args.requests)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Acceptance checks of a deployment (a stack's outputs) or of `avsev local up`."""
    from avsev import verify

    if args.preflight:
        return _verify_preflight(args)
    if args.local:
        from avsev.local.stack import read_state, use_endpoint

        state = read_state()
        use_endpoint(state["aws_endpoint_url"])
        target = verify.target_from_local(state)
    elif args.stack:
        target = verify.target_from_stack(args.stack, _aws)
    else:
        print(
            "avsev verify: error: give a stack name (e.g. avsev-prod) or --local", file=sys.stderr
        )
        return 2
    checks = verify.run(verify.Session(target, _aws, record_timeout_s=args.record_timeout))
    print(verify.table(target, checks))
    return 0 if all(c.passed for c in checks) else 1


def _verify_preflight(args: argparse.Namespace) -> int:
    """Before a deploy: the synthesized template's needs against the account's limits."""
    import boto3

    from avsev import verify

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
        client = boto3.client("lambda", region_name=args.region) if args.region else _aws("lambda")
        checks = verify.preflight(client, template)
    except (BotoCoreError, ClientError) as e:
        print(
            f"avsev verify --preflight: error: reading Lambda's account settings: {e}",
            file=sys.stderr,
        )
        return 2
    print(verify.preflight_table(stack, str(path), checks))
    return 0 if all(c.passed for c in checks) else 1


def cmd_records_redrive(args: argparse.Namespace) -> int:
    """Put the records Firehose failed to deliver into their tables (Parquet, by day)."""
    from avsev.records_redrive import redrive

    _use_local(args)
    try:
        bucket = args.bucket
        if not bucket and args.stack:
            from avsev.deployment import stack_outputs

            bucket = stack_outputs(_aws("cloudformation"), args.stack).get("DataBucket")
        if not bucket:
            raise ValueError("give --stack, --bucket or --local")
        result = redrive(_aws("s3"), bucket, table=args.table, dry_run=args.dry_run)
    except ValueError as e:
        print(f"avsev records redrive: error: {e}", file=sys.stderr)
        return 2
    _print_json(result.as_dict())
    return 1 if result.failed else 0


def _cost_default(name: str) -> Path:
    from avsev import cost

    return Path(getattr(cost, name))


def cmd_cost(args: argparse.Namespace) -> int:
    """What a prediction costs, from the template's settings, the measured inputs and prices."""
    from avsev import cost

    if args.template:
        path = Path(args.template)
    else:
        from avsev.local.synth import SynthError, synthesize

        if not args.bundle:
            print("avsev cost: error: give --template, or --bundle to synthesize", file=sys.stderr)
            return 2
        try:
            synth = synthesize(args.bundle, stage=args.stage, arch=args.arch)
        except SynthError as e:
            print(f"avsev cost: error: {e}", file=sys.stderr)
            return 2
        path = synth.folder / f"{synth.stack}.template.json"
    try:
        template = json.loads(path.read_text())
        inputs = cost.load_inputs(Path(args.inputs))
        prices = cost.load_prices(Path(args.prices))
        estimate = cost.estimate(template, inputs, prices)
    except (OSError, ValueError, KeyError) as e:
        print(f"avsev cost: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(cost.render(estimate))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avsev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("train", cmd_train, "train XGBoost on an NTSB export (synthetic data without --data)")
    p.add_argument("--data", help="NTSB export CSV (underscore or dotted columns)")
    p.add_argument("--out", required=True, help="directory for model.json and training.json")
    p.add_argument("--balanced", action="store_true", help="weight classes by inverse frequency")
    p.add_argument("--rounds", type=int, default=400, help="most boosting rounds (early stopping)")
    p.add_argument("--params", help="XGBoost parameters as JSON, over the defaults")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-rows", type=int, default=20_000)

    p = add("build", cmd_build, "compile a trained model into a versioned bundle")
    p.add_argument("--model", required=True, help="directory written by `avsev train`")
    p.add_argument("--version", required=True, help="semantic version X.Y.Z")
    p.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"])
    p.add_argument("--out", default="layers/model/build")
    p.add_argument("--name", default="avsev-severity")
    p.add_argument(
        "--parallel-comp", type=int, default=2, help="C source files (compiled in parallel)"
    )

    p = add("evaluate", cmd_evaluate, "metrics of a bundle on a data file, as JSON")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True)

    p = add("compare", cmd_compare, "two bundles on the same rows: metrics and McNemar's test")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--data", required=True)

    p = add("drift", cmd_drift, "drift of a data file against a bundle's reference (JSON report)")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True, help="NTSB export CSV, either column style")
    p.add_argument("--dataset-drift-share", type=float, default=0.5)

    p = add("ab-report", cmd_ab_report, "A/B report from the records in a bucket")
    p.add_argument("--bucket")
    p.add_argument("--local", action="store_true", help="the running local stack's bucket")
    p.add_argument(
        "--rollup",
        choices=["duckdb", "none"],
        default="none",
        help="roll the window's records up here with DuckDB first (always with --local); "
        "none: use the rollups the deployed job keeps",
    )
    p.add_argument("--days", type=int, default=7)
    p.add_argument(
        "--metric",
        default="log_loss",
        choices=["log_loss", "accuracy", "expected_cost"],
        help="the decision metric (log loss: a proper scoring rule)",
    )
    p.add_argument(
        "--margin",
        type=float,
        help="non-inferiority margin in the metric's units (default: the metric's, "
        "avsev.monitoring.performance.MARGIN)",
    )
    p.add_argument(
        "--cost-matrix",
        help='expected_cost: JSON {"Fatal": {"None": 10, ...}, ...} (actual → predicted → cost)',
    )
    p.add_argument("--at", help="end of the window (ISO time; default now)")
    p.add_argument("--champion")
    p.add_argument("--candidate")
    p.add_argument("--topic", help="SNS topic for a rollback alert")

    p = add("rollout", cmd_rollout, "alias weight shifts: status, start, step, promote, rollback")
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

    p = add("registry", cmd_registry, "the model registry: what may serve, with lineage")
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

    from avsev.commands import lifecycle

    lifecycle.register(add, cmd_lifecycle)

    p = add(
        "score",
        cmd_score,
        "score a file offline: CSV (either NTSB style) or JSON lines → predictions",
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True)
    p.add_argument(
        "--out", required=True, help="output .csv or .parquet (rejects and summary beside it)"
    )
    p.add_argument("--chunk-rows", type=_positive, default=20_000)

    p = add("demo", cmd_demo, "the whole system locally, end to end, told step by step")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--requests", type=int, default=3000)

    p = add("verify", cmd_verify, "acceptance checks of a deployment (stack outputs) or --local")
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

    p = add(
        "cost",
        cmd_cost,
        "cost per million predictions and per month, by service, and where a provisioned "
        "alternative costs less",
    )
    p.add_argument("--template", help="a synthesized template (default: synthesize with --bundle)")
    p.add_argument("--bundle", help="model bundle to synthesize the app with (without --template)")
    p.add_argument("--stage", default="prod")
    p.add_argument("--arch", default="arm64", help="with --bundle: the architecture to deploy")
    p.add_argument("--inputs", default=str(_cost_default("INPUTS")), help="bench/cost.py's output")
    p.add_argument("--prices", default=str(_cost_default("PRICES")), help="the dated price table")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from avsev.data import DataError
    from avsev.pipeline.build import BuildError
    from avsev.pipeline.compile import CompileError
    from avsev.serving.bundle import BundleError

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (BuildError, CompileError, DataError, BundleError, FileNotFoundError, ValueError) as e:
        print(f"avsev {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
