"""Names of the stack, the constructs and the tests. Those the Lambda code shares (namespace,
service, S3 prefixes, alarm names, the `ev_id` pattern, environment variables) are written
once in the library, `avsev.constants`, and re-exported here."""

from avsev.constants import (
    AB_REPORTS,
    API_4XX_ALARM,
    ATHENA_RESULTS_PREFIX,
    AUDIT_PREFIX,
    BATCH_ERRORS_ALARM,
    BATCH_FAILURES_ALARM,
    CANARY_ALARMS,
    DRIFT_REPORTS,
    ERRORS_PREFIX,
    EV_ID_PATTERN,
    LIFECYCLE_PREFIX,
    LIVE_ALIAS,
    METRICS_NAMESPACE,
    REGISTRY_PREFIX,
    REPORTS_PREFIX,
    ROLLUPS_PREFIX,
    SERVICE,
    Env,
    alarm_prefix,
    report_prefix,
)
from avsev.monitoring.tables import OUTCOMES, PREDICTIONS
from avsev.serving.routes import ALIASED

__all__ = [
    "AB_REPORTS",
    "API_4XX_ALARM",
    "ATHENA_RESULTS_PREFIX",
    "AUDIT_PREFIX",
    "BATCH_ERRORS_ALARM",
    "BATCH_FAILURES_ALARM",
    "CANARY_ALARMS",
    "DRIFT_REPORTS",
    "ERRORS_PREFIX",
    "EV_ID_PATTERN",
    "LIFECYCLE_PREFIX",
    "LIVE_ALIAS",
    "METRICS_NAMESPACE",
    "REGISTRY_PREFIX",
    "REPORTS_PREFIX",
    "ROLLUPS_PREFIX",
    "SERVICE",
    "Env",
    "alarm_prefix",
    "report_prefix",
]

CANARY_FUNCTIONS = ALIASED
"""Functions behind alias `live` whose new versions roll out by CodeDeploy canary."""

STAGES = ("staging", "prod")
DEFAULT_STAGE = "prod"
API_GATEWAY_ACCOUNT_STACK = f"{SERVICE}-apigateway-account"
"""API Gateway's CloudWatch role is one setting per account and region: its own stack."""


def stack_name(stage: str) -> str:
    """`avsev-prod`, `avsev-staging`: the prefix of every name the stack gives."""
    return f"{SERVICE}-{stage}"


def glue_name(prefix: str) -> str:
    """Glue and Athena database names: lowercase letters, digits and underscores."""
    return prefix.lower().replace("-", "_")


RECORD_TYPES = {PREDICTIONS: "prediction", OUTCOMES: "outcome"}
"""Table (and S3 prefix) → the `record_type` its log lines carry."""


def record_filter(table: str) -> str:
    """The subscription filter pattern that picks one table's records out of a log group."""
    return f'{{ $.record_type = "{RECORD_TYPES[table]}" }}'


PREDICTIONS_PREFIX = f"{PREDICTIONS}/"
OUTCOMES_PREFIX = f"{OUTCOMES}/"
RECORD_PREFIXES = (PREDICTIONS_PREFIX, OUTCOMES_PREFIX)
