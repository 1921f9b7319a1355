"""The request and answer models of the API: one place for every field, its range and categories.

Everything here is pure Python + pydantic (no numpy, pandas or boto3): it is on the hot path.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from avsev.constants import EV_ID_PATTERN
from avsev.serving.completeness import IMPORTANT_SHARE, WarningCode

SEVERITIES: tuple[str, ...] = ("Fatal", "Serious", "Minor", "None")
"""The classes, in the model's output order (index 0 is Fatal)."""

Severity = Literal["Fatal", "Serious", "Minor", "None"]

MISSING_WORDS = frozenset({"unknown", "unk", "unkn", "n/a", "na", "none given", ""})
"""Values of the public export that mean "not known": they become missing, not errors."""

CATEGORIES: dict[str, tuple[str, ...]] = {
    "engine_type": (
        "Reciprocating",
        "Turbo Prop",
        "Turbo Fan",
        "Turbo Jet",
        "Turbo Shaft",
        "Electric",
        "Geared Turbofan",
        "Hybrid Rocket",
        "LR",
        "NONE",
    ),
    "purpose_of_flight": (
        "Personal",
        "Instructional",
        "Aerial Application",
        "Business",
        "Positioning",
        "Skydiving",
        "Ferry",
        "Aerial Observation",
        "Executive/corporate",
        "Other Work Use",
        "Flight Test",
        "Banner Tow",
        "Public Aircraft",
        "Public Aircraft - Federal",
        "Public Aircraft - State",
        "Public Aircraft - Local",
        "Air Race/show",
        "Glider Tow",
        "Firefighting",
        "Air Drop",
        "External Load",
        "ASHO",
        "PUBS",
        "PUBL",
    ),
    "broad_phase_of_flight": (
        "Standing",
        "Taxi",
        "Takeoff",
        "Climb",
        "Cruise",
        "Descent",
        "Approach",
        "Go-around",
        "Landing",
        "Maneuvering",
        "Other",
    ),
    "weather_condition": ("VMC", "IMC"),
}
"""Closed category sets of the public NTSB export (matched case-insensitively)."""

CATEGORY_ALIASES: dict[str, dict[str, str]] = {
    "purpose_of_flight": {"air race show": "Air Race/show", "air race/show": "Air Race/show"},
    "broad_phase_of_flight": {"go around": "Go-around", "goaround": "Go-around"},
    "engine_type": {
        "turboprop": "Turbo Prop",
        "turbofan": "Turbo Fan",
        "turbojet": "Turbo Jet",
        "turboshaft": "Turbo Shaft",
        "piston": "Reciprocating",
        "none": "NONE",
    },
}

OCCURRENCE_CODE_RANGES: tuple[tuple[int, int], ...] = (
    (100, 179),
    (200, 259),
    (260, 290),
    (300, 370),
    (380, 390),
    (400, 430),
)

OPEN_CATEGORY_FIELDS = ("make",)
"""Categories with no closed set: rare or unseen values fall into an `other` bucket."""

MAKE_MAX_LENGTH = 64


_SPACES = re.compile(r"[\s_]+")


def _key(value: str) -> str:
    return _SPACES.sub(" ", value.strip().lower())


_LOOKUP: dict[str, dict[str, str]] = {
    field: {_key(c): c for c in cats} | CATEGORY_ALIASES.get(field, {})
    for field, cats in CATEGORIES.items()
}


@functools.lru_cache(maxsize=8192)
def canonical_category(field: str, value: str | None) -> str | None:
    """The export's spelling of a category value; None when it means unknown.

    Raises ValueError for a value outside the field's closed set.
    """
    if value is None:
        return None
    key = _key(value)
    if key in MISSING_WORDS:
        return None
    if field in OPEN_CATEGORY_FIELDS:
        return key
    found = _LOOKUP[field].get(key)
    if found is None:
        raise ValueError(f"unknown category {value!r}")
    return found


def allowed_text(field: str) -> str:
    """What a field allows, in words: the `allowed` part of a validation error."""
    return FIELD_ALLOWED.get(field, "see the OpenAPI document")


