"""The A/B and drift reports as typed models: what avsev.monitoring.ab and .drift produce, the
jobs write to S3 (JSON and markdown), and the CLI, the dashboard and the autopilot read.

Their JSON is a contract with every reader, older ones included, so it keeps the shape the
reports always had (tests/aws/test_report_json.py holds it to files written before these models):
a part says only what applies to it — a key that was not given and has no value is left out,
where a value given as None is written as null — and numbers that are not finite are written
as `NaN` / `Infinity`, as Python's json module does. `dump()` is the JSON-ready dict.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

Decision = Literal["promote", "rollback", "continue", "insufficient_data"]


class ReportPart(BaseModel):
    """A part of a report: fields not given and None are left out of its JSON."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {k: v for k, v in data.items() if v is not None or k in given}

    def dump(self) -> dict[str, Any]:
        """The report's JSON as Python values (what `json.dumps` writes to S3)."""
        return self.model_dump(mode="json")


# ---- performance (both reports) --------------------------------------------------------


TrustVerdict = Literal["trusted", "untrusted", "not_enough_labels", "no_labels"]


class CalibrationCheck(ReportPart):
    """On labelled rows: whether the label-free estimate can be trusted, and why not."""

    labelled: int
    card_top_label_ece: float | None
    top_label_ece: float | None = None
    realized_accuracy: float | None = None
    estimated_accuracy: float | None = None
    estimate_error_ci95: list[float] | None = None
    """95% interval of estimated − realized accuracy (positive: the estimate is optimistic)."""
    trusted: bool
    """True only when `verdict` is `trusted`."""
    verdict: TrustVerdict
    why_not: list[str]


class ExpectedPerformance(ReportPart):
    """Confidence-based estimates from the served probabilities (empty without requests)."""

    expected_accuracy: float | None = None
    expected_log_loss: float | None = None
    expected_recall: dict[str, float] | None = None
    expected_f1: dict[str, float] | None = None
    expected_weighted_f1: float | None = None
    recalibrated: bool | None = None
    """True when expected accuracy and log loss went through the card's recalibration
    (avsev.monitoring.performance.Recalibration); the served probabilities' own means are
    then `raw_expected_accuracy` and `raw_expected_log_loss`."""
    raw_expected_accuracy: float | None = None
    raw_expected_log_loss: float | None = None


class PerformanceWithoutLabels(ExpectedPerformance):
    """The drift report's estimate for the card's version, checked on its labelled rows."""

    calibration_check: CalibrationCheck | None = None


class WindowGaps(ReportPart):
    """What a report's window lacked (days without a rollup) or skipped (unreadable objects)."""

    days_without_rollup: list[str]
    skipped_objects: list[dict[str, Any]]
    days_without_label_rollup: list[str] | None = None


# ---- A/B -------------------------------------------------------------------------------


class VersionSummary(ReportPart):
    """One served model version: traffic, latency, and its metrics on labelled rows."""

    requests: int
    labelled: int
    labelled_share: float
    predicted_mix: dict[str, float]
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    without_labels: ExpectedPerformance
    accuracy: float | None = None
    weighted_f1: float | None = None
    weighted_f1_ci95: tuple[float, float] | None = None
    macro_f1: float | None = None
    macro_f1_ci95: tuple[float, float] | None = None
    recall: dict[str, float] | None = None
    log_loss: float | None = None
    calibration: CalibrationCheck | None = None


class AccuracyTest(ReportPart):
    method: Literal["fisher_exact", "two_proportion_z"]
    z: float | None = None
    p_value: float


class LatencyTest(ReportPart):
    test: str
    p_value: float | None
    p95_ratio: float | None
    p95_diff_ms: float | None


class Comparison(ReportPart):
    """Candidate against champion: the decision metric, accuracy, F1 and latency."""

    decision_metric: str
    metric_champion: float
    metric_candidate: float
    metric_gain: float
    metric_gain_ci95: tuple[float, float]
    always_valid_p: float
    accuracy_delta: float
    accuracy_delta_ci95: tuple[float, float]
    accuracy_test: AccuracyTest
    weighted_f1_delta: float
    weighted_f1_delta_ci95: tuple[float, float]
    latency: LatencyTest
    labelled_per_arm_needed: float | None
    """Rows per arm at which the gain's always-valid interval narrows to the margin."""
    labelled_per_arm_still_needed: float | None
    margin: float | None = None
    """The non-inferiority margin the decision used (the metric's units)."""
    metric_gain_always_valid_ci95: tuple[float, float] | None = None
    """The gain's always-valid 95% interval (valid however often the report is read)."""
    metric_outcome: Literal["better", "worse", "not_worse", "undecided"] = "undecided"
    """What the decision metric says (`avsev.monitoring.ab.metric_decision`)."""


