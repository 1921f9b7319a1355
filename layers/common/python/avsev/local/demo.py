"""`make demo`: the whole system on this machine, told step by step.

Trains two model versions (on the real NTSB data shipped in data/), builds their bundles,
starts the local stack, sends realistic traffic, starts a 10% canary of the second version,
posts the true outcomes, runs the A/B report and the drift check, then promotes or rolls back
as the report advises. Reports and pictures are left in the output folder; everything started
is stopped.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[5]


_console = sys.stdout  # the terminal, even while the local stack routes stdout


def say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {text}" if text else ""), file=_console, flush=True)


def note(text: str) -> None:
    print(f"   {text}", file=_console, flush=True)


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.headers = {"Content-Type": "application/json", "X-Api-Key": key}

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any], str]:
        self.conn.request("POST", path, json.dumps(body), self.headers)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read()), r.getheader("X-Model-Version") or ""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def run(out: Path, *, requests: int = 3000, seed: int = 0) -> dict[str, Any]:
    import boto3

    from avsev.data import default_data_path, load
    from avsev.local.stack import LocalStack
    from avsev.monitoring.jobs import Clients, rollup_with_duckdb, run_ab_analysis, run_drift_check
    from avsev.pipeline.build import build_bundle
    from avsev.pipeline.train import save, time_split, train
    from avsev.rollout.aliases import RolloutError, Rollouts
    from avsev.serving.runtime import host_arch

    global _console
    _console = sys.stdout
    started = time.perf_counter()
    random.seed(seed)  # alias routing draws from `random`: the same story every run
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    work = out / "work"

    # 1. Data and two model versions -----------------------------------------------------
    data = load(default_data_path())  # the real NTSB file shipped in data/
    say(
        "1. Data",
        f"{data.summary()['path']}: {len(data.frame):,} accidents, {data.summary()['event_date_range']}",
    )
    v1 = train(data, seed=seed)
    v2 = train(data, seed=seed, balanced=True)
    for name, result in (("1.0.0 (default)", v1), ("1.1.0 (class-weighted retrain)", v2)):
        t = result.metrics["test"]
        note(
            f"model {name}: {result.info['n_trees']} trees, test weighted F1 {t['weighted_f1']:.3f}, "
            f"accuracy {t['accuracy']:.3f} (majority baseline F1 {t['baseline_majority']['weighted_f1']:.3f})"
        )
    arch = host_arch()
    bundles = [
        build_bundle(
            save(v1, work / "m1"), "1.0.0", out_root=work / "bundles", arch=arch, parallel_comp=2
        ),
        build_bundle(
            save(v2, work / "m2"), "1.1.0", out_root=work / "bundles", arch=arch, parallel_comp=2
        ),
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
    rng = random.Random(seed)
    rng.shuffle(test)

    with LocalStack(bundles, console=(work / "functions.log").open("w")) as stack:
        say(
            "3. Local stack",
            f"API {stack.base_url} (X-Api-Key {stack.api_key[:6]}…), embedded AWS {stack.endpoint}",
        )
        api = Api(stack.base_url, stack.api_key)
        rollout = Rollouts(
            boto3.client("lambda"),
            "avsev-predict",
            cloudwatch=boto3.client("cloudwatch"),
            alarm_prefix="avsev-predict-",
        )
        served: dict[str, str] = {}

        def traffic(indices: list[int]) -> None:
            for i in indices:
                status, body, version = api.post("/predict", _jsonable(rows[i]))
                if status != 200:
                    raise RuntimeError(f"request failed: {status} {body}")
                served[rows[i]["ev_id"]] = version

        first, second = test[: requests // 3], test[requests // 3 : requests]
        traffic(first)
        say("4. Traffic", f"{len(first)} predictions, all answered by {set(served.values())}")
        explained = api.post("/predict/explain", {**_jsonable(rows[first[0]]), "top_k": 3})[1]
        factors = ", ".join(
            f"{f['feature']}={f['value']} ({f['impact']:+.2f})"
            for f in explained["top_contributing_factors"]
        )
        note(f"e.g. {explained['ev_id']}: {explained['prediction_label']}; top factors: {factors}")

        rollout.start("2", 0.1)
        traffic(second)
        mix = {
            v: sum(1 for i in second if served[rows[i]["ev_id"]] == v) for v in ("1.0.0", "1.1.0")
        }
        say(
            "5. Canary",
            f"alias live: 90% version 1 (model 1.0.0), 10% version 2 (model 1.1.0); "
            f"{len(second)} more requests served {mix}",
        )

        def post_outcomes(indices: list[int]) -> None:
            """The truth learned later, 500 outcomes a request; then flush the records to S3."""
            for start in range(0, len(indices), 500):
                batch = [
                    {"ev_id": rows[i]["ev_id"], "actual_severity": labels[i]}
                    for i in indices[start : start + 500]
                ]
                status, body, _ = api.post("/outcomes", {"outcomes": batch})
                if status != 200:
                    raise RuntimeError(f"outcomes failed: {status} {body}")
            stack.flush()

        post_outcomes(first + second)
        say(
            "6. Outcomes",
            f"{len(first + second)} true severities posted; records flushed to s3://avsev-local-data/",
        )

        clients = Clients(boto3.client("s3"), boto3.client("cloudwatch"), boto3.client("sns"))
        now = dt.datetime.now(dt.UTC)

        def ab_report() -> dict[str, Any]:
            """The hourly rollup (SQL in DuckDB over the Parquet records) and A/B job, now."""
            rollup_with_duckdb(clients.s3, "avsev-local-data", stack.cards[0], now)
            return run_ab_analysis(
                clients,
                "avsev-local-data",
                now,
                champion="1.0.0",
                candidate="1.1.0",
                topic_arn=stack.topic_arn,
            )

        ab = ab_report()
        report = ab["report"]
        say("7. A/B report", f"decision: {report['decision']} — {report['reason']}")
        if report["decision"] in ("continue", "insufficient_data"):
            rollout.step(0.5)
            again = test[:requests]
            traffic(again)
            post_outcomes(again)
            ab = ab_report()
            report = ab["report"]
            note(
                f"not enough evidence yet: stepped the canary to 50% and sent {len(again)} more requests"
            )
            note(f"decision now: {report['decision']} — {report['reason']}")
        for v, s in report["versions"].items():
            if "accuracy" in s:
                note(
                    f"{v}: {s['requests']} requests, {s['labelled']} labelled, accuracy {s['accuracy']:.3f}, "
                    f"weighted F1 {s['weighted_f1']:.3f} (95% CI {s['weighted_f1_ci95'][0]:.3f}–{s['weighted_f1_ci95'][1]:.3f})"
                )

        drift = run_drift_check(
            clients, "avsev-local-data", stack.cards[0], now, topic_arn=stack.topic_arn
        )["report"]
        say(
            "8. Drift check",
            f"{drift['rows']} recent rows vs the training reference: dataset drift "
            f"{drift['dataset_drift']}; drifted features {drift.get('drifted_features')}",
        )

        try:
            promote = report["decision"] == "promote"
            result = rollout.promote() if promote else rollout.rollback()
            action = "promoted version 2" if promote else "rolled back to version 1"
        except RolloutError as e:
            result, action = {"weights": rollout.status()["weights"]}, f"refused: {e}"
        say("9. Rollout", f"{action}; alias live now {result['weights']}")

        (out / "ab_report.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "drift_report.json").write_text(json.dumps(drift, indent=1, default=str))
        s3 = boto3.client("s3")
        for key, name in (
            (ab["keys"]["markdown"], "ab_report.md"),
            (f"reports/drift/{now.date()}/report.md", "drift_report.md"),
        ):
            (out / name).write_bytes(
                s3.get_object(Bucket="avsev-local-data", Key=key)["Body"].read()
            )
        pictures(out, stack.cards[0], report, drift)
        keep_records(s3, "avsev-local-data", out / "records")
    say(
        "10. Done",
        f"local stack stopped; reports and pictures in {out}/ ({time.perf_counter() - started:.0f} s)",
    )
    return {"ab": report, "drift": drift}


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


def pictures(out: Path, card: dict[str, Any], ab: dict[str, Any], drift: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.array(card["metrics"]["test"]["confusion"]["matrix"])
    labels = card["metrics"]["test"]["confusion"]["labels"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"model {card['version']}: confusion on the test split")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    features = drift.get("features", {})
    if features:
        names = list(features)
        scores = [features[n].get("score", 0.0) for n in names]
        colors = ["tab:red" if features[n]["drift"] else "tab:gray" for n in names]
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        ax.barh(names, scores, color=colors)
        ax.set_xlabel("drift score (1 − p for tests, distance otherwise); red = drift")
        ax.set_title("drift per feature")
        fig.tight_layout()
        fig.savefig(out / "drift_per_feature.png", dpi=110)
        plt.close(fig)

    versions = {v: s for v, s in ab["versions"].items() if "weighted_f1_ci95" in s}
    if versions:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
        for y, s in enumerate(versions.values()):
            half = 1.96 * (s["accuracy"] * (1 - s["accuracy"]) / s["labelled"]) ** 0.5
            left.errorbar(s["accuracy"], y, xerr=half, fmt="o", capsize=6)
            lo, hi = s["weighted_f1_ci95"]
            right.errorbar(
                s["weighted_f1"],
                y,
                xerr=[[s["weighted_f1"] - lo], [hi - s["weighted_f1"]]],
                fmt="o",
                capsize=6,
            )
        left.set_yticks(range(len(versions)), list(versions))
        left.set_xlabel("accuracy, 95% CI (the decision's metric)")
        right.set_xlabel("weighted F1, bootstrap 95% CI")
        fig.suptitle(f"A/B by served version: decision {ab['decision']}")
        fig.tight_layout()
        fig.savefig(out / "ab_confidence_intervals.png", dpi=110)
        plt.close(fig)
