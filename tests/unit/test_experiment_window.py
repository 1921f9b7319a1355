"""The A/B evidence is the experiment's: from the hour the rollout's current step began, every
labelled prediction since, however long ago; never a sliding window that drops old rows or
mixes in rows from before the step (docs/statistics.md)."""

from __future__ import annotations

import datetime as dt

from avsev.monitoring.jobs import ab_report_of, experiment_start
from avsev.monitoring.rollup_types import LabelsRollup, ServedRollup
from avsev.rollout.aliases import step_began

STEP = dt.datetime(2026, 11, 10, 9, 30, tzinfo=dt.UTC)


def docs(day: dt.date, hour: int | None, n: int) -> tuple[ServedRollup, LabelsRollup]:
    """One day's served and labels rollups: `n` labelled rows of each version at `hour`."""
    served, labels = [], []
    for version in ("1.0.0", "1.1.0"):
        row = {"model_version": version, "shadow": False, "predicted": "None", "latency_bin": 0}
        served.append({**row, "n": n, **({} if hour is None else {"hour": hour})})
        labels.append(
            {
                "kind": "served",
                "version": version,
                "predicted": "None",
                "actual": "None",
                "n": n,
                **({} if hour is None else {"hour": hour}),
            }
        )
    return (
        ServedRollup.from_doc({"rows": served, "day": day.isoformat()}),
        LabelsRollup.from_doc({"rows": labels, "day": day.isoformat()}),
    )


def labelled(since: dt.datetime | None, *parts: tuple[ServedRollup, LabelsRollup]) -> int:
    report = ab_report_of([s for s, _ in parts], [l_ for _, l_ in parts], since=since)
    return report.versions["1.1.0"].labelled


def test_rows_count_from_the_hour_the_step_began():
    day = STEP.date()
    before = docs(day, 8, 10)  # the hour before the step
    same = docs(day, 9, 20)  # the step's hour: kept (rollups count by the hour)
    after = docs(day, 10, 40)
    earlier_day = docs(day - dt.timedelta(days=1), 15, 80)
    assert experiment_start(STEP) == dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC)
    assert labelled(STEP, before, same, after, earlier_day) == 60
    assert labelled(None, before, same, after, earlier_day) == 150  # no rollout: the window


def test_old_evidence_is_never_dropped_and_hourless_rollups_count_from_the_day():
    weeks_later = [docs(STEP.date() + dt.timedelta(days=d), 12, 5) for d in range(1, 15)]
    assert labelled(STEP, *weeks_later) == 14 * 5
    hourless_same_day = docs(STEP.date(), None, 7)
    hourless_day_before = docs(STEP.date() - dt.timedelta(days=1), None, 9)
    assert labelled(STEP, hourless_same_day, hourless_day_before) == 7


def test_the_step_began_at_the_last_start_or_step_of_the_version_by_the_writers_clock():
    real = dt.datetime(2026, 11, 10, 9, 30, tzinfo=dt.UTC)
    entries = [
        {"action": "start", "after": {"4": 0.1}, "at": "2026-11-09T00:00:00+00:00", "seq": 1},
        {
            "action": "step",
            "after": {"4": 0.5},
            "at": "2026-12-25T00:00:00+00:00",
            "seq": int(real.timestamp() * 1e9),
        },  # `at` may be a simulated clock
        {"action": "step", "after": {"5": 0.1}, "at": "2026-12-26T00:00:00+00:00", "seq": 3},
    ]
    assert step_began(entries, "4") == real
    assert step_began(entries, "6") is None
