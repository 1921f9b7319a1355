"""The `avsev` command for a data scientist: train → build → evaluate / compare."""

from __future__ import annotations

import json

import pytest
from avsev.serving.runtime import host_arch
from avsev_tools.cli import main
from avsev_tools.pipeline.synthetic import generate_frame


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


@pytest.fixture()
def reports_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"ev_id": "A1", "make": "Cessna"}\n')
    return path


@pytest.mark.parametrize(
    "data, out, option",
    [
        ("{dir}", "{dir}/scored.csv", "--data"),  # a directory where a file is expected
        ("{file}", "{dir}", "--out"),  # a directory where a file is expected
        ("{file}", "{file}/scored.csv", "--out"),  # a file where a directory is expected
        ("{dir}/missing.csv", "{dir}/scored.csv", "--data"),
        ("{file}", "{dir}/missing/scored.csv", "--out"),
        ("{file}", "{file}", "--out"),  # would overwrite the input
    ],
)
def test_score_names_the_wrong_path_option_and_exits_2(
    synthetic_bundle_dir, reports_file, tmp_path, capsys, data, out, option
):
    paths = {"dir": str(tmp_path), "file": str(reports_file)}
    code = main(
        [
            "score",
            "--bundle",
            str(synthetic_bundle_dir),
            "--data",
            data.format(**paths),
            "--out",
            out.format(**paths),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"avsev score: error: {option} ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_score_a_bundle_that_is_a_file_is_named(reports_file, tmp_path, capsys):
    code = main(
        [
            "score",
            "--bundle",
            str(reports_file),
            "--data",
            str(reports_file),
            "--out",
            str(tmp_path / "o.csv"),
        ]
    )
    assert code == 2 and "--bundle" in capsys.readouterr().err


def test_score_a_deeply_nested_line_is_a_rejected_row(synthetic_bundle_dir, tmp_path, capsys):
    data = tmp_path / "deep.jsonl"
    data.write_bytes(
        b'{"ev_id": "A1", "make": "Cessna"}\n'
        + b'{"ev_id": "A2", "make": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}\n"
        + b'{"ev_id": "=1+2", "make": "Piper"}\n'
        + b'{"ev_id": "A4"}\n'
    )
    out = tmp_path / "deep.csv"
    assert (
        main(
            ["score", "--bundle", str(synthetic_bundle_dir), "--data", str(data), "--out", str(out)]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows_read"], summary["scored"], summary["rejected"]) == (4, 2, 2)
    import pandas as pd

    rejected = pd.read_csv(tmp_path / "deep.rejected.csv", dtype=str, keep_default_na=False)
    assert rejected["row"].tolist() == ["2", "3"]
    assert "nested deeper than" in rejected["reason"][0]
    assert rejected["ev_id"].tolist() == ["", "'=1+2"]  # shown as text, never run as a formula
