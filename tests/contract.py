"""Comparing a written file with its contract: shape, names, order and text exactly; numbers to a
stated precision.

A report's numbers are sums, p-values and distances computed by numpy and scipy: a new release
may add in another order and move the last of 17 digits (2.534118729856513 against
2.5341187298565124), which changes no decision and no figure a person reads. So:

- JSON: the same keys in the same order, the same types, the same strings, integers, booleans
  and nulls; floats equal to a relative 1e-9 (absolute 1e-12 near zero). Summation order moves
  a float by ~1e-16 relative; a changed formula, weight or sample moves it by far more than 1e-9.
- Markdown: the same text between numbers; a number equal to one unit of its last printed
  digit (a value printed as 0.1235 may be printed 0.1234 after a last-digit move upstream).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

REL = 1e-9
ABS = 1e-12
NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:[eE][-+]?\d+)?")


def json_differences(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ beyond the contract's precision (empty when they agree)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {type(actual).__name__}"]
        if list(actual) != list(expected):
            return [f"{path}: keys {list(actual)} != {list(expected)} (names and order)"]
        return [d for k in expected for d in json_differences(actual[k], expected[k], f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected a list of {len(expected)}, got {actual!r:.80}"]
        return [
            d for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            for d in json_differences(a, e, f"{path}[{i}]")
        ]
    if type(actual) is not type(expected):
        return [f"{path}: {actual!r} ({type(actual).__name__}) != {expected!r} ({type(expected).__name__})"]
    if isinstance(expected, float):
        if math.isclose(actual, expected, rel_tol=REL, abs_tol=ABS) or actual == expected:
            return []
        return [f"{path}: {actual!r} != {expected!r} (beyond relative {REL})"]
    return [] if actual == expected else [f"{path}: {actual!r} != {expected!r}"]


def text_differences(actual: str, expected: str) -> list[str]:
    """Where two texts differ: the words exactly, each number to one unit of its last digit."""
    a_words, e_words = NUMBER.split(actual), NUMBER.split(expected)
    a_nums, e_nums = list(NUMBER.finditer(actual)), list(NUMBER.finditer(expected))
    if len(a_nums) != len(e_nums):
        return [f"{len(a_nums)} numbers != {len(e_nums)} numbers"]
    # split() interleaves the decimals group: keep the text pieces only.
    a_text, e_text = a_words[:: 2], e_words[:: 2]
    out = [f"text {a!r} != {e!r}" for a, e in zip(a_text, e_text, strict=True) if a != e]
    for a, e in zip(a_nums, e_nums, strict=True):
        decimals = max(len(e.group(1) or ""), len(a.group(1) or ""))
        unit = 10.0**-decimals
        if "e" in e.group(0).lower():
            close = math.isclose(float(a.group(0)), float(e.group(0)), rel_tol=1e-3)
        else:
            close = abs(float(a.group(0)) - float(e.group(0))) <= unit * (1 + 1e-9)
        if not close:
            out.append(f"number {a.group(0)} != {e.group(0)} at {e.start()}")
    return out


def assert_same_json(actual_text: str, expected_text: str) -> None:
    differences = json_differences(json.loads(actual_text), json.loads(expected_text))
    assert not differences, "\n".join(differences[:20])


def assert_same_text(actual: str, expected: str) -> None:
    differences = text_differences(actual, expected)
    assert not differences, "\n".join(differences[:20])
