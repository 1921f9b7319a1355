"""Per-request completeness and input warnings: in the answer, the batch answer, the records
(served and shadow), the OpenAPI document, and the record tables (older objects without them
still read)."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path

import duckdb
import pytest
from avsev.monitoring import rollups
from avsev.monitoring.query import DuckDBEngine, write_records_parquet
from avsev.monitoring.tables import PREDICTIONS, duckdb_columns, partition
from avsev.serving.completeness import (
    IMPORTANT_SHARE,
    MISSING_IMPORTANT,
    OUT_OF_RANGE,
    UNSEEN_CATEGORY,
    InputCheck,
    important_fields,
)
from avsev.serving.features import OTHER, Feature, FeatureSpec
from avsev.serving.records import PredictionRecord, parse_records
from avsev.serving.schema import CATEGORIES, AccidentReport
from avsev.serving.service import PredictionService
from card_support import card_with
from lambda_support import call, rest_event

# ---- the rule, on a small spec -------------------------------------------------------------

SPEC = FeatureSpec(
    (
        Feature("event_year", "event_date", "numeric", derive="year", lo=1990, hi=2020, cap=2020),
        Feature("event_month", "event_date", "numeric", derive="month", lo=1, hi=12),
        Feature("aircraft_age", "aircraft_age", "numeric", lo=1, hi=60),
        Feature("weather_condition", "weather_condition", "categorical", categories=("VMC",)),
        Feature("make", "make", "categorical", categories=("cessna", "piper", OTHER)),
    )
)
CARD = card_with(
    importance={"event_date": 5.0, "aircraft_age": 3.0, "weather_condition": 1.0, "make": 1.0}
)


def assess(check: InputCheck, fields: dict) -> tuple[float, list[dict[str, str]]]:
    completeness, warnings = check.assess_rows([fields], [check.spec.encode(fields)])
    return completeness[0], warnings[0]


def test_completeness_is_the_given_share_of_importance_and_warnings_name_the_field():
    check = InputCheck.from_card(SPEC, CARD)
    assert check.weights == {
        "event_date": 0.5,
        "aircraft_age": 0.3,
        "weather_condition": 0.1,
        "make": 0.1,
    }
    # the fewest top fields carrying half the importance: event_date alone
    assert check.important == ("event_date",)
    full = {
        "event_date": dt.date(2010, 5, 1),
        "aircraft_age": 20,
        "weather_condition": "VMC",
        "make": "piper",
    }
    assert assess(check, full) == (1.0, [])
    # the top field blank: its share is gone, and it is named
    c, w = assess(check, {k: v for k, v in full.items() if k != "event_date"})
    assert c == 0.5
    assert w == [
        {
            "code": MISSING_IMPORTANT,
            "field": "event_date",
            "detail": "event_date was not given: it carries 50% of the model's importance",
        }
    ]
    # a less important field blank: completeness only
    assert assess(check, {k: v for k, v in full.items() if k != "make"}) == (0.9, [])
    # out of range: a year after the last training year (capped), an age below the lowest
    c, w = assess(check, full | {"event_date": dt.date(2023, 1, 1), "aircraft_age": 0})
    assert c == 1.0
    assert w == [
        {
            "code": OUT_OF_RANGE,
            "field": "event_date",
            "detail": "event_date year 2023 is above the training range 1990 to 2020; scored as 2020",
        },
        {
            "code": OUT_OF_RANGE,
            "field": "aircraft_age",
            "detail": "aircraft_age 0 is below the training range 1 to 60",
        },
    ]
    # an unseen closed category is scored as blank (no share); an open one (make) goes to the
    # `other` bucket the model learned, without a warning
    c, w = assess(check, full | {"weather_condition": "IMC", "make": "zlin"})
    assert c == 0.9
    assert w == [
        {
            "code": UNSEEN_CATEGORY,
            "field": "weather_condition",
            "detail": "weather_condition 'IMC' was not seen in training; scored as blank",
        }
    ]
    # nothing given
    c, w = assess(check, {})
    assert c == 0.0 and [x["field"] for x in w] == ["event_date"]


def test_a_card_without_importance_weighs_fields_equally_and_names_none_important():
    check = InputCheck.from_card(SPEC, card_with(importance=None))
    assert check.weights == {s: 0.25 for s in SPEC.sources} and check.important == ()
    assert assess(check, {"aircraft_age": 5, "make": "cessna"}) == (0.5, [])


def test_high_importance_is_the_fewest_top_fields_carrying_the_stated_share():
    weights = {"a": 0.3, "b": 0.25, "c": 0.2, "d": 0.15, "e": 0.1}
    assert IMPORTANT_SHARE == 0.5
    assert important_fields(weights) == ["a", "b"]  # 0.55 >= 0.5
    assert important_fields({"a": 0.6, "b": 0.4}) == ["a"]
    assert important_fields({"a": 0.25, "b": 0.25, "c": 0.5}) == ["c"]


def test_batch_assessment_equals_the_row_by_row_one():
    check = InputCheck.from_card(SPEC, CARD)
    rows = [
        {},
        {"event_date": dt.date(1980, 1, 1), "make": "zlin", "weather_condition": "IMC"},
        {"event_date": dt.date(2000, 1, 1), "aircraft_age": 61, "make": "cessna"},
    ]
    columns = {s: [r.get(s) for r in rows] for s in SPEC.sources}
    batch = check.assess(columns, SPEC.encode_columns(columns), len(rows))
    assert batch == check.assess_rows(rows, [SPEC.encode(r) for r in rows])
    assert [len(w) for w in batch[1]] == [1, 2, 1]


def _odd_reports(spec: FeatureSpec, n: int, seed: int) -> list[dict]:
    """Reports mixing given, missing (None and NaN), out-of-range, capped and unseen values."""
    import random

    rng = random.Random(seed)
    pools: dict[str, list] = {}
    for f in spec.features:
        if f.source == "event_date":
            pools[f.source] = [
                None,
                *(dt.date(y, rng.randint(1, 12), 1) for y in range(1975, 2030)),
            ]
        elif f.kind == "numeric":
            lo, hi = float(f.lo or 0), float(f.hi or 1)
            pools[f.source] = [None, math.nan, lo, hi, lo - 1, hi + 1, (lo + hi) / 2, lo - 1e-6]
        else:
            pools[f.source] = [None, math.nan, "zlin", "IMC", "Landing", *list(f.codes)[:5]]
    return [
        {
            s: v
            for s, v in ((s, rng.choice(pool)) for s, pool in pools.items())
            if rng.random() < 0.9
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_batch_assessment_equals_the_row_by_row_one_on_odd_reports(real_bundle, seed):
    """The batch path finds the blank rows first and derives the rest from them: on reports
    full of edge values (and the small spec's), it gives what the row-by-row path gives."""
    for check in (real_bundle.inputs, InputCheck.from_card(SPEC, CARD)):
        spec = check.spec
        rows = _odd_reports(spec, 3000, seed)
        columns = {s: [r.get(s) for r in rows] for s in spec.sources}
        batch = check.assess(columns, spec.encode_columns(columns), len(rows))
        assert batch == check.assess_rows(rows, [spec.encode(r) for r in rows])
        codes = {w["code"] for ws in batch[1] for w in ws}
        assert codes == {MISSING_IMPORTANT, OUT_OF_RANGE, UNSEEN_CATEGORY}, codes
        assert len(set(batch[0])) > 5


def test_a_model_on_the_same_spec_reuses_anothers_row_checks(real_bundle):
    """A shadow reading the served spec answers from the served model's row checks, weighed
    by its own importance (`assess_as`): the same as checking the rows itself, in its own
    order, with its own important fields."""
    served = real_bundle.inputs
    spec = served.spec
    weights = dict(zip(served.weights, reversed(list(served.weights.values())), strict=True))
    shadow = InputCheck(spec, weights, tuple(important_fields(weights)))
    assert shadow.important != served.important
    rows = _odd_reports(spec, 3000, 3)
    encoded = [spec.encode(r) for r in rows]
    checks = served.check_rows(rows, encoded)
    expected = shadow.assess_rows(rows, encoded)
    assert shadow.assess_as(served, checks) == expected
    assert served.assess_as(served, checks) == served.assess_rows(rows, encoded)
    assert sum(len(w) > 1 for w in expected[1]) > 100  # orders that differ between the two
    with pytest.raises(ValueError, match="same feature spec"):
        InputCheck.from_card(SPEC, CARD).assess_as(served, checks)


# ---- the real model, through the handlers --------------------------------------------------


@pytest.fixture(scope="module")
def typical(real_bundle, real_data) -> dict:
    """A real report that gives every field the model reads, each within its training range
    and category set."""
    spec = real_bundle.spec
    for row in real_data.reports():
        fields = AccidentReport.model_validate(_json(row)).fields()
        if all(fields.get(s) is not None for s in spec.sources):
            _, warnings = real_bundle.inputs.assess_rows([fields], [spec.encode(fields)])
            if not warnings[0]:
                return _json(row)
    raise AssertionError("no complete real report")


def _json(row: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def predict(functions, body: dict) -> dict:
    status, answer, _ = call(functions["predict"], rest_event("POST", "/predict", body))
    assert status == 200, answer
    return answer


def test_a_complete_typical_report_is_complete_without_warnings(functions, typical, capsys):
    answer = predict(functions, typical)
    records, _, _ = parse_records(capsys.readouterr().out.splitlines())
    assert answer["completeness"] == 1.0 and answer["warnings"] == []
    assert records[0].completeness == 1.0 and records[0].warnings == []


def test_the_top_field_blank_lowers_completeness_and_is_named(
    functions, real_bundle, typical, capsys
):
    top = real_bundle.inputs.important[0]
    answer = predict(functions, {**typical, top: None})
    records, _, _ = parse_records(capsys.readouterr().out.splitlines())
    share = real_bundle.inputs.weights[top]
    assert answer["completeness"] == pytest.approx(1 - share, abs=1e-4)
    assert answer["completeness"] < 1
    assert answer["warnings"] == [
        {
            "code": "missing_important_field",
            "field": top,
            "detail": f"{top} was not given: it carries {share:.0%} of the model's importance",
        }
    ]
    # the record carries the same values as the answer
    assert records[0].completeness == answer["completeness"]
    assert [w.model_dump() for w in records[0].warnings] == answer["warnings"]
    # an "Unknown" is blank too: the same answer
    assert predict(functions, {**typical, top: "Unknown"})["warnings"] == answer["warnings"]


def test_an_out_of_range_year_and_an_unseen_category_are_warned_and_still_answered(
    functions, real_bundle, typical, capsys
):
    spec = {f.name: f for f in real_bundle.spec.features}
    first_year = int(spec["event_year"].lo)
    answer = predict(functions, {**typical, "event_date": f"{first_year - 5}-06-01"})
    assert answer["prediction_label"] and answer["completeness"] == 1.0
    assert answer["warnings"] == [
        {
            "code": "out_of_training_range",
            "field": "event_date",
            "detail": f"event_date year {first_year - 5} is below the training range "
            f"{first_year} to {int(spec['event_year'].hi)}",
        }
    ]
    # an unknown maker is scored as `other`: the model still reads it, no warning
    answer = predict(functions, {**typical, "make": "Zlin Aviation"})
    assert answer["completeness"] == 1.0 and answer["warnings"] == []
    # a category of the export's closed set that the training rows never had
    closed = [
        (name, value)
        for name, values in CATEGORIES.items()
        if name in spec
        for value in values
        if value not in spec[name].codes
    ]
    name, value = closed[0]  # the real data has no Geared Turbofan, Hybrid Rocket, ASHO...
    answer = predict(functions, {**typical, name: value})
    assert [(w["code"], w["field"]) for w in answer["warnings"]] == [("unseen_category", name)]
    assert answer["completeness"] == pytest.approx(1 - real_bundle.inputs.weights[name], abs=1e-4)
    records, _, _ = parse_records(capsys.readouterr().out.splitlines())
    assert [len(r.warnings or []) for r in records] == [1, 0, 1]


def test_explain_carries_them_too(functions, real_bundle, typical, capsys):
    top = real_bundle.inputs.important[0]
    status, body, _ = call(
        functions["explain"], rest_event("POST", "/predict/explain", {**typical, top: None})
    )
    assert status == 200
    assert body["completeness"] < 1 and body["warnings"][0]["field"] == top


def test_batch_answers_and_records_carry_them(functions, real_bundle, typical, capsys):
    top = real_bundle.inputs.important[0]
    reports = [typical, {**typical, "ev_id": "B2", top: None}, {"ev_id": "B3"}]
    status, body, _ = call(
        functions["predict"], rest_event("POST", "/predict/batch", {"reports": reports})
    )
    records, _, _ = parse_records(capsys.readouterr().out.splitlines())
    assert status == 200
    got = [(p["completeness"], p["warnings"]) for p in body["predictions"]]
    assert got[0] == (1.0, [])
    assert got[1][0] < 1 and got[1][1][0]["field"] == top
    assert got[2][0] == 0.0
    assert {w["field"] for w in got[2][1]} == set(real_bundle.inputs.important)
    assert [(r.completeness, [w.model_dump() for w in r.warnings or []]) for r in records] == got


def test_the_shadow_record_has_the_shadow_models_own_checks(
    real_bundle_dir, synthetic_bundle_dir, typical
):
    from avsev.serving.bundle import load_bundle

    served, shadow = load_bundle(real_bundle_dir), load_bundle(synthetic_bundle_dir)
    service = PredictionService(served, shadow)
    top = served.inputs.important[0]
    reports = [
        AccidentReport.model_validate(r)
        for r in (typical, {**typical, top: None}, {"ev_id": "X", "aircraft_age": 0})
    ]
    ids = ["a", "b", "c"]
    alone = [service.predict([r], [i], "1").lines for r, i in zip(reports, ids, strict=True)]
    for lines in (
        service.predict(reports, ids, "1").lines,
        [s[0] for s in alone] + [s[1] for s in alone],  # one at a time: served, then shadow
    ):
        records, _, skipped = parse_records(lines)
        assert skipped == 0 and len(records) == 6
        fields = [r.fields() for r in reports]
        for model, got in ((served, records[:3]), (shadow, records[3:])):
            c, w = model.inputs.assess_rows(fields, [model.spec.encode(f) for f in fields])
            assert [r.completeness for r in got] == c
            assert [[x.model_dump() for x in r.warnings or []] for r in got] == w
        assert [r.completeness for r in records[:3]] != [r.completeness for r in records[3:]]


def test_openapi_documents_completeness_and_warnings(openapi_document):
    schemas = openapi_document["components"]["schemas"]
    prediction = schemas["Prediction"]
    assert {"completeness", "warnings"} <= set(prediction["required"])
    assert prediction["properties"]["completeness"]["maximum"] == 1
    warning = schemas["InputWarning"]
    assert set(warning["properties"]) == {"code", "field", "detail"}
    assert set(warning["properties"]["code"]["enum"]) == {
        "missing_important_field",
        "out_of_training_range",
        "unseen_category",
    }
    explanation = schemas["Explanation"]
    assert {"completeness", "warnings"} <= set(explanation["required"])


# ---- the record tables: older records without the columns ---------------------------------

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def _record(i: int, **extra) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        ev_id=f"E{i}",
        timestamp=T0,
        model_name="m",
        model_version="1.0.0",
        function_version="1",
        features={"aircraft_age": 3},
        probabilities={"Fatal": 0.1, "Serious": 0.1, "Minor": 0.1, "None": 0.7},
        predicted="None",
        latency_ms=0.1,
        **extra,
    )


def _old_line(record: PredictionRecord) -> str:
    doc = json.loads(record.model_dump_json())
    del doc["completeness"], doc["warnings"]
    return json.dumps(doc)


def test_an_old_record_line_parses_without_them():
    old = _old_line(_record(0))
    assert "completeness" not in old
    (record,), _, skipped = parse_records([old])
    assert skipped == 0 and record.completeness is None and record.warnings is None


def test_old_objects_without_the_columns_are_still_queried(tmp_path):
    day = T0.date()
    folder = tmp_path / PREDICTIONS / partition(day)
    folder.mkdir(parents=True)
    # an object written before the columns existed: the old table schema, no such columns
    old_columns = {
        c: t
        for c, t in duckdb_columns(PREDICTIONS).items()
        if c not in ("completeness", "warnings")
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write("\n".join(_old_line(_record(i)) for i in range(3)) + "\n")
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in old_columns.items()) + "}"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_json('{f.name}', columns = {spec})) "
        f"TO '{folder / 'old.parquet'}' (FORMAT parquet)"
    )
    Path(f.name).unlink()

    # only old objects: the columns read as NULL, the rollups as before
    engine = DuckDBEngine.over_folder(tmp_path)
    rows = engine.query("SELECT request_id, completeness, warnings FROM predictions")
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1", "r2"]
    assert all(r["completeness"] is None and r["warnings"] is None for r in rows)
    assert sum(r.n for r in rollups.served_rollup(engine, day).rows) == 3

    # old and new objects side by side
    warning = {"code": "missing_important_field", "field": "make", "detail": "d"}
    new = [
        _record(3, completeness=0.75, warnings=[warning]),
        _record(4, completeness=1.0, warnings=[]),
    ]
    write_records_parquet([r.model_dump_json() for r in new], PREDICTIONS, folder / "new.parquet")
    engine = DuckDBEngine.over_folder(tmp_path)
    rows = {
        r["request_id"]: r
        for r in engine.query(
            "SELECT request_id, completeness, cardinality(warnings) AS w, "
            "warnings[1].field AS first FROM predictions"
        )
    }
    assert rows["r0"]["completeness"] is None and rows["r0"]["w"] is None
    assert rows["r3"]["completeness"] == 0.75 and rows["r3"]["w"] == 1
    assert rows["r3"]["first"] == "make" and rows["r4"]["w"] == 0
    assert sum(r.n for r in rollups.served_rollup(engine, day).rows) == 5
