"""Names shared by the stack, the constructs and the tests: one place for each."""

from avsev.monitoring.tables import OUTCOMES, PREDICTIONS
from avsev.records_redrive import ERRORS_PREFIX
from avsev.serving.routes import ALIASED

CANARY_FUNCTIONS = ALIASED
"""Functions behind alias `live` whose new versions roll out by CodeDeploy canary."""
SERVICE = "avsev"
METRICS_NAMESPACE = "Avsev"
LIVE_ALIAS = "live"

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
REPORTS_PREFIX = "reports/"
ROLLUPS_PREFIX = "rollups/"
ATHENA_RESULTS_PREFIX = "athena-results/"
__all__ = ["ERRORS_PREFIX"]  # records Firehose failed: `firehose-errors/<table>/<error type>/dt=…/`
