"""`make demo` end to end (fewer requests): the story runs, decides, and leaves its files."""

from __future__ import annotations

import json


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
    assert result["ab"]["decision"] in ("promote", "rollback", "continue", "insufficient_data")
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
