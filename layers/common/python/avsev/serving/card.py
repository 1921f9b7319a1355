"""The model card (`card.json` in every bundle) as one typed model.

The build writes it (`avsev_tools.pipeline.build`), and everything that needs a fact about a model
reads it through `Card`: serving (name, version, classes, feature spec, importance), the parity
check (golden requests), monitoring (reference profile, prediction mix, test metrics,
calibration and the estimate's recalibration), the retraining loop (data window, test
accuracy) and the registry (lineage).

Required are the facts without which a bundle cannot be loaded: `name`, `version`, `arch`,
`classes`, `feature_spec` and `files`. Everything else is optional, since cards written before a
part existed lack it (`calibration.estimate_recalibration`, `runtime_abi`, ...).

Every part keeps the keys it does not declare (`extra="allow"`) and `to_dict` writes back only
the keys the card had (`exclude_unset`), in the order read: a card read and written again is
the same JSON document, whether older or newer than this model. Values are not coerced on
output: numbers stay Python floats (NaN included) and `json.dumps` writes them as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avsev.serving.features import FeatureSpec


class CardError(ValueError):
    """A card that is not a valid model card; the message names each bad field."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this part: its keys as read (or given), nothing added."""
        return self.model_dump(by_alias=True, exclude_unset=True)


# ---- feature spec -------------------------------------------------------------------------


class FeatureDoc(_Part):
    """One model input as the card lists it (`avsev.serving.features.Feature.to_dict`)."""

    name: str
    source: str
    kind: Literal["numeric", "categorical"]
    categories: list[str] | None = None
    encoding: str | None = None
    derive: str | None = None
    range: list[float | None] | None = None
    cap: float | None = None


class FeatureSpecDoc(_Part):
    """The ordered inputs of the model; `spec()` is the encoder built from them."""

    features: list[FeatureDoc]

    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.to_dict())


# ---- model facts --------------------------------------------------------------------------


class ModelFacts(_Part):
    """What was compiled: tree counts, training parameters, compiler and flags."""

    kind: str | None = None
    n_trees: int | None = None
    max_depth: int | None = None
    best_iteration: int | None = None
    params: dict[str, Any] | None = None
    balanced: bool | None = None
    compiler: str | None = None
    cflags: list[str] | None = None
    evaluator: dict[str, Any] | None = None


# ---- metrics ------------------------------------------------------------------------------


class ClassMetrics(_Part):
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    support: int | None = None


class Confusion(_Part):
    """Rows are the actual class, columns the predicted one, both in `labels`' order."""

    labels: list[str]
    matrix: list[list[int]]


class Baseline(_Part):
    """Always answering the majority class (`class_` is the JSON key `class`)."""

    class_: str | None = Field(default=None, alias="class")
    accuracy: float | None = None
    weighted_f1: float | None = None
    macro_f1: float | None = None
    log_loss_prior: float | None = None


class SplitMetrics(_Part):
    """The model's scores on one held-out split."""

    rows: int | None = None
    accuracy: float | None = None
    weighted_f1: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None
    per_class: dict[str, ClassMetrics] | None = None
    confusion: Confusion | None = None
    baseline_majority: Baseline | None = None
    gain_over_prior: float | None = None


class BlankMetrics(_Part):
    """The test split with the most important field blanked in `share` of the rows (`field`
    and `share` first, as the build writes them)."""

    field: str | None = None
    share: float | None = None
    rows: int | None = None
    accuracy: float | None = None
    weighted_f1: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None
    per_class: dict[str, ClassMetrics] | None = None
    confusion: Confusion | None = None
    baseline_majority: Baseline | None = None
    gain_over_prior: float | None = None


class Metrics(_Part):
    valid: SplitMetrics | None = None
    test: SplitMetrics = SplitMetrics()
    test_top_field_blank: BlankMetrics | None = None


# ---- calibration --------------------------------------------------------------------------


class CalibrationBin(_Part):
    lo: float
    hi: float
    count: int
    confidence: float | None = None
    accuracy: float | None = None


class Line(_Part):
    """y ≈ intercept + slope × x."""

    intercept: float
    slope: float


class RecalibrationDoc(_Part):
    """The estimate's recalibration lines (`avsev.monitoring.performance.Recalibration`)."""

    method: str = "linear"
    accuracy: Line
    log_loss: Line
    rows: int | None = None
    fitted_on: str | None = None


class Calibration(_Part):
    """Calibration on held-out rows (`from_` is the JSON key `from`)."""

    from_: str | None = Field(default=None, alias="from")
    bins: int | None = None
    rows: int | None = None
    top_label_ece: float | None = None
    classwise_ece: float | None = None
    top_label_bins: list[CalibrationBin] | None = None
    estimate_recalibration: RecalibrationDoc | None = None


