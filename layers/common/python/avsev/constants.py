"""Names the stack (infra/) and the code running in Lambda share, each written once.

The functions import them from the common layer; the CDK app imports them from the same
package, so a prefix, an alarm name or an environment variable cannot mean one thing to the
stack and another to the code. A leaf module: it imports nothing of ours."""

from __future__ import annotations

# ---- the service --------------------------------------------------------------------------
SERVICE = "avsev"
"""Stack names are `avsev-<stage>`; the default `service` dimension of the metrics."""
METRICS_NAMESPACE = "Avsev"
"""CloudWatch namespace of every metric the functions and jobs put (EMF or PutMetricData)."""
LIVE_ALIAS = "live"
"""The alias callers invoke; its weights move during a rollout."""

# ---- the data bucket ----------------------------------------------------------------------
REPORTS_PREFIX = "reports/"
AB_REPORTS = "ab"
DRIFT_REPORTS = "drift"
"""Report kinds: `reports/<kind>/<window>/report.json` and `reports/<kind>/latest.json`."""
AUDIT_PREFIX = f"{REPORTS_PREFIX}rollout/audit/"
"""One object per alias change (`avsev rollout` and the autopilot)."""
ROLLUPS_PREFIX = "rollups/"
ATHENA_RESULTS_PREFIX = "athena-results/"
ERRORS_PREFIX = "firehose-errors/"
"""Records Firehose failed to deliver: `firehose-errors/<table>/<error type>/dt=…/`."""
REGISTRY_PREFIX = "registry/"
"""The model registry's default prefix in its bucket (`s3://bucket/registry/`)."""
LIFECYCLE_PREFIX = "lifecycle/"
"""The retraining loop's state and audit (`avsev.rollout.lifecycle`)."""


def report_prefix(kind: str) -> str:
    """`reports/ab/`, `reports/drift/`."""
    return f"{REPORTS_PREFIX}{kind}/"


# ---- alarms (names are `<stack>-<...>`) ---------------------------------------------------
CANARY_ALARMS = ("new-version-errors", "new-version-5xx", "new-version-p95-latency")
"""Alarms on the newest version a deploy published (the one handed over as the candidate),
`<stack>-<function>-<name>`: any of them in ALARM on the candidate rolls it back."""
BATCH_FAILURES_ALARM = "batch-failures"
BATCH_ERRORS_ALARM = "batch-errors"
API_4XX_ALARM = "api-4xx-rate"


def alarm_prefix(stack_name: str, function: str) -> str:
    """`avsev-prod-predict-`: the names of one function's rollout alarms start so."""
    return f"{stack_name}-{function}-"


PARITY_CHECK_REQUESTS = "parity-check-"
"""The request id prefix of the controller's parity-check invocations (API Gateway assigns every
client request its own id, so no client can send one): their records are kept, and the
monitoring rollups leave them out."""


# ---- the API ------------------------------------------------------------------------------
EV_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
"""An NTSB event id, as the API (gateway model and pydantic schema) and the data reader take it."""


# ---- environment variables the stack sets and the functions read ---------------------------
class Env:
    """Environment variable names (plain strings: CDK takes them as keys as they are)."""

    SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    MODEL_BUNDLE_PATH = "MODEL_BUNDLE_PATH"
    SHADOW_BUNDLE_PATH = "SHADOW_BUNDLE_PATH"
    VERIFY_BUNDLE = "AVSEV_VERIFY_BUNDLE"
    """false: skip the sha256 check of the bundle's files at start (tests)."""
    DATA_BUCKET = "DATA_BUCKET"
    BATCH_BUCKET = "BATCH_BUCKET"
    ALERTS_TOPIC_ARN = "ALERTS_TOPIC_ARN"
    ATHENA_WORKGROUP = "ATHENA_WORKGROUP"
    GLUE_DATABASE = "GLUE_DATABASE"
    PREDICT_FUNCTION_NAME = "PREDICT_FUNCTION_NAME"
    AB_DECISION_METRIC = "AB_DECISION_METRIC"
    AB_MARGIN = "AB_MARGIN"
    """The non-inferiority margin of the decision metric (its units); unset: the metric's default."""
    COST_MATRIX = "COST_MATRIX"
    ALARM_PREFIX = "ALARM_PREFIX"
    FOLLOWER_FUNCTIONS = "FOLLOWER_FUNCTIONS"
    API_KEY_SECRET_ARN = "API_KEY_SECRET_ARN"
    """The HTTP API's key (a Secrets Manager secret) its Lambda authorizer compares against."""
    RETRAIN_PROJECT = "RETRAIN_PROJECT"
    """The CodeBuild project that runs a retraining (`avsev lifecycle run`)."""
    # Tuning, each with its default in the function's settings (the stack sets none of them):
    AB_WINDOW_DAYS = "AB_WINDOW_DAYS"  # A/B report window
    ROLLUP_WINDOW_DAYS = "ROLLUP_WINDOW_DAYS"  # days a rollup run may (re)compute
    BATCH_CHUNK_ROWS = "BATCH_CHUNK_ROWS"  # rows scored per chunk
    BATCH_OUTPUT_FORMAT = "BATCH_OUTPUT_FORMAT"  # csv or parquet
    BATCH_DAILY_DAYS = "BATCH_DAILY_DAYS"  # days the daily batch run looks back
    BATCH_SAFETY_MS = "BATCH_SAFETY_MS"  # time kept in hand before a batch run continues itself
    DRIFT_WINDOW_DAYS = "DRIFT_WINDOW_DAYS"  # the drift check's window
    DATASET_DRIFT_SHARE = (
        "DATASET_DRIFT_SHARE"  # the share of drifted features that makes the dataset drifted
    )
    MAX_MODEL_AGE_DAYS = "MAX_MODEL_AGE_DAYS"  # the retraining loop's maximum model age
    ESTIMATE_DROP = "ESTIMATE_DROP"  # the estimate's fall below the test accuracy that retrains
    RETRAIN_COOLDOWN_HOURS = "RETRAIN_COOLDOWN_HOURS"  # hours between two retrainings' starts
    RETRAIN_EVERY_DAYS = "RETRAIN_EVERY_DAYS"  # a retraining schedule (unset: none)
    """JSON: the functions whose alias follows predict's model (name → their alarm prefix)."""


# ---- the model's lifecycle ----------------------------------------------------------------
MAX_MODEL_AGE_DAYS = 2 * 365
"""The default maximum age of a serving model, counted from the newest report date it trained
on: retrain before it. Measured on the real NTSB data (bench/staleness.py, docs/model.md "How a
model ages"): a model one to two years past its data carries +0.005 log loss (95% interval
+0.002 to +0.008) over a fresh one on the same rows; two to three years, +0.010 (+0.006 to
+0.014), beyond the 0.01 tolerance."""
