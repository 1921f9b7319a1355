"""One encoder for training and serving."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
from avsev.serving.features import OTHER, FeatureSpec, fit_spec
from avsev.serving.schema import AccidentReport
from avsev_tools.pipeline.train import matrix


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_serving_path_encodes_real_rows_exactly_as_training(real_data, real_model_dir):
    # Given the trained model's spec (as the card carries it)
    doc = json.loads((real_model_dir / "training.json").read_text())
    spec = FeatureSpec.from_dict(json.loads(json.dumps(doc["feature_spec"])))
    rows = real_data.reports()[:3000]
    # When the training path encodes the loader's rows
    trained = matrix(spec, rows)
    # And the serving path parses the same rows as a client's JSON
    served = []
    for row in rows:
        body = json.loads(json.dumps(row, default=lambda v: v.isoformat()))
        served.append(spec.encode(AccidentReport.model_validate(body).fields()))
    # Then the vectors are identical as the model sees them (float32), missing included
    assert trained.shape == (len(rows), len(spec))
    served32 = np.asarray(served, dtype=np.float32)
    mismatches = [
        (i, j)
        for i in range(len(rows))
        for j in range(len(spec))
        if not same(float(trained[i, j]), float(served32[i, j]))
    ]
    assert mismatches == []
    assert any(math.isnan(v) for r in served for v in r)  # the rows did exercise missing values


def test_categories_by_frequency_and_open_make_bucket():
    rows = (
        [{"make": "cessna", "engine_type": "Reciprocating"}] * 30
        + [{"make": "piper", "engine_type": "Turbo Fan"}] * 25
        + [{"make": "rare", "engine_type": "Reciprocating"}] * 3
    )
    spec = fit_spec(rows)
    make = next(f for f in spec.features if f.name == "make")
    assert make.categories == ("cessna", "piper", OTHER)
    assert spec.encode({"make": "rare"})[spec.names.index("make")] == 2.0
    assert spec.encode({"make": "never seen"})[spec.names.index("make")] == 2.0
    assert math.isnan(spec.encode({})[spec.names.index("make")])
    engine = next(f for f in spec.features if f.name == "engine_type")
    assert engine.categories == ("Reciprocating", "Turbo Fan")
    # a valid export category the model never saw is missing, not a wrong code
    assert math.isnan(spec.encode({"engine_type": "Electric"})[spec.names.index("engine_type")])


def test_constant_features_are_left_out_and_dates_split():
    rows = [
        {"event_date": dt.date(2000 + i % 3, 1 + i % 12, 1), "amateur_built": False}
        for i in range(50)
    ]
    spec = fit_spec(rows)
    assert spec.names == ["event_year", "event_month"]
    assert spec.encode({"event_date": dt.date(2001, 7, 4)}) == [2001.0, 7.0]


def test_spec_round_trips_through_json(real_model_dir):
    doc = json.loads((real_model_dir / "training.json").read_text())
    spec = FeatureSpec.from_dict(doc["feature_spec"])
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_column_wise_encoding_equals_the_row_encoder(real_data, real_model_dir):
    # Given the real spec and real rows plus the odd ones: missing, NaN, unseen categories
    doc = json.loads((real_model_dir / "training.json").read_text())
    spec = FeatureSpec.from_dict(doc["feature_spec"])
    rows = [
        AccidentReport.model_validate(json.loads(json.dumps(r, default=lambda v: v.isoformat())))
        for r in real_data.reports()[:2000]
    ]
    fields = [r.fields() for r in rows]
    fields += [{}, {"make": "never seen", "engine_type": None, "dec_latitude": float("nan")}]
    fields += [{"event_date": dt.date(1999, 12, 31), "amateur_built": True}]
    # When they are encoded column by column (the batch path) and row by row
    columns = {s: [f.get(s) for f in fields] for s in spec.sources}
    packed = spec.encode_rows(columns, len(fields))
    by_row = [spec.encode(f) for f in fields]
    # Then the float32 rows are the same, missing values included
    assert np.array_equal(
        np.frombuffer(packed, dtype=np.float32).reshape(len(fields), len(spec)),
        np.asarray(by_row, dtype=np.float32),
        equal_nan=True,
    )
    assert all(
        same(a, b)
        for got, want in zip(spec.encode_many(fields), by_row, strict=True)
        for a, b in zip(got, want, strict=True)
    )


def test_event_year_is_capped_at_the_last_training_year():
    rows = [{"event_date": dt.date(2000 + i % 5, 1 + i % 12, 1)} for i in range(50)]
    spec = fit_spec(rows)
    year = next(f for f in spec.features if f.name == "event_year")
    assert year.cap == year.hi == 2004.0
    assert spec.encode({"event_date": dt.date(2031, 3, 9)}) == [2004.0, 3.0]  # the cap
    assert spec.encode({"event_date": dt.date(1990, 3, 9)}) == [1990.0, 3.0]  # below: as is
    # the cap travels with the spec (the card), so serving encodes as training did
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.encode({"event_date": dt.date(2031, 3, 9)}) == [2004.0, 3.0]
    assert spec.to_dict()["features"][0]["cap"] == 2004.0
    month = next(f for f in spec.features if f.name == "event_month")
    assert month.cap is None and "cap" not in spec.to_dict()["features"][1]
    # a spec written before the cap existed encodes years as before
    old = spec.to_dict()
    del old["features"][0]["cap"]
    assert FeatureSpec.from_dict(old).encode({"event_date": dt.date(2031, 3, 9)}) == [2031.0, 3.0]


def test_real_model_encodes_a_year_beyond_its_data_as_the_cap(real_model_dir):
    doc = json.loads((real_model_dir / "training.json").read_text())
    spec = FeatureSpec.from_dict(doc["feature_spec"])
    j = spec.names.index("event_year")
    row = AccidentReport.model_validate({"ev_id": "x", "event_date": "2025-06-01"}).fields()
    assert spec.encode(row)[j] == spec.features[j].cap == 2019.0


def test_column_wise_encoding_caps_the_year_as_the_row_encoder_does():
    """The batch route's column encoder and the row encoder are one encoder: a year beyond
    the cap, a month, a missing date encode alike both ways."""
    import datetime as dt

    from avsev.serving.features import Feature, FeatureSpec

    spec = FeatureSpec(
        (
            Feature(
                "event_year", "event_date", "numeric", derive="year", lo=1980, hi=2019, cap=2019
            ),
            Feature("event_month", "event_date", "numeric", derive="month", lo=1, hi=12),
        )
    )
    dates = [dt.date(2025, 3, 1), dt.date(2001, 7, 9), None]
    by_rows = [spec.encode({"event_date": d}) for d in dates]
    by_columns = spec.encode_rows({"event_date": dates}, len(dates))
    flat = [x for row in by_rows for x in row]
    assert [round(x, 3) if x == x else "nan" for x in by_columns] == [
        round(x, 3) if x == x else "nan" for x in flat
    ]
    assert by_rows[0][0] == 2019.0