FIELD_ALLOWED: dict[str, str] = {
    "ev_id": "1-64 characters of A-Z a-z 0-9 . _ -",
    "event_date": "an ISO date (YYYY-MM-DD), not in the future",
    "dec_latitude": "a number from -90 to 90",
    "dec_longitude": "a number from -180 to 180",
    "aircraft_age": "an integer from 0 to 100 (years)",
    "pilot_tot_time": "a number from 0 to 50000 (hours)",
    "pilot_90_days": "a number from 0 to 500 (hours), not above pilot_tot_time",
    "phase_code": "an integer from 500 to 620",
    "occurrence_code": "an integer in "
    + ", ".join(f"{lo}-{hi}" for lo, hi in OCCURRENCE_CODE_RANGES),
    "number_of_engines": "an integer from 0 to 8",
    "make": "a manufacturer name of 1-64 characters",
    "amateur_built": "true or false",
    **{
        f: "one of " + ", ".join(cats) + " (any case), or Unknown / UNK / N/A / blank"
        for f, cats in CATEGORIES.items()
    },
}


NUMERIC_FIELDS: dict[str, tuple[float, float, type]] = {
    "dec_latitude": (-90, 90, float),
    "dec_longitude": (-180, 180, float),
    "aircraft_age": (0, 100, int),
    "pilot_tot_time": (0, 50_000, float),
    "pilot_90_days": (0, 500, float),
    "phase_code": (500, 620, int),
    "occurrence_code": (100, 430, int),
    "number_of_engines": (0, 8, int),
}
"""Numeric report fields: (lowest, highest, type). The schema and the data loader both use it."""


def valid_occurrence_code(value: float) -> bool:
    return any(lo <= value <= hi for lo, hi in OCCURRENCE_CODE_RANGES)


def _integral(value: Any) -> Any:
    """JSON has one number type: 2.0 is the integer 2 (but 2.5, "2" and true are not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _num(name: str) -> Any:
    lo, hi, kind = NUMERIC_FIELDS[name]
    extra: dict[str, Any] = {}
    if name == "occurrence_code":
        extra["anyOf"] = [{"minimum": a, "maximum": b} for a, b in OCCURRENCE_CODE_RANGES]
    field = Field(
        ge=lo, le=hi, strict=True, description=FIELD_ALLOWED[name], json_schema_extra=extra or None
    )
    if name == "occurrence_code":
        return Annotated[int, field, BeforeValidator(_integral), AfterValidator(_occurrence_code)]
    if kind is int:
        return Annotated[int, field, BeforeValidator(_integral)]
    return Annotated[float, field]


# Validators below are plain functions (no `info`), and a category's is a `partial` of the
# cached lookup: a batch of 1,000 reports calls them thousands of times.


def _occurrence_code(value: int) -> int:
    if not valid_occurrence_code(value):
        raise ValueError(f"{value} is not a valid occurrence code")
    return value


@functools.lru_cache(maxsize=1)
def _latest_date_in(minute: int) -> dt.date:
    return dt.date.today() + dt.timedelta(days=1)


def _not_in_future(value: dt.date) -> dt.date:
    """One day of slack: a report dated "today" somewhere east of UTC is fine (today is
    looked up once a minute)."""
    if value > _latest_date_in(int(time.time() // 60)):
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


def _date_not_number(value: Any) -> Any:
    """An event date is written as a date, YYYY-MM-DD: a number (or a string of digits) is
    refused, not read as Unix time as pydantic's lax mode would."""
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    ):
        raise ValueError(
            f"must be an ISO date string (YYYY-MM-DD), not the number {value!r} (no Unix time)"
        )
    return value


MISSING_SPELLINGS = ("Unknown", "UNK", "UNKN", "N/A", "NA", "None given", "")
"""The words for "not known" as the document lists them (any case is accepted)."""


def _category(name: str) -> Any:
    """A closed category: the export's spellings (matched case-insensitively), or a word
    for unknown (the value is then missing, not an error: the document says so)."""
    assert {w.lower() for w in MISSING_SPELLINGS} == MISSING_WORDS
    values: list[Any] = [*CATEGORIES[name], *MISSING_SPELLINGS]
    return Annotated[
        str,
        Field(description=FIELD_ALLOWED[name], json_schema_extra={"enum": values}),
        AfterValidator(functools.partial(canonical_category, name)),
    ]


