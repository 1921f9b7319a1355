"""Names shared by the stack, the constructs and the tests: one place for each."""

SERVICE = "avsev"
METRICS_NAMESPACE = "Avsev"
LIVE_ALIAS = "live"
FUNCTIONS = ("predict", "explain", "outcomes", "ab_analysis", "drift_check", "smoke_test")
CANARY_FUNCTIONS = ("predict", "explain")
"""Functions behind alias `live` whose new versions roll out by CodeDeploy canary."""
RECORD_FILTER = '{ $.record_type = "prediction" || $.record_type = "outcome" }'
PREDICTIONS_PREFIX = "predictions/"
OUTCOMES_PREFIX = "outcomes/"
REPORTS_PREFIX = "reports/"
