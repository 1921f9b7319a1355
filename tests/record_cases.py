"""The reports and the fixed clock the record lines are compared with, and the serving code as
it was before scoring had one path and records one writer (tests/data/records/
service_before.py.txt, kept as data): the reference the lines are held to, byte for byte."""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from avsev.serving.schema import AccidentReport

BEFORE = Path(__file__).resolve().parent / "data/records/service_before.py.txt"
STAMP = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def case_reports(real_data: Any) -> list[AccidentReport]:
    """Real reports (missing values, dates, odd make spellings) and edge cases: out of the
    training range with an unseen category, nothing but an id, free text that looks like a
    record boundary, non-ASCII text."""
    rows = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in real_data.reports()[-60:]
    ]
    rows += [
        {"ev_id": "OLD.2", "event_date": "1975-01-01", "engine_type": "Hybrid Rocket"},
        {"ev_id": "ONLY-ID"},
        {"ev_id": "ODD.1", "make": 'Pipér "x"},{"record_type":"prediction', "aircraft_age": 3},
        {"ev_id": "U.1", "make": "Ünïcødé \u2028 ✈ a\\b\nc", "aircraft_age": 0},
    ]
    return [AccidentReport.model_validate(r) for r in rows]


def fixed_clock(monkeypatch: pytest.MonkeyPatch, modules: list[Any]) -> None:
    """Every record stamped STAMP; each perf_counter call 1 ms after the one before."""
    ticks = iter(range(10**7))
    clock = types.SimpleNamespace(perf_counter=lambda: next(ticks) * 1e-3)
    for m in modules:
        if hasattr(m, "now"):
            monkeypatch.setattr(m, "now", lambda: STAMP)
        if hasattr(m, "time"):
            monkeypatch.setattr(m, "time", clock)


def service_before() -> types.ModuleType:
    """The serving module as it was (its own copy: patching it patches nothing else)."""
    loader = importlib.machinery.SourceFileLoader("avsev_service_before", str(BEFORE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # (its dataclasses look their module up)
    loader.exec_module(module)
    return module
