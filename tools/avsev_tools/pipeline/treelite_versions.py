"""Treelite 4.8 reads the model, tl2cgen's own Treelite 4.1.2 writes its C: why that is
exact, and why its note about it is not shown.

No pair of versions agrees. tl2cgen 1.0.0 (the newest; tl2cgen has no later release)
embeds Treelite 4.1.2, and Treelite 4.1.2 cannot read an XGBoost 3 model (its JSON has a
`cats` section and one base score per class, which 4.1's loader rejects); Treelite 4.4 or
newer can. So Treelite 4.8.1 loads the XGBoost JSON and hands tl2cgen a checkpoint, which
tl2cgen's 4.1.2 reads. Treelite checkpoints are compatible within major version 4 (4.1.2
reads every field the model has: trees, thresholds, leaf vectors, per-class base scores,
softmax), and the parity tests hold the result to xgboost (1e-5) and to Treelite 4.8.1's
own predictions (1e-6; tests/unit/test_treelite_versions.py). 4.1.2 still prints to the
process's stderr, from C, that "some functionalities may be unavailable": that note,
and only that note for the same major version, is held back; everything else written to
stderr meanwhile is passed on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

NOTE = re.compile(
    r"^.*originated from a newer Treelite version; some functionalities may be unavailable\.\n"
    r"Currently running Treelite version (\d+)\.\d+\.\d+\n"
    r"The model checkpoint was generated from Treelite version (\d+)\.\d+\.\d+\n?",
    re.MULTILINE,
)


def without_same_major_note(text: str) -> str:
    """`text` less the version-skew note when both versions share their major version."""
    return NOTE.sub(lambda m: "" if m.group(1) == m.group(2) else m.group(0), text)


@contextlib.contextmanager
def quiet_checkpoint_note() -> Iterator[None]:
    """Hold the process's stderr (file descriptor 2, where C code writes) for the block and
    pass it on afterwards without the same-major version note."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = without_same_major_note(held.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
