"""The real export with adversarial cells: what a careless or hostile file holds."""

from __future__ import annotations

import io
import random

import pandas as pd
from avsev.data import default_data_path, read_bytes

ODD_CELLS = [
    *["", " ", "\t", " unknown ", "UNK", "N/A", "na", "None", "NONE", "none given"],
    *["1_000", "1,000", "inf", "-inf", "nan", "NaN", "1e3", "0x10", "  12 ", "abc", "+5", "5."],
    *[".5", "1e-320", "-0", "12.5", "-5", "99999999", "0", "2.0", "8", "8.0", "100", "101"],
    *["150", "179", "180", "430", "431", "500", "620", "621", "45.5", "-91", "181", "-180"],
    *["50000", "50000.1", "499.9", "501", "3810000N", "1234567W", "12345678S"],
    *["Turbo-prop", "turboprop", "Turbo  Prop", "VMC ", "imc", "Go Around", "go_around"],
    *["Air Race show", "  PERSONAL  ", "Yes", "y", "TRUE", "maybe", "é", "Société"],
    *["x" * 64, "x" * 65, "Cessna" * 20],
    *["13/45/2020", "2/29/2021", "2/29/2020", "2030-01-01", "1/1/99", "1/1/05", "12/31/9999"],
    *["0/0/00", "1/1/2019", "2019-12-31", "2019-13-01", "11/26/26"],
]

EXTRA_FIELDS = ("pilot_tot_time", "pilot_90_days", "aircraft_age", "phase_code", "occurrence_code")
"""Report fields the public export lacks (this project's own column style has them)."""


def real_export() -> pd.DataFrame:
    text = read_bytes(default_data_path()).decode("latin-1")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def adversarial_export(*, seed: int, share: float, rows: int | None = None) -> pd.DataFrame:
    """The real export (first `rows`), the report fields it lacks added with plausible
    values, then `share` of all cells replaced by odd ones or by another row's value."""
    rng = random.Random(seed)
    frame = real_export()
    frame = frame.iloc[:rows].copy() if rows else frame.copy()
    n = len(frame)
    frame["pilot_tot_time"] = [str(rng.choice([0, 12, 150, 800, 4000, 20000])) for _ in range(n)]
    frame["pilot_90_days"] = [str(rng.choice([0, 5, 40, 150, 300])) for _ in range(n)]
    frame["aircraft_age"] = [str(rng.randrange(0, 60)) for _ in range(n)]
    frame["phase_code"] = [str(rng.choice([500, 520, 570, 600])) for _ in range(n)]
    frame["occurrence_code"] = [str(rng.choice([100, 220, 250, 300, 350, 400])) for _ in range(n)]
    for column in frame.columns:
        cells = frame[column].tolist()
        for i in range(n):
            if rng.random() < share:
                cells[i] = rng.choice([*ODD_CELLS, cells[rng.randrange(n)]])
        frame[column] = cells
    return frame