class ShadowMcNemar(ReportPart):
    """Served and shadow predictions of the same requests, paired where the truth is known."""

    rows: int
    only_a_correct: int
    only_b_correct: int
    both_correct: int
    both_wrong: int
    method: str
    statistic: float
    p_value: float
    alpha: float
    significant: bool
    verdict: str
    served_version: str
    shadow_version: str


class RecordCounts(ReportPart):
    predictions: int
    labelled: int
    skipped_newer_schema: int


class ABReport(ReportPart):
    report: Literal["ab"] = "ab"
    generated_at: str
    window: dict[str, Any]
    records: RecordCounts
    champion: str | None
    candidate: str | None
    decision_metric: str
    versions: dict[str, VersionSummary]
    shadow_mcnemar: ShadowMcNemar | None = None
    comparison: Comparison | None = None
    decision: Decision
    reason: str
    as_of: str | None = None
    """When the scheduled job ran (its event's time)."""
    skipped: WindowGaps | None = None


# ---- drift -----------------------------------------------------------------------------


class MissingDrift(ReportPart):
    """A change in a field's missing share (a two-proportion z-test), or why it was skipped."""

    test: str
    statistic: float | None = None
    p_value: float | None = None
    change: float | None = None
    minimum_change: float | None = None
    drift: bool
    reason: str | None = None


class FeatureDrift(ReportPart):
    """One profiled field: its missing share, and its values' test (numbers: PSI, means, KS or
    a distance; categories: PSI, shares, chi-square or Jensen-Shannon), or why skipped."""

    kind: Literal["numeric", "categorical"]
    rows: int
    missing_rate_ref: float
    missing_rate_cur: float
    missing_rate_changed: bool
    missing_drift: MissingDrift
    psi: float | None = None
    mean_ref: float | None = None
    mean_cur: float | None = None
    unseen_categories: dict[str, int] | None = None
    shares_ref: dict[str, float] | None = None
    shares_cur: dict[str, float] | None = None
    test: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    drift: bool
    unseen_in_other_bucket: int | None = None
    value_drift: bool
    material: bool
    """Counts toward the importance-weighted drift share."""
    reason: str | None = None
    score: float | None = None
    """One number per feature for dashboards: the distance, or 1 − p for a test."""
    importance: float | None = None
    """This field's share of the model's mean |SHAP|."""

    @property
    def checked(self) -> bool:
        """Its values were tested, or its missing share was."""
        return self.test != "skipped" or self.missing_drift.drift


class PredictionDrift(ReportPart):
    """The predicted class mix against the card's (as a categorical feature), or skipped."""

    psi: float | None = None
    unseen_categories: dict[str, int] | None = None
    shares_ref: dict[str, float] | None = None
    shares_cur: dict[str, float] | None = None
    test: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    drift: bool
    reason: str | None = None


class ConceptDrift(ReportPart):
    """Weighted F1 on labelled recent records against the card's, or too few labels."""

    drift: bool
    status: Literal["checked", "insufficient_data"]
    labelled: int
    needed: int | None = None
    weighted_f1: float | None = None
    weighted_f1_ci95: tuple[float, float] | None = None
    """Bootstrap 95% interval: drift when it lies wholly below `floor`."""
    reference_weighted_f1: float | None = None
    floor: float | None = None


class ModelRef(ReportPart):
    name: str
    version: str


class DriftReport(ReportPart):
    report: Literal["drift"] = "drift"
    generated_at: str
    model: ModelRef
    window: dict[str, Any]
    rows: int
    method: str
    status: Literal["checked", "insufficient_data"]
    dataset_drift: bool
    drift_share: float | None = None
    dataset_drift_threshold: float | None = None
    importance_weighted_drift_share: float | None = None
    importance_weighted_threshold: float | None = None
    drifted_features: list[str] | None = None
    features: dict[str, FeatureDrift] | None = None
    missing_rate_changes: list[str] | None = None
    prediction_drift: PredictionDrift | None = None
    concept_drift: ConceptDrift | None = None
    drift_found: bool
    """What alerts: dataset drift or concept drift (a feature or the class mix alone does not)."""
    reason: str | None = None
    performance_without_labels: PerformanceWithoutLabels | None = None
    skipped: WindowGaps | None = None
