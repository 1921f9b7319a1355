"""The stack's functions, one `FunctionSpec` each, built from the app's settings: what each
needs is a field here, not a special case in the stack."""

from __future__ import annotations

from avsev.monitoring.tables import OUTCOMES, PREDICTIONS

from infra.config import AppConfig
from infra.constants import AB_REPORTS, CANARY_FUNCTIONS, DRIFT_REPORTS, Env
from infra.constructs.functions import FunctionSpec, Rollout, Scheduled

ANALYSIS = ("common", "deps", "analysis")
"""numpy, scipy and the pinned AWS SDK besides the library: every function that calls AWS (the
runtime's own boto3 is not the one the tests ran)."""
JOB_ENV = (Env.DATA_BUCKET, Env.ALERTS_TOPIC_ARN)
"""The data bucket and the alerts topic."""
ROLLUP_ENV = (Env.DATA_BUCKET, Env.ATHENA_WORKGROUP, Env.GLUE_DATABASE)


def function_specs(config: AppConfig) -> dict[str, FunctionSpec]:
    """Function key → its spec, in the order the stack (and the dashboard) lists them."""

    def reserved(n: int) -> int | None:
        # Reserved concurrency (context reserved_concurrency=true): batch (invoked per upload,
        # and by itself) and the scheduled jobs can never take the account's concurrency from
        # predict and explain. Off by default: Lambda keeps at least 100 unreserved, so an
        # account whose quota is under 100 + the reservations cannot create them
        # (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
        return n if config.reserved_concurrency else None

    specs = {
        # Serving: enough memory for a full vCPU share at low latency; short timeouts.
        "predict": FunctionSpec(
            name="predict",
            memory_mb=1024,
            timeout_s=10,
            description="POST /predict, /predict/batch; GET /model, /health",
            model=True,
            shadow=True,
            invocation="api",
            records=PREDICTIONS,
            record_metrics="predictions",
            rollout=Rollout(
                smoke_route="/predict/batch",
                p95_latency_ms=config.p95_latency_ms,
            ),
        ),
        "explain": FunctionSpec(
            name="explain",
            memory_mb=1024,
            timeout_s=10,
            description="POST /predict/explain (exact TreeSHAP)",
            model=True,
            invocation="api",
            records=PREDICTIONS,
            record_metrics="explanations",
            rollout=Rollout(
                smoke_route="/predict/explain",
                p95_latency_ms=config.p95_latency_ms * 4,  # TreeSHAP: several times predict's
                follows="predict",  # explanations of the model predict serves
            ),
        ),
        "outcomes": FunctionSpec(
            name="outcomes",
            memory_mb=256,
            timeout_s=10,
            description="POST /outcomes",
            invocation="api",
            records=OUTCOMES,
            record_metrics="outcomes",
        ),
        # Monitoring jobs: the rollup aggregates new records in Athena (it needs the card's drift
        # bins, and imports the monitoring jobs module: numpy/scipy); A/B and drift read only rollups.
        "rollup": FunctionSpec(
            name="rollup",
            memory_mb=512,
            timeout_s=900,
            description="hourly rollup of new records (Athena)",
            layers=ANALYSIS,
            model=True,
            environment=ROLLUP_ENV,
            schedule=Scheduled(id="RollupSchedule", expression=config.rollup_schedule),
            reserved_concurrency=reserved(config.job_concurrency),
        ),
        "ab_analysis": FunctionSpec(
            name="ab_analysis",
            memory_mb=1024,
            timeout_s=300,
            description="hourly A/B report",
            layers=ANALYSIS,
            environment=JOB_ENV,
            reports=AB_REPORTS,
            schedule=Scheduled(id="AbSchedule", expression=config.ab_schedule),
            reserved_concurrency=reserved(config.job_concurrency),
        ),
        "drift_check": FunctionSpec(
            name="drift_check",
            memory_mb=1024,
            timeout_s=300,
            description="daily drift check",
            layers=ANALYSIS,
            model=True,
            environment=JOB_ENV,
            reports=DRIFT_REPORTS,
            schedule=Scheduled(id="DriftSchedule", expression=config.drift_schedule),
            reserved_concurrency=reserved(config.job_concurrency),
        ),
        # Rollout controller, the one owner of alias `live`: one tick every few minutes (alias,
        # alarms, audit, the A/B report), and the handover of each deploy's new versions.
        "autopilot": FunctionSpec(
            name="autopilot",
            memory_mb=256,
            timeout_s=120,
            description="rollout controller: handover, then 10% → 50% → 100% on evidence",
            layers=ANALYSIS,
            environment=JOB_ENV,
            schedule=Scheduled(id="AutopilotSchedule", expression=config.autopilot_schedule),
            # A cap of one controller; ticks are safe without it (each writes the alias only
            # at the revision it read: avsev.rollout.autopilot).
            reserved_concurrency=reserved(1),
        ),
        # The retraining loop's decider: a daily look (drift report, label-free estimate, age,
        # schedule) that may start the retraining project, and each build's end.
        "lifecycle": FunctionSpec(
            name="lifecycle",
            memory_mb=256,
            timeout_s=120,
            description="retraining loop: triggers, pause, cool-down; starts CodeBuild",
            layers=ANALYSIS,
            model=True,
            environment=JOB_ENV,
            schedule=Scheduled(id="LifecycleSchedule", expression=config.lifecycle_schedule),
            reserved_concurrency=reserved(1),
        ),
        # Batch: streams files in chunks; 1 GB and the longest timeout, then continues itself
        # (by name: a reference to itself would be circular). Its rules are the Batch construct's.
        "batch_score": FunctionSpec(
            name="batch_score",
            memory_mb=1024,
            timeout_s=900,
            description="batch scoring of files",
            layers=(*ANALYSIS, "tabular"),
            model=True,
            environment=JOB_ENV,
            reserved_concurrency=reserved(config.batch_concurrency),
            physical_name="batch-score",
        ),
    }
    if config.api == "http":
        # The HTTP API's Lambda authorizer: compares X-Api-Key with the stack's secret (boto3:
        # the pinned SDK). Small and quick; its answers are cached by the API per key.
        specs["authorizer"] = FunctionSpec(
            name="authorizer",
            memory_mb=256,
            timeout_s=10,
            description="HTTP API authorizer: X-Api-Key against the stack's key (Secrets Manager)",
            layers=("common", "analysis"),
            invocation="authorizer",
        )
    rolled_out = tuple(key for key, spec in specs.items() if spec.rollout)
    if rolled_out != tuple(CANARY_FUNCTIONS):
        raise ValueError(
            f"rolled-out functions {rolled_out} are not the aliased routes' {CANARY_FUNCTIONS}"
        )
    return specs
