"""Parquet files for batch scoring, through fastparquet's own API.

pandas deprecates its `engine="fastparquet"` bridge, not fastparquet (maintained by the Dask
project, released 2026.9). pyarrow would be pandas' way, but it does not fit Lambda: the batch
function's layers, unzipped, measured with `infra/build_layers.py` (Python 3.14 wheels;
Lambda's limit, "250 MB", is 262.1 MB of code, layers and model unzipped):

| tabular layer (pandas + ...) | arm64 | x86_64 | batch total with deps + analysis |
|---|---|---|---|
| fastparquet + cramjam + fsspec | 38.4 MB | 35.6 MB | 183 / 179 MB |
| duckdb (writes Parquet too)     | 96.1 MB | 98.9 MB | 241 / 242 MB: fits, 20 MB to spare |
| pyarrow                         | 148.8 MB | 157.2 MB | 293 / 301 MB: does not fit |

(deps 11.5 / 11.9 MB, analysis 133.1 / 131.4 MB; plus the common layer, 0.3 MB, and the
model, 0.7 to 2.2 MB.) fastparquet leaves the most room for growth (numpy, scipy, pandas).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType

import pandas as pd


def _fastparquet() -> ModuleType:
    with warnings.catch_warnings():
        # fastparquet 2026.9 reads pandas' `future.infer_string` option once, at import, to pick
        # its string type; pandas 3 deprecates the option (str is now always inferred) and
        # answers it right, so its note asks nothing of a user.
        warnings.filterwarnings("ignore", message="The 'future.infer_string' option is deprecated")
        import fastparquet
    return fastparquet


def read_parquet(path: str | Path) -> pd.DataFrame:
    fastparquet = _fastparquet()
    with open(path, "rb") as f:  # closed here (fastparquet would leave its own handle open)
        return fastparquet.ParquetFile(f).to_pandas()


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    _fastparquet().write(str(path), frame, write_index=False)
