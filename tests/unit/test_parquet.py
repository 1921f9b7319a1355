"""Parquet through fastparquet's own API: round trips, appends, and no warning to wonder about."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
from avsev.parquet import read_parquet, write_parquet


def test_round_trip(tmp_path):
    frame = pd.DataFrame(
        {"ev_id": ["A1", "B2", None], "prob_fatal": [0.1, 0.25, np.nan], "rows": [1, 2, 3]}
    )
    write_parquet(frame, tmp_path / "x.parquet")
    back = read_parquet(tmp_path / "x.parquet")
    assert back["ev_id"].tolist()[:2] == ["A1", "B2"] and pd.isna(back["ev_id"][2])
    assert back["rows"].tolist() == [1, 2, 3] and np.isnan(back["prob_fatal"][2])


def test_no_warnings_at_all():
    code = (
        "import pandas as pd, tempfile, pathlib\n"
        "from avsev.parquet import read_parquet, write_parquet\n"
        "p = pathlib.Path(tempfile.mkdtemp()) / 'x.parquet'\n"
        "write_parquet(pd.DataFrame({'a': ['x', 'y'], 'b': [1.0, 2.0]}), p)\n"
        "assert len(read_parquet(p)) == 2\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", code], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
