"""The names of what one input produces, in one type (no string surgery elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IN_PREFIX = "batch/in/"
OUT_PREFIX = "batch/out/"
TMP_PREFIX = "batch/tmp/"
INCOMING_PREFIX = "incoming/"

OutputKind = str
"""`output`, `rejected` or `summary`."""
KINDS: tuple[OutputKind, ...] = ("output", "rejected", "summary")


@dataclass(frozen=True)
class OutputName:
    """`recent` → `recent.csv` (or `recent.parquet`), `recent.rejected.csv`,
    `recent.summary.json`."""

    stem: str
    parquet: bool = False

    @classmethod
    def for_input(cls, key: str, *, parquet: bool = False) -> OutputName:
        """`batch/in/x/recent.csv` → `recent.csv`; Parquet when asked or when the input is."""
        path = PurePosixPath(key)
        return cls(path.stem, parquet or path.suffix == ".parquet")

    @classmethod
    def of_output(cls, name: str) -> OutputName:
        """The names beside an output file's name (`scores.parquet` → `scores.rejected.csv`)."""
        path = PurePosixPath(name)
        return cls(path.stem, path.suffix == ".parquet")

    @property
    def suffix(self) -> str:
        return "parquet" if self.parquet else "csv"

    def tail(self, kind: OutputKind) -> str:
        """What follows the stem: `csv`, `rejected.csv`, `summary.json`."""
        return {"output": self.suffix, "rejected": "rejected.csv", "summary": "summary.json"}[kind]

    def name(self, kind: OutputKind) -> str:
        return f"{self.stem}.{self.tail(kind)}"

    @property
    def output(self) -> str:
        return self.name("output")

    def beside(self, out: Path, kind: OutputKind) -> Path:
        """The local file of `kind` next to the output file `out`."""
        return out.with_name(self.name(kind))

    def final_keys(self) -> dict[OutputKind, str]:
        """Where the finished outputs are published."""
        return {kind: f"{OUT_PREFIX}{self.name(kind)}" for kind in KINDS}

    def part_key(self, etag: str, part: int, kind: OutputKind) -> str:
        """Where one invocation's part is kept until the last one joins them."""
        return f"{self.staging(etag)}part-{part:05d}.{self.tail(kind)}"

    def staging(self, etag: str) -> str:
        return f"{TMP_PREFIX}{self.stem}/{etag}/" if etag else f"{TMP_PREFIX}{self.stem}/"
