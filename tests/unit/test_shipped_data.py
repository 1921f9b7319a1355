"""The real NTSB file ships with the repository, compressed, and is read as it is."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from avsev.data import SHIPPED_DATA, DataError, default_data_path, load, read_bytes

README = Path(__file__).resolve().parents[2] / "data" / "README.md"


def test_the_shipped_file_is_the_default_and_matches_its_readme(monkeypatch):
    monkeypatch.delenv("AVSEV_REAL_DATA", raising=False)
    assert default_data_path() == SHIPPED_DATA and SHIPPED_DATA.is_file()
    readme = README.read_text()
    sums = dict(re.findall(r"\| `([^`]+)`[^|]*\| [\d,]+ \| `([0-9a-f]{64})` \|", readme))
    assert (
        hashlib.sha256(read_bytes(SHIPPED_DATA)).hexdigest()
        == sums["ntsb_us_airplane_accidents.csv"]
    )
    assert hashlib.sha256(SHIPPED_DATA.read_bytes()).hexdigest() == sums[SHIPPED_DATA.name]
    assert "public domain" in readme


def test_the_override_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("AVSEV_REAL_DATA", str(tmp_path / "mine.csv"))
    assert default_data_path() == tmp_path / "mine.csv"


def test_compressed_and_plain_read_the_same(real_data, real_data_path):
    plain = load(real_data_path)
    assert real_data_path.suffix == ".csv" and real_data.path.endswith(".csv.xz")
    assert len(real_data.frame) == len(plain.frame) == 18_587
    assert real_data.frame.equals(plain.frame)
    assert real_data.dropped == plain.dropped and real_data.rows_read == plain.rows_read


@pytest.mark.parametrize("suffix", [".xz", ".gz", ".bz2"])
def test_a_damaged_compressed_file_is_a_clear_error(tmp_path, suffix):
    bad = tmp_path / f"export.csv{suffix}"
    bad.write_bytes(b"not compressed at all")
    with pytest.raises(DataError, match=f"not a valid \\{suffix} file"):
        load(bad)
