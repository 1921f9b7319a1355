"""The retraining loop on the local stack: the same decider as the `lifecycle` function in AWS,
with this process standing in for CodeBuild.

In AWS the decider starts a CodeBuild build and returns; the build runs `avsev lifecycle run`
(train on the file and the labelled traffic, compile, gates, publish) and its end event comes
back to the decider, which ends the run or starts it once more. Here `retrain_tick` does the
same in order: the decider's look (or a request by hand), then each started run executed in
this process, then its end handed to the decider.

What the build does next, this does too: an approved candidate is deployed by its registry
version (`deploy(version)`: in AWS the build's `make deploy MODEL=<version>`, here the local
`cdk deploy` with the same context), so the app fetches it from the registry, which refuses a
version that is not approved. The stack's custom resource then hands its new version to the
autopilot at 10%, whose ticks take it on. A candidate its gates hold is announced and never
deployed. Either way the loop's audit says what became of the candidate.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsev.rollout.lifecycle import Decision, Lifecycle, Policy, Run, Trigger, check
from avsev.serving.card import Card


@dataclass
class TickResult:
    decision: Decision
    runs: list[dict[str, Any]] = field(default_factory=list)
    """Each executed attempt: the run, and what it produced or why it failed."""
    deployed: Any = None


def retrain_tick(
    *,
    s3: Any,
    bucket: str,
    registry: Any,
    data_path: Path,
    champion_bundle: Path,
    card: Card,
    at: dt.datetime,
    deploy: Callable[[str], Any] | None = None,
    alert: Callable[[str, str], None] | None = None,
    policy: Policy | None = None,
    by_hand: str | None = None,
    approval: str = "auto",
    execute: Callable[[Run, Path], dict[str, Any]] | None = None,
    work_root: Path | None = None,
    train_options: Mapping[str, Any] | None = None,
) -> TickResult:
    """One look of the decider at `at` (or a retraining asked by hand, with its reason), then
    every run it started, executed here, and its approved candidate deployed by `deploy`
    (given a registry version). `execute` replaces the retraining itself (tests)."""
    from avsev_tools.pipeline.retrain import RetrainingFailed, held_message, run_retraining

    queued: list[Run] = []

    def start(run: Run) -> str:
        queued.append(run)
        return f"local:{run.run_id}:{run.attempt}"

    lifecycle = Lifecycle(
        s3, bucket, start=start, alert=alert, policy=policy or Policy(), clock=lambda: at
    )
    if by_hand is not None:
        decision = lifecycle.consider([Trigger("manual", by_hand)], by="local")
    else:
        decision = check(lifecycle, card, at)

    def retrain(run: Run, work: Path) -> dict[str, Any]:
        return run_retraining(
            s3=s3,
            bucket=bucket,
            registry=registry,
            data_path=data_path,
            champion_bundle=champion_bundle,
            work=work,
            at=at,
            approval=approval,
            run_id=run.run_id,
            train_options=train_options,
        )

    result = TickResult(decision)
    while queued:
        run = queued.pop(0)
        work = (
            work_root / f"{run.run_id}-{run.attempt}"
            if work_root
            else Path(tempfile.mkdtemp(prefix=f"avsev-{run.run_id}-"))
        )
        try:
            produced = (execute or retrain)(run, work)
        except RetrainingFailed as e:  # nothing to learn from yet: the run ends, no candidate
            result.runs.append({"run": run.run_id, "attempt": run.attempt, "no_candidate": str(e)})
            result.decision = lifecycle.finish(
                run.run_id, ok=True, detail={"no_candidate": str(e)}, by="local"
            )
            continue
        except Exception as e:  # what a failed build is: its end says FAILED
            result.runs.append({"run": run.run_id, "attempt": run.attempt, "failed": str(e)})
            result.decision = lifecycle.finish(
                run.run_id, ok=False, detail={"reason": f"{type(e).__name__}: {e}"}, by="local"
            )
            shutil.rmtree(work, ignore_errors=True)
            continue
        result.runs.append({"run": run.run_id, "attempt": run.attempt, **produced})
        result.decision = lifecycle.finish(
            run.run_id,
            ok=True,
            detail={"version": produced.get("version"), "decision": produced.get("decision")},
            by="local",
        )
        version = str(produced.get("version"))
        status = (produced.get("decision") or {}).get("status")
        if status != "approved":
            lifecycle.candidate(run.run_id, version, "held", by="local", status=status)
            if alert is not None:
                alert(*held_message(produced))
        elif deploy is not None:
            try:
                result.deployed = deploy(version)
            except Exception as e:  # the deploy failed and rolled back: nothing serves it
                reason = f"{type(e).__name__}: {e}"
                lifecycle.candidate(run.run_id, version, "deploy-failed", by="local", reason=reason)
                if alert is not None:
                    alert(f"avsev retrained model {version} not deployed", reason)
                continue
            lifecycle.candidate(
                run.run_id, version, "deployed", by="local", deploy=_summary(result.deployed)
            )
    return result


def _summary(deployed: Any) -> Any:
    """What the audit keeps of a deploy's result (a `DeployResult` or the CLI's dict)."""
    if isinstance(deployed, Mapping):
        return {k: deployed[k] for k in ("status", "versions") if k in deployed}
    return {k: getattr(deployed, k) for k in ("status", "versions") if hasattr(deployed, k)}