# ---- data lineage and split ----------------------------------------------------------------


class DataLineage(_Part):
    """The training data: where it came from, how many rows, and the dates it spans."""

    path: str | None = None
    style: str | None = None
    rows_read: int | None = None
    rows: int | None = None
    dropped_values: dict[str, dict[str, int]] | None = None
    event_date_range: list[str | None] | None = None
    """[oldest, newest] event date (ISO) of the rows trained on."""
    class_counts: dict[str, int] | None = None

    def newest_event(self) -> dt.datetime | None:
        """The newest report date trained on (UTC midnight), when the card records it."""
        dates = self.event_date_range
        if not dates or len(dates) < 2 or not dates[1]:
            return None
        return dt.datetime.fromisoformat(dates[1]).replace(tzinfo=dt.UTC)


class Split(_Part):
    """Rows per split of the time-ordered data, and the first date of the later splits."""

    train: int | None = None
    valid: int | None = None
    test: int | None = None
    valid_from: str | None = None
    test_from: str | None = None


# ---- drift reference ----------------------------------------------------------------------


class FieldProfile(_Part):
    """One drift-checked field of the training rows (`avsev.monitoring.profile`): numbers
    carry bins and a value sample, categories their shares."""

    kind: Literal["numeric", "categorical"]
    n: int
    missing_rate: float
    mean: float | None = None
    std: float | None = None
    bin_edges: list[float] | None = None
    bin_shares: list[float] | None = None
    sample: list[float] | None = None
    shares: dict[str, float] | None = None


class ReferenceProfile(_Part):
    """The drift reference: the training rows' profile, per drift-checked field."""

    rows: int = 0
    fields: dict[str, FieldProfile] = {}


# ---- golden requests ----------------------------------------------------------------------


class Golden(_Part):
    """A request and the probabilities XGBoost gave it (in `Card.classes` order)."""

    request: dict[str, Any]
    probabilities: list[float]


class GoldenSet(_Part):
    """What the parity check of a new function version needs from its card: the model
    version, the class order and the golden requests (the stack hands it to the rollout
    controller as one JSON property)."""

    version: str
    classes: list[str]
    golden: list[Golden]

    @classmethod
    def from_dict(cls, doc: Any) -> GoldenSet:
        """Parse a golden set; raises CardError naming every missing or invalid field."""
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            raise CardError(describe(e)) from e


# ---- the card -----------------------------------------------------------------------------


class Card(_Part):
    """A bundle's model card. Fields in the order the build writes them."""

    name: str
    version: str
    created: str | None = None
    """When the bundle was built (ISO 8601 with offset)."""
    arch: str
    runtime_abi: int | None = None
    classes: list[str]
    feature_spec: FeatureSpecDoc
    model: ModelFacts = ModelFacts()
    metrics: Metrics = Metrics()
    importance: dict[str, float] | None = None
    """Report field → mean |SHAP| of the model on held-out rows."""
    calibration: Calibration | None = None
    data: DataLineage = DataLineage()
    split: Split = Split()
    reference_profile: ReferenceProfile | None = None
    prediction_mix: dict[str, float] = {}
    """Class → share of the training rows the model predicts as it."""
    golden: list[Golden] = []
    files: dict[str, str]
    """Bundle file → sha256."""

    @classmethod
    def from_dict(cls, doc: Any) -> Card:
        """Parse a card document; raises CardError naming every missing or invalid field."""
        if not isinstance(doc, Mapping):
            raise CardError(f"a card is a JSON object, not {type(doc).__name__}")
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            raise CardError(describe(e)) from e

    def spec(self) -> FeatureSpec:
        return self.feature_spec.spec()

    def reference(self) -> ReferenceProfile:
        """The drift reference; raises CardError when the card has none."""
        if self.reference_profile is None:
            raise CardError(f"model {self.version}: the card has no reference_profile")
        return self.reference_profile

    def golden_set(self) -> GoldenSet:
        return GoldenSet(version=self.version, classes=self.classes, golden=self.golden)

    def recalibration(self) -> RecalibrationDoc | None:
        return self.calibration.estimate_recalibration if self.calibration else None

    def data_end(self) -> dt.datetime | None:
        """When the model's knowledge ends: the newest report date it trained on, else when
        it was built."""
        newest = self.data.newest_event()
        if newest is not None:
            return newest
        return dt.datetime.fromisoformat(self.created) if self.created else None


def describe(error: ValidationError) -> str:
    """`field.path: what is wrong` for each error, `; `-joined (`metrics.test.rows: ...`)."""
    out = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "card"
        what = "required, missing" if e["type"] == "missing" else e["msg"]
        out.append(f"{where}: {what}")
    return "; ".join(out)
