"""The `avsev` command for a data scientist: train → build → evaluate / compare."""

from __future__ import annotations

import json

import pytest
from avsev.cli import main
from avsev.pipeline.synthetic import generate_frame
from avsev.serving.runtime import host_arch


def test_train_build_evaluate_compare_on_synthetic_data(tmp_path, capsys):
    data = tmp_path / "recent.csv"
    generate_frame(1500, seed=5).to_csv(data, index=False)
    assert (
        main(["train", "--out", str(tmp_path / "m1"), "--synthetic-rows", "4000", "--rounds", "30"])
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert trained["test"]["weighted_f1"] > trained["test"]["baseline_majority"]["weighted_f1"]
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "m2"),
                "--synthetic-rows",
                "4000",
                "--rounds",
                "30",
                "--balanced",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for m, v in (("m1", "1.0.0"), ("m2", "1.1.0")):
        assert (
            main(
                [
                    "build",
                    "--model",
                    str(tmp_path / m),
                    "--version",
                    v,
                    "--arch",
                    host_arch(),
                    "--out",
                    str(tmp_path / "bundles"),
                ]
            )
            == 0
        )
    a, b = (tmp_path / "bundles" / f"avsev-severity-{v}" for v in ("1.0.0", "1.1.0"))
    assert capsys.readouterr().out.split() == [str(a), str(b)]

    assert main(["evaluate", "--bundle", str(a), "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["rows"] == 1500 and report["bundle"] == "avsev-severity-1.0.0"

    assert main(["compare", "--a", str(a), "--b", str(b), "--data", str(data)]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    m = result["mcnemar"]
    assert m["only_a_correct"] + m["only_b_correct"] + m["both_correct"] + m["both_wrong"] == 1500
    assert result["verdict"] in out.err
    assert 0 <= m["p_value"] <= 1


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert (
        main(
            [
                "build",
                "--model",
                str(tmp_path / "none"),
                "--version",
                "1.0.0",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "model.json: missing" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["evaluate", "--bundle", str(tmp_path), "--data", str(bad)]) == 2
    assert "Event_Date" in capsys.readouterr().err


@pytest.mark.parametrize("a, b, exact", [(3, 9, True), (40, 80, False)])
def test_mcnemar_uses_exact_test_when_few_discordant(a, b, exact):
    from avsev.monitoring.stats import mcnemar

    ca = [True] * a + [False] * b + [True] * 50
    cb = [False] * a + [True] * b + [True] * 50
    r = mcnemar(ca, cb)
    assert (r["method"] == "exact binomial") is exact
    assert r["only_a_correct"] == a and r["only_b_correct"] == b
    if not exact:
        assert r["significant"] and "B is significantly" in r["verdict"]
