"""Names shared by the stack, the constructs and the tests: one place for each."""

from avsev.serving.routes import ALIASED

CANARY_FUNCTIONS = ALIASED
"""Functions behind alias `live` whose new versions roll out by CodeDeploy canary."""
SERVICE = "avsev"
METRICS_NAMESPACE = "Avsev"
LIVE_ALIAS = "live"
RECORD_FILTER = '{ $.record_type = "prediction" || $.record_type = "outcome" }'
PREDICTIONS_PREFIX = "predictions/"
OUTCOMES_PREFIX = "outcomes/"
REPORTS_PREFIX = "reports/"
