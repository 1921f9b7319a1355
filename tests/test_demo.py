"""`make demo` end to end (fewer requests): the story runs, decides what its data must decide,
and leaves its files; the A/B report it made from SQL rollups equals the old in-memory report
on the same records."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from avsev.serving.records import OutcomeRecord, PredictionRecord
from avsev.serving.schema import SEVERITIES
from legacy import ab_inmemory


def records_in(folder: Path) -> tuple[list[PredictionRecord], list[OutcomeRecord]]:
    """The records of a folder of Parquet objects (the delivery streams' output) as models."""
    con = duckdb.connect()
    preds = [
        PredictionRecord(
            **{k: v for k, v in row.items() if k != "probabilities"},
            probabilities={s: row["probabilities"][s.lower()] for s in SEVERITIES},
        )
        for row in _rows(con, folder / "predictions")
    ]
    outs = [OutcomeRecord(**row) for row in _rows(con, folder / "outcomes")]
    return preds, outs


def _rows(con, folder: Path) -> list[dict]:
    cursor = con.execute(f"SELECT * FROM read_parquet('{folder}/*/*.parquet')")
    names = [d[0] for d in cursor.description]
    return [
        {k: v for k, v in zip(names, r, strict=True) if v is not None} for r in cursor.fetchall()
    ]


def test_demo_runs_the_whole_story(tmp_path, capsys):
    from avsev.local.demo import run

    out = tmp_path / "demo"
    result = run(out, requests=900)
    told = capsys.readouterr().out
    for step in (
        "1. Data",
        "3. Local stack",
        "5. Canary",
        "7. A/B report",
        "8. Drift check",
        "9. Rollout",
        "10. Done",
    ):
        assert step in told
    for name in (
        "ab_report.json",
        "ab_report.md",
        "drift_report.json",
        "drift_report.md",
        "confusion_matrix.png",
        "ab_confidence_intervals.png",
        "drift_per_feature.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "drift_report.json").read_text())["rows"] > 0
    assert "alias live now" in told

    # The class-weighted retrain trades accuracy for rare-class recall: on the demo's real
    # rows it is significantly less accurate, and accuracy decides.
    ab = result["ab"]
    assert ab["decision"] == "rollback" and "less accurate" in ab["reason"]
    assert "rolled back to version 1" in told

    # The same records, read back from the Parquet objects, through the old in-memory code
    predictions, outcomes = records_in(out / "records")
    assert predictions and outcomes
    old = ab_inmemory.ab_report(predictions, outcomes, champion="1.0.0", candidate="1.1.0")
    assert old["decision"] == ab["decision"]
    for version, o in old["versions"].items():
        n = ab["versions"][version]
        assert (n["requests"], n["labelled"]) == (o["requests"], o["labelled"])
        assert n["accuracy"] == pytest.approx(o["accuracy"], abs=1e-9)
        assert n["weighted_f1"] == pytest.approx(o["weighted_f1"], abs=1e-9)
    assert ab["comparison"]["always_valid_p"] == pytest.approx(
        old["comparison"]["always_valid_p"], abs=1e-9
    )