class AccidentReport(BaseModel):
    """One accident as a client sends it. Every field but `ev_id` may be missing."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    ev_id: Annotated[str, Field(pattern=EV_ID_PATTERN, strict=True, description="NTSB event id")]
    event_date: (
        Annotated[dt.date, BeforeValidator(_date_not_number), AfterValidator(_not_in_future)] | None
    ) = None
    dec_latitude: _num("dec_latitude") | None = None  # type: ignore[valid-type]
    dec_longitude: _num("dec_longitude") | None = None  # type: ignore[valid-type]
    aircraft_age: _num("aircraft_age") | None = None  # type: ignore[valid-type]
    pilot_tot_time: _num("pilot_tot_time") | None = None  # type: ignore[valid-type]
    pilot_90_days: _num("pilot_90_days") | None = None  # type: ignore[valid-type]
    phase_code: _num("phase_code") | None = None  # type: ignore[valid-type]
    occurrence_code: _num("occurrence_code") | None = None  # type: ignore[valid-type]
    number_of_engines: _num("number_of_engines") | None = None  # type: ignore[valid-type]
    engine_type: _category("engine_type") | None = None  # type: ignore[valid-type]
    purpose_of_flight: _category("purpose_of_flight") | None = None  # type: ignore[valid-type]
    broad_phase_of_flight: _category("broad_phase_of_flight") | None = None  # type: ignore[valid-type]
    weather_condition: _category("weather_condition") | None = None  # type: ignore[valid-type]
    make: (
        Annotated[
            str,
            Field(min_length=1, max_length=MAKE_MAX_LENGTH, strict=True),
            AfterValidator(functools.partial(canonical_category, "make")),
        ]
        | None
    ) = None
    amateur_built: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("pilot_90_days")
    @classmethod
    def _recent_hours_within_total(cls, value: float | None, info: Any) -> float | None:
        total = info.data.get("pilot_tot_time")
        if value is not None and total is not None and value > total:
            raise ValueError(f"{value} hours exceeds pilot_tot_time ({total})")
        return value

    def __repr__(self) -> str:  # Powertools logs route arguments with repr() on every request
        return f"{type(self).__name__}(ev_id={self.ev_id!r}, <{len(self.model_fields_set) - 1} fields set>)"

    def fields(self) -> dict[str, Any]:
        """The validated values that were given (missing ones left out)."""
        return self.model_dump(exclude_none=True, include=set(REPORT_FIELDS))


REPORT_FIELDS = frozenset(AccidentReport.model_fields) - {"ev_id"}
"""The fields of a report that can feed a model."""


class PredictRequest(AccidentReport):
    """`POST /predict`: one report."""


class ExplainRequest(AccidentReport):
    """`POST /predict/explain`: one report, and how many factors to return."""

    top_k: Annotated[int, Field(ge=1, le=30, strict=True)] = 5


MAX_BATCH = 1000


class BatchRequest(BaseModel):
    """`POST /predict/batch`: 1 to 1,000 reports, all valid or none scored."""

    model_config = ConfigDict(extra="forbid")

    reports: Annotated[list[AccidentReport], Field(min_length=1, max_length=MAX_BATCH)]

    def __repr__(self) -> str:  # Powertools logs route arguments with repr(): keep it cheap
        return f"BatchRequest(<{len(self.reports)} reports>)"


def as_utc(value: dt.datetime) -> dt.datetime:
    """The same instant in UTC: an offset is converted, a naive time is taken as UTC (a date
    alone has been read as its midnight)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError as e:
        raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from e


def utc_text(value: dt.datetime) -> str:
    """The one written form of every timestamp a record carries: UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

    Firehose's record format conversion (OpenX JSON SerDe) reads `yyyy-MM-dd'T'HH:mm:ss[.S]'Z'`
    with a fraction of up to 9 digits, and no form with an offset: a record it cannot read sends
    its whole batch to the error prefix
    (https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion.html).
    """
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


UtcDateTime = Annotated[
    dt.datetime,
    AfterValidator(as_utc),
    PlainSerializer(utc_text, return_type=str, when_used="json"),
]
"""A timestamp held in UTC and written as `utc_text` writes it (records, outcomes)."""

