"""Model cards for tests: the stored card (tests/data/reports/card.json) with parts replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avsev.serving.card import Card

STORED = Path(__file__).parent / "data" / "reports" / "card.json"


def card_doc() -> dict[str, Any]:
    """The stored card's JSON document (a fresh copy)."""
    return dict(json.loads(STORED.read_text()))


def card_with(**parts: Any) -> Card:
    """The stored card with top-level parts replaced (given as JSON documents); a part given
    as None is left out (an older card without it)."""
    doc = card_doc() | parts
    return Card.from_dict({k: v for k, v in doc.items() if v is not None})
