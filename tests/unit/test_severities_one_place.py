"""The four severity classes are spelled in one place (avsev.serving.schema.SEVERITIES): the
monitoring and batch code and the scheduled functions derive every class name, per-class
column (`p_fatal`, `prob_none`...) and matrix size from it."""

from __future__ import annotations

import ast
from pathlib import Path

from avsev.serving.schema import SEVERITIES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "python" / "avsev"
FILES = sorted(
    [
        *(PACKAGE / "monitoring").glob("*.py"),
        *(PACKAGE / "batch").glob("*.py"),
        *(
            ROOT / "functions" / name / "app.py"
            for name in ("rollup", "ab_analysis", "drift_check", "batch_score")
        ),
    ]
)
SPELLED = {s for s in SEVERITIES} | {
    f"{prefix}_{s.lower()}" for prefix in ("p", "prob") for s in SEVERITIES
}
NOT_A_CLASS = {("store.py", "None"), ("metric_filters.py", "None")}
"""CloudWatch's unit for a number without one (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html)."""


def spelled_classes(source: str, name: str) -> list[tuple[int, str]]:
    """String constants (docstrings aside) that are a class name or a per-class column."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value in SPELLED
        and (name, node.value) not in NOT_A_CLASS
    ]


def test_no_class_is_spelled_outside_severities():
    assert len(FILES) > 20
    found = {
        f"{path.relative_to(ROOT)}:{line}": text
        for path in FILES
        for line, text in spelled_classes(path.read_text(), path.name)
    }
    assert not found, f"severity classes spelled outside SEVERITIES: {found}"


def test_the_check_finds_a_spelled_class():
    assert spelled_classes('KEYS = ("p_fatal", "p_none")\n', "x.py") == [
        (1, "p_fatal"),
        (1, "p_none"),
    ]
    assert spelled_classes('def f():\n    """Fatal."""\n    return "Minor"\n', "x.py") == [
        (3, "Minor")
    ]
    assert spelled_classes('unit = "None"\n', "store.py") == []