OBSERVED_AT_EARLIEST = dt.datetime(1962, 1, 1, tzinfo=dt.UTC)
"""No outcome is observed before the NTSB aviation accident database's era (it holds events
from 1962 on; the shipped export's earliest is 1979-09-17)."""
OBSERVED_AT_SKEW = dt.timedelta(minutes=5)
"""How far past the receiving clock an `observed_at` may be (a client's clock runs ahead)."""
OBSERVED_AT_ALLOWED = (
    "an ISO 8601 date-time (converted to UTC; without an offset it is taken as UTC) or a date "
    f"(midnight UTC), from {OBSERVED_AT_EARLIEST.date().isoformat()} to "
    f"{OBSERVED_AT_SKEW.total_seconds() / 60:.0f} minutes from now"
)
_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_text(value: Any) -> Any:
    """A JSON string in ISO 8601 form (pydantic would also read numbers as epoch seconds)."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _ISO_START.match(value):
        raise ValueError("must be an ISO 8601 date-time or date string")
    return value


def _observed_in_range(value: dt.datetime) -> dt.datetime:
    if value < OBSERVED_AT_EARLIEST:
        raise ValueError(f"{utc_text(value)} is before {OBSERVED_AT_EARLIEST.date().isoformat()}")
    latest = dt.datetime.now(dt.UTC) + OBSERVED_AT_SKEW
    if value > latest:
        raise ValueError(
            f"{utc_text(value)} is in the future (the latest allowed is {utc_text(latest)})"
        )
    return value


ObservedAt = Annotated[
    UtcDateTime,
    BeforeValidator(_iso_text),
    AfterValidator(_observed_in_range),
    Field(description="When the severity was established: " + OBSERVED_AT_ALLOWED),
]
"""An outcome's `observed_at` as a client sends it: bounded here, at the edge. A record
already written (`records.OutcomeRecord`) is read back as it is, bounds or not."""


class Outcome(BaseModel):
    """The true severity of an event, learned after its prediction."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    ev_id: Annotated[str, Field(pattern=EV_ID_PATTERN, strict=True)]
    actual_severity: Severity
    observed_at: ObservedAt | None = None


class OutcomesRequest(BaseModel):
    """`POST /outcomes`: one or many outcomes."""

    model_config = ConfigDict(extra="forbid")

    outcomes: Annotated[list[Outcome], Field(min_length=1, max_length=MAX_BATCH)]

    @model_validator(mode="before")
    @classmethod
    def _single(cls, value: Any) -> Any:
        """One outcome may be sent as it is, without the list around it."""
        if isinstance(value, dict) and "outcomes" not in value and "ev_id" in value:
            return {"outcomes": [value]}
        return value

    def __repr__(self) -> str:
        return f"OutcomesRequest(<{len(self.outcomes)} outcomes>)"


class InputWarning(BaseModel):
    """Something about a report that makes its answer less reliable (never an error)."""

    code: Annotated[
        WarningCode,
        Field(
            description="`missing_important_field`: a blank field among the model's most "
            f"important (the fewest fields carrying {IMPORTANT_SHARE:.0%} of its importance); "
            "`out_of_training_range`: a number outside the values seen in training; "
            "`unseen_category`: a category the training rows never had (scored as blank)"
        ),
    ]
    field: Annotated[str, Field(description="The report field concerned")]
    detail: Annotated[str, Field(description="What was found, in words")]


class Prediction(BaseModel):
    """The answer to one report."""

    ev_id: str
    prediction_label: Severity
    probabilities: dict[str, float]
    model_version: str
    request_id: str
    completeness: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="The share of the model's importance (mean |SHAP| per field, from its "
            "card) carried by the fields given; 1 when every field it reads was given",
        ),
    ]
    warnings: Annotated[
        list[InputWarning],
        Field(description="Missing important fields, out-of-range values, unseen categories"),
    ]


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
    model_version: str
    count: int


class Factor(BaseModel):
    """One feature's SHAP contribution to the predicted class's margin (log-odds)."""

    feature: str
    value: Any
    impact: float
    direction: Literal["raises", "lowers"]


class Explanation(Prediction):
    base_value: float
    margin: float
    top_contributing_factors: list[Factor]


class OutcomesAccepted(BaseModel):
    accepted: int
    request_id: str
