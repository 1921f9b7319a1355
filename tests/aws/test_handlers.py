"""The API functions driven by real REST proxy events, with a real compiled bundle."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xgboost as xgb
from avsev.serving.records import PredictionRecord, parse_records
from avsev.serving.schema import AccidentReport
from avsev.serving.settings import Settings, SettingsError
from avsev_tools.pipeline.train import matrix
from lambda_support import call, load_function, rest_event

REPORT = {
    "ev_id": "ERA19FA001",
    "event_date": "2019-03-02",
    "dec_latitude": 35.2,
    "dec_longitude": -80.9,
    "number_of_engines": 1,
    "engine_type": "reciprocating",
    "purpose_of_flight": "Personal",
    "broad_phase_of_flight": "Maneuvering",
    "weather_condition": "IMC",
    "make": "Cessna",
}


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_answers_records_and_counts(functions, real_bundle, capsys):
    status, body, headers = call(functions["predict"], rest_event("POST", "/predict", REPORT))
    out = capsys.readouterr().out
    assert status == 200
    assert headers["X-Model-Version"] == body["model_version"] == "1.0.0"
    assert body["ev_id"] == REPORT["ev_id"]
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert body["prediction_label"] == max(body["probabilities"], key=body["probabilities"].get)
    # the same as the runtime gives for this report
    fields = AccidentReport.model_validate(REPORT).fields()
    expected = real_bundle.model.predict(real_bundle.spec.encode(fields))
    assert list(body["probabilities"].values()) == pytest.approx(expected, abs=1e-6)
    # one prediction record, with the served version and the validated input
    predictions, outcomes, _ = parse_records(out.splitlines())
    assert len(predictions) == 1 and not outcomes
    rec = predictions[0]
    assert rec.request_id == body["request_id"] and rec.function_version == "7"
    assert rec.model_version == "1.0.0" and rec.shadow is False
    assert rec.features["weather_condition"] == "IMC" and rec.features["make"] == "cessna"
    assert rec.predicted == body["prediction_label"]
    # no EMF document: the metrics (predictions by version and class, latency) are metric
    # filters on this record line (avsev.monitoring.record_metrics; tests/aws/test_record_metrics.py)
    assert [d for d in lines(out) if "_aws" in d] == []
    assert rec.latency_ms > 0


def test_batch_scores_every_report_in_one_call(functions, real_data, real_bundle, capsys):
    reports = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in real_data.reports()[:250]
    ]
    status, body, headers = call(
        functions["predict"], rest_event("POST", "/predict/batch", {"reports": reports})
    )
    predictions, _, _ = parse_records(capsys.readouterr().out.splitlines())
    assert status == 200 and body["count"] == 250 and headers["X-Model-Version"] == "1.0.0"
    assert [p["ev_id"] for p in body["predictions"]] == [r["ev_id"] for r in reports]
    assert len({p["request_id"] for p in body["predictions"]}) == 250
    expected = real_bundle.model.predict_many(
        matrix(real_bundle.spec, real_data.reports()[:250]).tolist()
    )
    got = [list(p["probabilities"].values()) for p in body["predictions"]]
    assert np.abs(np.array(got) - np.array(expected)).max() < 1e-6
    assert len(predictions) == 250


@pytest.mark.parametrize(
    "reports, field, text",
    [
        ([], "reports", "at least 1"),
        ([{"ev_id": f"X{i}"} for i in range(1001)], "reports", "at most 1000"),
    ],
)
def test_batch_size_limits_are_named(functions, reports, field, text, capsys):
    status, body, _ = call(
        functions["predict"], rest_event("POST", "/predict/batch", {"reports": reports})
    )
    assert status == 422
    detail = body["error"]["details"][0]
    assert detail["field"] == field and text in detail["problem"] and "1000" in detail["allowed"]
    assert parse_records(capsys.readouterr().out.splitlines())[0] == []


def test_batch_with_one_bad_row_is_rejected_whole_naming_the_row(functions, capsys):
    reports = [
        {"ev_id": "A"},
        {"ev_id": "B", "pilot_tot_time": 10, "pilot_90_days": 20},
        {"ev_id": "C"},
    ]
    status, body, _ = call(
        functions["predict"], rest_event("POST", "/predict/batch", {"reports": reports})
    )
    assert status == 422
    assert body["error"]["details"] == [
        {
            "field": "reports[1].pilot_90_days",
            "row": 1,
            "problem": "20.0 hours exceeds pilot_tot_time (10.0)",
            "allowed": "a number from 0 to 500 (hours), not above pilot_tot_time",
        }
    ]
    assert "bad row 1" in body["error"]["message"]
    assert parse_records(capsys.readouterr().out.splitlines())[0] == []  # nothing scored


def test_model_and_health(functions, capsys):
    status, body, headers = call(functions["predict"], rest_event("GET", "/model"))
    assert status == 200 and body["version"] == "1.0.0" and headers["X-Model-Version"] == "1.0.0"
    assert body["classes"] == ["Fatal", "Serious", "Minor", "None"]
    assert [f["name"] for f in body["features"]][:2] == ["event_year", "event_month"]
    assert body["metrics"]["weighted_f1"] > body["metrics"]["baseline_majority"]["weighted_f1"]
    assert call(functions["predict"], rest_event("GET", "/health"))[:2] == (
        200,
        {"status": "ok", "model_version": "1.0.0"},
    )


def test_explain_gives_exact_shap_factors(functions, real_bundle, real_model_dir, capsys):
    status, body, headers = call(
        functions["explain"], rest_event("POST", "/predict/explain", {**REPORT, "top_k": 3})
    )
    assert status == 200 and headers["X-Model-Version"] == "1.0.0"
    factors = body["top_contributing_factors"]
    assert len(factors) == 3
    assert [abs(f["impact"]) for f in factors] == sorted(
        (abs(f["impact"]) for f in factors), reverse=True
    )
    for f in factors:
        assert f["direction"] == ("raises" if f["impact"] > 0 else "lowers")
    # against xgboost: same contributions for the predicted class, base value and margin
    fields = AccidentReport.model_validate(REPORT).fields()
    row = matrix(real_bundle.spec, [fields])
    booster = xgb.Booster()
    booster.load_model(real_model_dir / "model.json")
    cls = real_bundle.classes.index(body["prediction_label"])
    contribs = booster.predict(
        xgb.DMatrix(row, feature_names=real_bundle.spec.names), pred_contribs=True
    )[0][cls]
    margin = booster.predict(
        xgb.DMatrix(row, feature_names=real_bundle.spec.names), output_margin=True
    )[0][cls]
    by_name = dict(zip(real_bundle.spec.names, contribs[:-1], strict=True))
    for f in factors:
        assert f["impact"] == pytest.approx(by_name[f["feature"]], abs=1e-4)
    assert body["base_value"] == pytest.approx(contribs[-1], abs=1e-4)
    assert body["margin"] == pytest.approx(margin, abs=1e-4)
    # with every factor asked for, values read as the client sent them
    _, full, _ = call(
        functions["explain"], rest_event("POST", "/predict/explain", {**REPORT, "top_k": 30})
    )
    values = {f["feature"]: f["value"] for f in full["top_contributing_factors"]}
    assert (
        values.get("event_year", 2019) == 2019 and values.get("weather_condition", "IMC") == "IMC"
    )
    assert len(values) >= 5
    capsys.readouterr()
    status, _, _ = call(functions["explain"], rest_event("POST", "/predict/explain", REPORT))
    assert len(parse_records(capsys.readouterr().out.splitlines())[0]) == 1


def test_outcomes_one_or_many(functions, capsys):
    one = {"ev_id": "ERA19FA001", "actual_severity": "Fatal", "observed_at": "2019-03-10T12:00:00Z"}
    status, body, _ = call(functions["outcomes"], rest_event("POST", "/outcomes", one))
    assert status == 200 and body["accepted"] == 1
    many = {"outcomes": [one, {"ev_id": "B2", "actual_severity": "None"}]}
    status, body, _ = call(functions["outcomes"], rest_event("POST", "/outcomes", many))
    assert status == 200 and body["accepted"] == 2
    _, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    assert [(o.ev_id, o.actual_severity) for o in outcomes] == [
        ("ERA19FA001", "Fatal"),
        ("ERA19FA001", "Fatal"),
        ("B2", "None"),
    ]
    status, body, _ = call(
        functions["outcomes"],
        rest_event("POST", "/outcomes", {"ev_id": "X", "actual_severity": "Dead"}),
    )
    assert status == 422 and body["error"]["details"][0]["field"] == "outcomes[0].actual_severity"
    assert "Fatal, Serious, Minor, None" in body["error"]["details"][0]["allowed"]


UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
"""The one written form of a record's timestamps (one Firehose's OpenX JSON SerDe reads)."""


@pytest.mark.parametrize(
    "sent, stored",
    [
        ("2024-01-01T03:30:00+02:00", "2024-01-01T01:30:00.000000Z"),  # offset: converted
        ("2024-01-01T03:30:00-05:00", "2024-01-01T08:30:00.000000Z"),
        ("2024-01-01T03:30:00", "2024-01-01T03:30:00.000000Z"),  # naive: taken as UTC
        ("2024-01-01", "2024-01-01T00:00:00.000000Z"),  # a date alone: midnight UTC
        ("2024-01-01T03:30:00.123456789Z", "2024-01-01T03:30:00.123456Z"),
    ],
)
def test_outcome_times_are_recorded_in_utc_with_z(functions, capsys, sent, stored):
    one = {"ev_id": "ERA19FA001", "actual_severity": "Fatal", "observed_at": sent}
    status, body, _ = call(functions["outcomes"], rest_event("POST", "/outcomes", one))
    assert status == 200, body
    [line] = [d for d in lines(capsys.readouterr().out) if d.get("record_type") == "outcome"]
    assert line["observed_at"] == stored
    assert UTC_Z.match(line["timestamp"]), line["timestamp"]
    assert line["seq"] == 0


def test_outcomes_of_one_body_carry_their_position(functions, capsys):
    body = {
        "outcomes": [
            {"ev_id": "A1", "actual_severity": "Fatal"},
            {"ev_id": "A1", "actual_severity": "None"},
            {"ev_id": "B2", "actual_severity": "Minor"},
        ]
    }
    status, answer, _ = call(functions["outcomes"], rest_event("POST", "/outcomes", body))
    assert status == 200, answer
    _, outcomes, _ = parse_records(capsys.readouterr().out.splitlines())
    assert [(o.ev_id, o.actual_severity, o.seq) for o in outcomes] == [
        ("A1", "Fatal", 0),
        ("A1", "None", 1),
        ("B2", "Minor", 2),
    ]
    assert len({(o.timestamp, o.request_id) for o in outcomes}) == 1


def test_shadow_is_scored_and_logged_never_returned(
    real_bundle_dir, synthetic_bundle_dir, monkeypatch, capsys
):
    module = load_function(
        "predict",
        {
            "MODEL_BUNDLE_PATH": str(real_bundle_dir),
            "SHADOW_BUNDLE_PATH": str(synthetic_bundle_dir),
        },
        monkeypatch,
    )
    status, body, _ = call(module, rest_event("POST", "/predict", REPORT))
    predictions, _, _ = parse_records(capsys.readouterr().out.splitlines())
    assert status == 200 and body["model_version"] == "1.0.0"
    served = [p for p in predictions if not p.shadow]
    shadow = [p for p in predictions if p.shadow]
    assert len(served) == len(shadow) == 1
    assert shadow[0].model_name == "avsev-synthetic" and shadow[0].model_version == "0.1.0"
    assert shadow[0].request_id == served[0].request_id == body["request_id"]
    assert list(body["probabilities"].values()) == pytest.approx(
        list(served[0].probabilities.values())
    )


def test_settings_fail_with_the_variable_named(tmp_path):
    with pytest.raises(SettingsError, match="MODEL_BUNDLE_PATH: Field required"):
        Settings.from_env({})
    with pytest.raises(SettingsError, match=r"MODEL_BUNDLE_PATH: .*is not a directory"):
        Settings.from_env({"MODEL_BUNDLE_PATH": str(tmp_path / "nope")})
    with pytest.raises(SettingsError, match="AVSEV_VERIFY_BUNDLE"):
        Settings.from_env({"MODEL_BUNDLE_PATH": str(tmp_path), "AVSEV_VERIFY_BUNDLE": "maybe"})
    assert Settings.from_env({"MODEL_BUNDLE_PATH": str(tmp_path)}).shadow_bundle_path is None


def test_batch_answer_and_records_equal_the_per_row_model_path(
    real_data, real_bundle_dir, synthetic_bundle_dir
):
    """The batch route builds its answer and records without a pydantic model per row: the
    body must be BatchPrediction's and every record line PredictionRecord's, byte for byte."""
    from avsev.serving.bundle import load_bundle
    from avsev.serving.records import to_line
    from avsev.serving.schema import BatchPrediction
    from avsev.serving.service import PredictionService
    from record_cases import case_reports

    # Given real reports and edge cases (out of range, an unseen category, nothing but an id,
    # free text that looks like a record boundary)
    reports = case_reports(real_data)
    ids = [f"req-1#{i}" for i in range(len(reports))]
    service = PredictionService(
        load_bundle(real_bundle_dir), shadow=load_bundle(synthetic_bundle_dir)
    )
    # When the batch is scored
    new = service.predict(reports, ids, "7")
    # Then the answer is BatchPrediction's JSON, keys in the same order
    expected = BatchPrediction(
        predictions=new.predictions, model_version="1.0.0", count=len(reports)
    ).model_dump(mode="json")
    got = json.loads(new.body)
    assert got == expected
    assert list(got) == list(expected)
    assert [list(p) for p in got["predictions"]] == [list(p) for p in expected["predictions"]]
    assert [list(p["probabilities"]) for p in got["predictions"]] == [
        list(p["probabilities"]) for p in expected["predictions"]
    ]
    assert new.labels == [p.prediction_label for p in new.predictions]
    # And every record line (served and shadow) is the record model's, byte for byte
    assert len(new.lines) == 2 * len(reports)
    assert new.lines == [to_line(r) for batch in new.records for r in batch.records()]
    for line in new.lines:  # each line is exactly what the record model writes
        assert to_line(PredictionRecord.model_validate_json(line)) == line
    parsed, _, skipped = parse_records(new.lines)
    assert skipped == 0
    assert parsed[-len(reports) - 2].features == reports[-2].fields()
    assert parsed[-len(reports) - 3].features == {}
    # with their completeness and warnings (blank, out-of-range and unseen inputs among them)
    assert parsed[-len(reports) - 3].completeness == 0.0
    assert {w["code"] for p in got["predictions"] for w in p["warnings"]} == {
        "missing_important_field",
        "out_of_training_range",
        "unseen_category",
    }
