"""`make demo`: the whole system on this machine, told step by step.

Trains three model versions (on the real NTSB data shipped in data/), builds their bundles,
starts the local stack (deploying the first, as `cdk deploy` would) and sends realistic
traffic with the true outcomes. Each candidate is then deployed into the running stack: the
stack hands its new version to the rollout autopilot, which takes a better candidate through
10% → 50% → 100% on the A/B evidence, and rolls a worse one back at its first step; its clock
is simulated (an hour passes per tick), the traffic and the evidence are real. Then newer
reports arrive with fields left blank: the drift check sees it, the retraining loop retrains on
the file and the outcomes collected so far, the gates judge the candidate against the model
serving, and the loop itself deploys an approved one by its registry version (as the retraining
build does in AWS), which the stack hands to the autopilot; a held one is announced and never
served. Nobody acts in that act: the demo only advances the clock and runs the scheduled ticks. Reports, the rollout and retraining
audits and pictures are left in the output folder; everything started is stopped.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from avsev.monitoring.reports import ABReport, DriftReport
    from avsev.serving.card import Card

ROOT = Path(__file__).resolve().parents[3]


def say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {text}" if text else ""), flush=True)


def note(text: str) -> None:
    print(f"   {text}", flush=True)


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        self.headers = {"Content-Type": "application/json", "X-Api-Key": key}

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any], str]:
        """One request on the kept-alive connection; opened again once if the server closed
        it while idle (the gateway, like API Gateway, closes idle connections): the request
        never reached it, so sending it again cannot count it twice."""
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, json.dumps(body), self.headers)
                r = self.conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            return r.status, json.loads(r.read()), r.getheader("X-Model-Version") or ""
        raise AssertionError("unreachable")


RETRAINED_PER_TICK = 3000
"""Reports a simulated hour while the retrained model is canaried, 10 a request: ~300 of its
own at 10%, so the ~1,000 labelled rows the A/B test needs to show a gain of a few hundredths
of log loss arrive in a few ticks (docs/rollouts.md, "What the canary of a retrained model
needs")."""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def run(out: Path, *, requests: int = 3000, seed: int = 0) -> dict[str, Any]:
    import boto3
    from avsev import clock
    from avsev.data import default_data_path, load
    from avsev.monitoring.jobs import (
        ABResult,
        Clients,
        rollup_with_duckdb,
        run_ab_analysis,
        run_drift_check,
    )
    from avsev.rollout.aliases import current_experiment, s3_audit_entries
    from avsev.rollout.autopilot import Autopilot, TickResult, autopilot_for
    from avsev.rollout.lifecycle import Lifecycle
    from avsev.rollout.registry import Location, Registry
    from avsev.serving.bundle import read_card
    from avsev.serving.runtime import host_arch

    from avsev_tools.local.retraining import retrain_tick
    from avsev_tools.local.stack import LocalStack
    from avsev_tools.pipeline.build import build_bundle
    from avsev_tools.pipeline.train import save, time_split, train

    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = out / "work"

    # 1. Data and two model versions -----------------------------------------------------
    data = load(default_data_path())  # the real NTSB file shipped in data/
    say(
        "1. Data",
        f"{data.summary()['path']}: {len(data.frame):,} accidents, {data.summary()['event_date_range']}",
    )
    # The team first shipped a class-weighted model (rare-class recall); a plain retrain is
    # more accurate; a later class-weighted, shallower candidate is not.
    # The traffic is the newest accidents (the held-out test split): no version is refit on
    # them (refit=False), so the A/B compares the versions on reports none of them has seen.
    held_out = {"refit": False, "blank_rates": (0.2,)}
    trained = {
        "1.0.0": (
            "class-weighted, in production",
            train(data, seed=seed, balanced=True, **held_out),  # type: ignore[arg-type]
        ),
        "1.1.0": ("plain retrain", train(data, seed=seed, **held_out)),  # type: ignore[arg-type]
        "1.2.0": (
            "class-weighted, depth 3",
            train(data, seed=seed, balanced=True, params={"max_depth": 3}, **held_out),  # type: ignore[arg-type]
        ),
    }
    for version, (what, result) in trained.items():
        t = result.metrics["test"]
        note(
            f"model {version} ({what}): {result.info['n_trees']} trees, test accuracy {t['accuracy']:.3f}, "
            f"weighted F1 {t['weighted_f1']:.3f} (majority baseline accuracy {t['baseline_majority']['accuracy']:.3f})"
        )
    arch = host_arch()
    bundles = [
        build_bundle(
            save(result, work / f"m{i}"),
            version,
            out_root=work / "bundles",
            arch=arch,
            parallel_comp=2,
        )
        for i, (version, (_, result)) in enumerate(trained.items())
    ]
    say(
        "2. Build",
        "compiled with Treelite + tl2cgen (-Os), checked against XGBoost's golden probabilities:\n   "
        + "\n   ".join(str(b) for b in bundles),
    )

    # Traffic: the newest accidents (the test period), in random order, with their truth.
    rows = data.reports()
    labels = list(data.frame["severity"])
    test = time_split([r.get("event_date") for r in rows]).test
    random.Random(seed).shuffle(test)
    chunk = max(requests // 3, 300)

    # The alias's weighted routing is random per invocation, as Lambda's is: seeded, a run of
    # the demo is the same story every time.
    with LocalStack(
        bundles[:1], console=(work / "functions.log").open("w"), routing_seed=seed
    ) as stack:
        bucket = stack.bucket
        say(
            "3. Local stack",
            f"API {stack.base_url} (X-Api-Key {stack.api_key[:6]}…), embedded AWS {stack.endpoint}",
        )
        api = Api(stack.base_url, stack.api_key)
        clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
        registry = Registry(clients.s3, Location.parse(f"s3://{bucket}/registry/"))
        for bundle in bundles:  # every model the team built is in the registry, with lineage
            registry.publish(bundle, training_data=default_data_path())
        sent = 0
        # One clock for the whole stack (`avsev.clock`): the records, their partitions, the
        # controller's handover, the autopilot and the reports; `stack.advance` moves it an
        # hour a tick, so hours pass in seconds and each step's evidence is its own traffic.
        blank: tuple[str, ...] = ()  # fields the clients leave blank in most of their reports
        blanker = random.Random(seed + 1)
        answered: dict[str, int] = {}  # every prediction served, by model version

        def traffic(n: int, batch: int = 1) -> dict[str, int]:
            """n predictions of the next test rows (one report a request, or `batch` a
            request to /predict/batch), then their outcomes (the truth learned later, 500 a
            request), then the records flushed to S3. Served reports by version."""
            nonlocal sent
            served: dict[str, int] = {}
            picked = [test[(sent + k) % len(test)] for k in range(n)]
            sent += n
            reports = []
            for i in picked:
                report = _jsonable(rows[i])
                if blank and blanker.random() < 0.8:
                    report = {k: v for k, v in report.items() if k not in blank}
                reports.append(report)
            for start in range(0, n, batch):
                some = reports[start : start + batch]
                if batch == 1:
                    status, body, version = api.post("/predict", some[0])
                else:
                    status, body, version = api.post("/predict/batch", {"reports": some})
                if status != 200:
                    raise RuntimeError(f"request failed: {status} {body}")
                served[version] = served.get(version, 0) + len(some)
                answered[version] = answered.get(version, 0) + len(some)
            for start in range(0, n, 500):
                truth = [
                    {"ev_id": rows[i]["ev_id"], "actual_severity": labels[i]}
                    for i in picked[start : start + 500]
                ]
                status, body, _ = api.post("/outcomes", {"outcomes": truth})
                if status != 200:
                    raise RuntimeError(f"outcomes failed: {status} {body}")
            stack.flush()
            return served

        def pilot() -> Autopilot:
            return autopilot_for(
                lambda_client=boto3.client("lambda"),
                s3=clients.s3,
                bucket=bucket,
                function=stack.functions["predict"],
                cloudwatch=clients.cloudwatch,
                alarm_prefix=stack.alarm_prefix("predict"),
                sns=clients.sns,
                topic_arn=stack.topic_arn,
                followers={stack.functions["explain"]: stack.alarm_prefix("explain")},
            )

        def ab_job() -> ABResult:
            """The hourly rollup (SQL in DuckDB over the Parquet records, by their arrival
            day) and the A/B job for the hour, on the alias's two versions."""
            rollup_with_duckdb(clients.s3, bucket, stack.cards[0], clock.now())
            experiment = current_experiment(
                boto3.client("lambda"), clients.s3, bucket, stack.functions["predict"]
            )
            return run_ab_analysis(
                clients,
                bucket,
                clock.now(),
                champion=experiment.champion,
                candidate=experiment.candidate,
                topic_arn=stack.topic_arn,
                since=experiment.since,
            )

        def autopilot(bundle: Path, model: str) -> tuple[TickResult, ABResult]:
            """Deploy a bundle (the stack hands its new version to the autopilot, at 10%);
            traffic and an hourly tick until it has promoted, rolled back or stopped. The last
            tick and A/B job."""
            deployed = stack.deploy(bundle)
            version = pilot().r.state().candidate_version
            note(f"deployed: version {version} (model {model}) at 10% ({deployed.status})")
            return canary()

        def canary(per_tick: int = chunk, batch: int = 1) -> tuple[TickResult, ABResult]:
            """Traffic, the hourly A/B job and the autopilot's tick, an hour apart on the
            stack's clock (31 minutes at 50%), until the autopilot has decided."""
            tick = TickResult(state="idle")
            ab: ABResult | None = None
            for _ in range(max(12, 6000 // per_tick)):  # up to ~600 candidate rows at 10%
                served = traffic(per_tick, batch)
                stack.advance(61 if "10%" in _step() else 31)
                ab = ab_job()
                tick = pilot().tick()
                report = ab.report
                p = report.comparison.always_valid_p if report.comparison else None
                labelled = {v: s.labelled for v, s in report.versions.items()}
                note(
                    f"+{per_tick} reports {served}; A/B {report.decision}"
                    + (f" (always-valid p = {p:.2g}; labelled {labelled})" if p is not None else "")
                    + f" → autopilot {tick['state']}: {tick.get('reason', '')}"
                )
                if tick["state"] in ("promoted", "rolled_back", "stopped", "idle"):
                    break
            assert ab is not None  # the loop runs at least once
            return tick, ab

        def _step() -> str:
            state = pilot().r.state()
            return f"{state.candidate_weight:.0%}" if state.candidate_version else "none"

        served = traffic(chunk)
        say("4. Traffic", f"{chunk} predictions, all answered by {served} (model 1.0.0)")
        explained = api.post("/predict/explain", {**_jsonable(rows[test[0]]), "top_k": 3})[1]
        factors = ", ".join(
            f"{f['feature']}={f['value']} ({f['impact']:+.2f})"
            for f in explained["top_contributing_factors"]
        )
        note(f"e.g. {explained['ev_id']}: {explained['prediction_label']}; top factors: {factors}")

        say("5. Autopilot: a better candidate, 10% → 50% → 100% on evidence")
        promoted, ab_promote = autopilot(bundles[1], "1.1.0")
        report = ab_promote.report
        for v, s in report.versions.items():
            if s.accuracy is not None and s.weighted_f1 is not None and s.weighted_f1_ci95:
                note(
                    f"{v}: {s.requests} requests, {s.labelled} labelled, accuracy {s.accuracy:.3f}, "
                    f"weighted F1 {s.weighted_f1:.3f} (95% CI {s.weighted_f1_ci95[0]:.3f}–{s.weighted_f1_ci95[1]:.3f})"
                )
        note(f"alias live now {pilot().r.state().weights}")
        explain = pilot().followers[stack.functions["explain"]].state()
        note(f"explain followed: alias live {explain.weights} (model {explain.model_versions})")

        say("6. Autopilot: a worse candidate is rolled back")
        rolled, ab_rollback = autopilot(bundles[2], "1.2.0")
        note(f"alias live now {pilot().r.state().weights}")

        drift = run_drift_check(
            clients, bucket, stack.cards[0], clock.now(), topic_arn=stack.topic_arn
        ).report
        say(
            "7. Drift check",
            f"{drift.rows} recent rows of model 1.0.0 vs its training reference: dataset drift "
            f"{drift.dataset_drift}; drifted features {drift.drifted_features}",
        )

        # the records behind the A/B and drift reports above, as they lie in the bucket
        keep_records(clients.s3, bucket, out / "records")

        say(
            "8. Retraining loop: drift → a model retrained on the outcomes → gates → canary",
            "newer reports arrive with the phase of flight, its purpose and the weather left blank "
            "in 80% of them",
        )
        blank = ("broad_phase_of_flight", "purpose_of_flight", "weather_condition")
        # More of them are served and labelled than the retraining keeps back to judge its
        # candidate (the newest quarter of the labelled traffic): a retraining learns the new
        # reports only from the outcomes of those it does not hold out.
        traffic(4 * chunk)
        serving = read_card(bundles[1])  # model 1.1.0 serves since its promotion
        rollup_with_duckdb(clients.s3, bucket, serving, clock.now())
        newer = run_drift_check(
            clients, bucket, serving, clock.now(), topic_arn=stack.topic_arn
        ).report
        note(
            f"drift check of model 1.1.0: dataset drift {newer.dataset_drift}; drifted "
            f"features {newer.drifted_features}"
        )

        def deploy_approved(version: str) -> Any:
            """What the retraining build runs for an approved candidate, `make deploy
            MODEL=<version>`: the app fetches the version from the registry (which refuses one
            that is not approved) and the stack hands its new function version to the autopilot."""
            return stack.deploy(context={"model": version, "registry": f"s3://{bucket}/registry/"})

        loop = retrain_tick(
            s3=clients.s3,
            bucket=bucket,
            registry=registry,
            data_path=default_data_path(),
            champion_bundle=bundles[1],
            card=serving,
            at=clock.now(),
            deploy=deploy_approved,
            alert=lambda subject, message: clients.sns.publish(
                TopicArn=stack.topic_arn, Subject=subject[:100], Message=message
            ),
            work_root=work / "retraining",
        )
        retrained: dict[str, Any] = {
            "decision": loop.decision.action,
            "reason": loop.decision.reason,
        }
        note(f"the loop: {loop.decision.action}: {loop.decision.reason}")
        for run_ in loop.runs:
            if "failed" in run_:
                note(f"run {run_['run']} attempt {run_['attempt']} failed: {run_['failed']}")
                continue
            lineage = run_["lineage"]
            note(
                f"model {run_['version']}: trained on {lineage['file_rows'] - lineage['file_rows_relabelled']:,} "
                f"rows of the file + {lineage['traffic_rows_trained']:,} labelled rows of traffic; judged on "
                f"the newest {lineage['holdout_rows']:,}"
            )
            for gate in run_["gates"]:
                note(
                    f"  gate {gate['name']}: {'pass' if gate['passed'] else 'FAIL'}: {gate['reason']}"
                )
            status = run_["decision"]["status"]
            note(f"registry: {status} ({run_['decision'].get('reason', '')})")
            retrained |= {"version": run_["version"], "status": status, "gates": run_["gates"]}
            if status == "approved" and loop.deployed is not None:
                canary_version = pilot().r.state().candidate_version
                note(
                    f"the loop deployed model {run_['version']} from the registry: version "
                    f"{canary_version} at 10% ({loop.deployed.status}); the autopilot's ticks take it on"
                )
                retrained["autopilot"], last = canary(RETRAINED_PER_TICK, batch=10)
                retrained["ab"] = last.report
                note(f"alias live now {pilot().r.state().weights}")
            else:
                note(f"model {run_['version']} is not deployed: it never serves")
        lifecycle_audit = Lifecycle(clients.s3, bucket).audit()
        note("the loop's audit: " + " → ".join(e["action"] for e in lifecycle_audit))
        (out / "retraining_audit.jsonl").write_text(
            "".join(json.dumps(e, default=str) + "\n" for e in lifecycle_audit)
        )

        audit = s3_audit_entries(clients.s3, bucket, stack.functions["predict"])
        (out / "rollout_audit.jsonl").write_text(
            "".join(json.dumps(e, default=str) + "\n" for e in audit)
        )
        say(
            "9. Audit",
            f"{len(audit)} entries in rollout_audit.jsonl: "
            + " → ".join(f"{e['action']}" for e in audit),
        )
        for name, written in (
            ("ab_report.json", report),
            ("ab_report_rollback.json", ab_rollback.report),
            ("drift_report.json", drift),
        ):
            (out / name).write_text(json.dumps(written.dump(), indent=1, default=str))
        for key, name in (
            (ab_promote.keys["markdown"], "ab_report.md"),
            (f"reports/drift/{clock.now().date()}/report.md", "drift_report.md"),
        ):
            (out / name).write_bytes(clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        pictures(out, stack.cards[1], report, drift)
    say(
        "10. Done",
        f"local stack stopped; reports and pictures in {out}/ ({time.perf_counter() - started:.0f} s)",
    )
    return {
        "ab": report,
        "ab_rollback": ab_rollback.report,
        "autopilot": {"1.1.0": promoted, "1.2.0": rolled},
        "retrained": retrained,
        "served": answered,
        "audit": audit,
        "drift": drift,
    }


def keep_records(s3: Any, bucket: str, folder: Path) -> int:
    """The Parquet record objects behind the reports, copied as they lie in the bucket."""
    count = 0
    for table in ("predictions", "outcomes"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{table}/"):
            for obj in page.get("Contents", []):
                path = folder / obj["Key"]
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(path))
                count += 1
    return count


def pictures(out: Path, card: Card, ab: ABReport, drift: DriftReport) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    confusion = card.metrics.test.confusion
    if confusion is None:
        raise ValueError(f"model {card.version}: the card has no test confusion matrix")
    cm = np.array(confusion.matrix)
    labels = confusion.labels
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"model {card.version}: confusion on the test split")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    features = drift.features or {}
    if features:
        names = list(features)[::-1]  # the report ranks by importance: most important on top
        scores = [features[n].score or 0.0 for n in names]
        colors = ["tab:red" if features[n].drift else "tab:gray" for n in names]
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        ax.barh(names, scores, color=colors)
        for y, n in enumerate(names):
            if features[n].missing_drift.drift:
                ax.text(
                    scores[y],
                    y,
                    f"  blank {features[n].missing_rate_ref:.0%} → {features[n].missing_rate_cur:.0%}",
                    va="center",
                    fontsize=8,
                    color="tab:red",
                )
        ax.set_xlim(0, max([*scores, 0.1]) * 1.6)
        ax.set_xlabel(
            "value drift score (1 − p for tests, distance otherwise)\n"
            "red = drift, by its values or by its blank share (noted)"
        )
        ax.set_title("drift per feature (most important first)")
        fig.tight_layout()
        fig.savefig(out / "drift_per_feature.png", dpi=110)
        plt.close(fig)

    versions = {
        v: (s.accuracy, s.labelled, s.weighted_f1, s.weighted_f1_ci95)
        for v, s in ab.versions.items()
        if s.accuracy is not None and s.weighted_f1 is not None and s.weighted_f1_ci95
    }
    if versions:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
        for y, (accuracy, labelled, f1, (lo, hi)) in enumerate(versions.values()):
            half = 1.96 * (accuracy * (1 - accuracy) / labelled) ** 0.5
            left.errorbar(accuracy, y, xerr=half, fmt="o", capsize=6)
            right.errorbar(
                f1,
                y,
                xerr=[[f1 - lo], [hi - f1]],
                fmt="o",
                capsize=6,
            )
        left.set_yticks(range(len(versions)), list(versions))
        left.set_xlabel("accuracy, 95% CI")
        right.set_xlabel("weighted F1, bootstrap 95% CI")
        fig.suptitle(f"A/B by served version: decision {ab.decision}")
        fig.tight_layout()
        fig.savefig(out / "ab_confidence_intervals.png", dpi=110)
        plt.close(fig)
