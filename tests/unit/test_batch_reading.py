"""Reading batch inputs column-wise is exactly reading them row by row: the loader's cleaning
of distinct values equals cleaning every row, and a chunk validated column-wise holds the
rows, values, rejects and reasons that `AccidentReport` per row gives (adversarial cells in
every column)."""

from __future__ import annotations

import math
from functools import partial
from typing import get_args

import pandas as pd
import pytest
from adversarial import EXTRA_FIELDS, adversarial_export
from avsev.batch.reading import (
    BEYOND_THE_LOADER,
    LOADER_CHECKED_VALIDATORS,
    _validate,
    validated_chunk,
)
from avsev.data import (
    CATEGORY_FIELDS,
    _boolean,
    _by_unique,
    _category,
    _dates,
    _Drops,
    _numeric,
    load_frame,
)
from avsev.serving.schema import NUMERIC_FIELDS, AccidentReport

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[(7, 0.25), (3, 0.6)], ids=["a-quarter-odd", "most-odd"])
def export(request) -> pd.DataFrame:
    seed, share = request.param
    return adversarial_export(seed=seed, share=share)


def _same(a: object, b: object) -> bool:
    missing = (None, pd.NaT)
    if a in missing or (isinstance(a, float) and math.isnan(a)):
        return b in missing or (isinstance(b, float) and math.isnan(b))
    return a == b and type(a) is type(b)


def cleaners() -> dict[str, tuple[str, object]]:
    import datetime as dt

    out: dict[str, tuple[str, object]] = {
        "Event_Date": ("event_date", partial(_dates, today=dt.date(2026, 11, 26))),
        "Amateur_Built": ("amateur_built", _boolean),
        "Latitude": ("dec_latitude", partial(_numeric, "dec_latitude")),
        "Number_of_Engines": ("number_of_engines", partial(_numeric, "number_of_engines")),
        "Make": ("make", partial(_category, "make")),
        "Engine_Type": ("engine_type", partial(_category, "engine_type")),
        "Weather_Condition": ("weather_condition", partial(_category, "weather_condition")),
    }
    out |= {f: (f, partial(_numeric, f)) for f in EXTRA_FIELDS}
    return out


@pytest.mark.parametrize("column", list(cleaners()))
def test_cleaning_distinct_values_is_cleaning_every_row(export, column):
    name, clean = cleaners()[column]
    raw = export[column].copy()
    raw.iloc[::97] = None  # a frame built in code may hold None, not only strings

    drops = _Drops()
    spread = _by_unique(name, raw, clean, drops)
    values, problems = clean(raw)

    assert len(spread) == len(raw) and spread.index.equals(raw.index)
    assert all(_same(a, b) for a, b in zip(spread.tolist(), values.tolist(), strict=True))
    counted = {reason: int(mask.sum()) for reason, mask in problems.items() if mask.sum()}
    assert drops.as_dict().get(name, {}) == counted
    assert counted, "the adversarial column must have dropped something"


def schema_validators() -> set[str]:
    """The names of every validator `AccidentReport` runs: its decorated ones and those in
    its fields' annotations (a `partial` by the function it wraps)."""
    names = set(AccidentReport.__pydantic_decorators__.field_validators)
    names |= set(AccidentReport.__pydantic_decorators__.model_validators)
    for info in AccidentReport.model_fields.values():
        for meta in info.metadata + [
            m for arg in get_args(info.annotation) for m in getattr(arg, "__metadata__", ())
        ]:
            func = getattr(meta, "func", None)
            if func is not None:
                names.add(getattr(func, "func", func).__name__)
    return names


def test_the_fast_path_knows_every_validator_of_the_schema():
    # A validator added to AccidentReport must be placed in one of the two sets (and, if the
    # loader does not apply it, checked in reading._may_be_refused) or this fails.
    assert schema_validators() == LOADER_CHECKED_VALIDATORS | BEYOND_THE_LOADER


def test_column_wise_validation_is_per_row_validation(export):
    loaded = load_frame(export, path="adversarial.csv", require_label=False, row_offset=1)

    chunk = validated_chunk(loaded, 1, len(export))
    reports, numbers, rejected = _validate(loaded.reports(), 1)

    assert chunk.rejected == rejected
    assert {r["reason"].split(":")[0] for r in rejected} >= {"pilot_90_days", "make"}
    assert chunk.numbers == numbers
    assert chunk.ev_ids == [r.ev_id for r in reports]
    assert chunk.scored + len(chunk.rejected) == chunk.read == len(export)
    fields = ["event_date", *NUMERIC_FIELDS, *CATEGORY_FIELDS, "amateur_built"]
    for field in fields:
        got, want = chunk.column(field), [getattr(r, field) for r in reports]
        assert all(
            _same(a, b) or (isinstance(a, float) and a == b)  # numbers: 2.0 reads as 2
            for a, b in zip(got, want, strict=True)
        ), field
