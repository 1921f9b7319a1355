"""`avsev score`: score a file offline (CSV in either NTSB style, or JSON lines) into a
predictions file, with the rejected rows and a summary beside it.

    avsev score --bundle B --data FILE --out predictions.parquet [--chunk-rows N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avsev_tools.commands._shared import Subcommands, add, print_json


def _score_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """`--bundle` a directory, `--data` a file, `--out` a file in an existing directory;
    raises ValueError naming the option otherwise."""
    bundle, data, out = Path(args.bundle), Path(args.data), Path(args.out)
    if not bundle.is_dir():
        problem = "is a file" if bundle.exists() else "does not exist"
        raise ValueError(f"--bundle {bundle}: {problem}; a model bundle directory is expected")
    if data.is_dir():
        raise ValueError(f"--data {data}: is a directory; a CSV or JSON-lines file is expected")
    if not data.is_file():
        raise ValueError(f"--data {data}: does not exist; a CSV or JSON-lines file is expected")
    if out.is_dir():
        raise ValueError(
            f"--out {out}: is a directory; an output .csv or .parquet file is expected"
        )
    if not out.parent.is_dir():
        problem = "is a file" if out.parent.exists() else "does not exist"
        raise ValueError(f"--out {out}: its directory {out.parent} {problem}")
    from avsev.batch import OutputName

    names = OutputName.of_output(out.name)
    written = [out] + [names.beside(out, kind) for kind in ("rejected", "summary")]
    if any(path.resolve() == data.resolve() for path in written):
        raise ValueError(f"--out {out}: would overwrite --data {data}")
    return bundle, data, out


def _positive(text: str) -> int:
    """A count of at least 1 (`--chunk-rows`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number is expected") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def cmd_score(args: argparse.Namespace) -> int:
    import datetime as dt

    from avsev.batch import score_file
    from avsev.serving.bundle import load_bundle

    bundle_dir, data, out = _score_paths(args)
    bundle = load_bundle(bundle_dir, explain=False)
    scored_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summary = score_file(bundle, data, out, scored_at=scored_at, chunk_rows=args.chunk_rows)
    print_json(summary.as_dict())
    return 0


def register(sub: Subcommands) -> None:
    p = add(
        sub,
        "score",
        cmd_score,
        "score a file offline: CSV (either NTSB style) or JSON lines → predictions",
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True)
    p.add_argument(
        "--out", required=True, help="output .csv or .parquet (rejects and summary beside it)"
    )
    p.add_argument("--chunk-rows", type=_positive, default=20_000)
