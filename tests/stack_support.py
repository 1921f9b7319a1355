"""A local stack (moto server as AWS, the API emulator, the real handlers) for a test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def serving(*bundles: Path) -> Iterator[Any]:
    """Yield a running local stack that serves these bundles (the first is live), on its own
    embedded AWS even when the shell points AWS_ENDPOINT_URL elsewhere; a fixture's body."""
    from avsev.local.stack import LocalStack

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        with LocalStack(list(bundles)) as s:
            yield s
