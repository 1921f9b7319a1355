"""`make demo` end to end (fewer requests): the story runs, decides what its data must decide,
and leaves its files; the A/B report it made from SQL rollups equals the old in-memory report
on the same records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from avsev.constants import PARITY_CHECK_REQUESTS
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
    from avsev_tools.local.demo import run

    out = tmp_path / "demo"
    result = run(out, requests=900)
    told = capsys.readouterr().out
    for step in (
        "1. Data",
        "3. Local stack",
        "5. Autopilot: a better candidate",
        "6. Autopilot: a worse candidate",
        "7. Drift check",
        "8. Retraining loop",
        "9. Audit",
        "10. Done",
    ):
        assert step in told
    for name in (
        "ab_report.json",
        "ab_report.md",
        "ab_report_rollback.json",
        "drift_report.json",
        "drift_report.md",
        "rollout_audit.jsonl",
        "retraining_audit.jsonl",
        "confusion_matrix.png",
        "ab_confidence_intervals.png",
        "drift_per_feature.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "drift_report.json").read_text())["rows"] > 0

    # The plain retrain's probabilities are better than the class-weighted model's in
    # production (log loss, the decision metric): the autopilot walks it 10% → 50% → 100%.
    # The shallower class-weighted candidate is worse: rolled back at its first step.
    assert result["autopilot"]["1.1.0"]["state"] == "promoted"
    assert result["ab"].decision == "promote" and "log loss" in result["ab"].reason
    assert result["autopilot"]["1.2.0"]["state"] == "rolled_back"
    assert result["ab_rollback"].decision == "rollback"
    assert "worse on log loss" in result["ab_rollback"].reason
    # Newer reports with fields left blank: the retraining loop retrains on the file and the
    # outcomes and judges the candidate against the serving model 1.1.0 on the newest labelled
    # traffic (held out, never trained on). More of the new reports are labelled than it holds
    # out, so it learns them: on the held-out ones its log loss is lower than 1.1.0's beyond
    # the interval, its probabilities are as well calibrated, and neither the class prior nor
    # a logistic regression fitted on the same rows is shown better. Every gate passes, the
    # registry approves it by policy, the loop deploys it, and the autopilot canaries it
    # 10% → 50% → 100% on the A/B evidence of each step, with nobody acting.
    retrained = result["retrained"]
    assert retrained["version"] == "1.3.0" and retrained["decision"] == "ended"
    gates = {g["name"]: g for g in retrained["gates"]}
    assert gates["not_worse_than_champion"]["passed"]
    assert gates["not_worse_than_champion"]["details"]["high"] < 0  # better, beyond its interval
    assert gates["calibration"]["passed"] and gates["linear_not_better"]["passed"]
    assert [g["name"] for g in retrained["gates"] if not g["passed"]] == []
    assert retrained["status"] == "approved"
    assert "gate linear_not_better: pass" in told and "registry: approved" in told
    assert retrained["autopilot"]["state"] == "promoted"
    assert result["served"]["1.3.0"] > 0
    # One clock: the step's evidence is the traffic served during that step (the blank-heavy
    # reports, of the two versions), not the complete reports served before it in the same hour
    last = retrained["ab"]
    assert set(last.versions) == {"1.1.0", "1.3.0"}
    loop = [json.loads(line) for line in (out / "retraining_audit.jsonl").read_text().splitlines()]
    assert [e["action"] for e in loop] == ["retrain-start", "retrain-end", "candidate-deployed"]
    assert {t["kind"] for t in loop[0]["triggers"]} >= {"age"}
    assert loop[1]["detail"]["version"] == "1.3.0"
    assert loop[1]["detail"]["decision"]["status"] == "approved"

    actions = [e["action"] for e in result["audit"]]
    # each candidate arrived by a deploy: the stack handed it to the controller (parity
    # check passed), which started it at 10%
    promoted = ["handover", "start", "autopilot-start", "step", "promote", "autopilot-end"]
    rolled_back = ["handover", "start", "autopilot-start", "rollback", "autopilot-end"]
    assert actions == promoted + rolled_back + promoted  # 1.1.0, 1.2.0, then the retrained 1.3.0
    audit = [json.loads(line) for line in (out / "rollout_audit.jsonl").read_text().splitlines()]
    assert [e["action"] for e in audit] == actions
    assert audit[3]["after"] == {"2": 0.5, "1": 0.5} or audit[3]["after"] == {"1": 0.5, "2": 0.5}
    # The stack stamps a handover and its 10% start on its one clock, which each tick moves
    # on 61 minutes at 10%: the worse candidate's step held exactly its ticks before the
    # rollback.
    start, rollback = (dt.datetime.fromisoformat(audit[i]["at"]) for i in (7, 9))
    section = told[told.index("== 6. Autopilot") : told.index("== 7. Drift")]
    ticks = sum(line.startswith("   +") for line in section.splitlines())
    assert abs(rollback - start - ticks * dt.timedelta(minutes=61)) < dt.timedelta(minutes=1)
    handed = [e["model_version"] for e in audit if e["action"] == "handover"]
    assert handed == ["1.1.0", "1.2.0", "1.3.0"]

    # The same records, read back from the Parquet objects, through the old in-memory code:
    # the last A/B report (1.1.0 against 1.2.0) was made after the last request
    predictions, outcomes = records_in(out / "records")
    assert predictions and outcomes
    # the deploys' parity checks are in the records, and counted by neither path
    parity = [p for p in predictions if p.request_id.startswith(PARITY_CHECK_REQUESTS)]
    assert {p.model_version for p in parity} == {"1.0.0", "1.1.0", "1.2.0"}  # three deploys
    ab = result["ab_rollback"].dump()  # as its JSON, against the in-memory report's dict
    # its evidence: the predictions from the hour the rollout's step began in (the rollups
    # count by the prediction's hour, on the stack's clock)
    begins = dt.datetime.fromisoformat(ab["window"]["from"])
    predictions = [p for p in predictions if p not in parity and p.timestamp >= begins]
    old = ab_inmemory.ab_report(predictions, outcomes, champion="1.1.0", candidate="1.2.0")
    for version in ("1.1.0", "1.2.0"):
        o, n = old["versions"][version], ab["versions"][version]
        assert (n["requests"], n["labelled"]) == (o["requests"], o["labelled"])
        assert n["accuracy"] == pytest.approx(o["accuracy"], abs=1e-9)
        assert n["weighted_f1"] == pytest.approx(o["weighted_f1"], abs=1e-9)
    assert ab["comparison"]["accuracy_delta"] == pytest.approx(
        old["comparison"]["accuracy_delta"], abs=1e-9
    )
