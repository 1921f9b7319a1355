"""Treelite 4.8 loads the XGBoost model, tl2cgen's embedded Treelite 4.1.2 writes the C: the
conversion is exact (against Treelite 4.8's own predictions and xgboost's) and quiet."""

from __future__ import annotations

import numpy as np
import pytest
from avsev_tools.pipeline.treelite_versions import without_same_major_note

NOTE = (
    "[08:18:01] /x/serializer.cc:202: The model you are loading originated from a newer Treelite"
    " version; some functionalities may be unavailable.\n"
    "Currently running Treelite version {0}\n"
    "The model checkpoint was generated from Treelite version {1}\n"
)


def test_only_the_same_major_note_is_held_back():
    other = "[08:18:01] split.cc:35: Parallel compilation enabled\n"
    assert without_same_major_note(other + NOTE.format("4.1.2", "4.8.1") + other) == other * 2
    different = NOTE.format("4.1.2", "5.0.0")
    assert without_same_major_note(different) == different


@pytest.fixture(scope="module")
def rows(real_data, real_bundle):
    from avsev_tools.pipeline.train import matrix

    return matrix(real_bundle.spec, real_data.reports()[-2000:])


def test_tl2cgen_still_embeds_an_older_treelite_4(real_model_dir, tmp_path, capfd):
    """Why the note is held back: the day tl2cgen embeds the same Treelite, this fails and
    `avsev_tools.pipeline.treelite_versions` can go."""
    import tl2cgen
    import treelite

    model = treelite.frontend.load_xgboost_model(str(real_model_dir / "model.json"))
    capfd.readouterr()
    tl2cgen.generate_c_code(model, str(tmp_path), params={}, verbose=False)
    err = capfd.readouterr().err
    assert "originated from a newer Treelite version" in err
    assert f"generated from Treelite version {treelite.__version__}" in err
    assert "Currently running Treelite version 4." in err and treelite.__version__.startswith("4.")


def test_building_prints_no_version_note(real_model_dir, tmp_path, capfd):
    from avsev_tools.pipeline.compile import generate_sources

    capfd.readouterr()
    sources = generate_sources(real_model_dir / "model.json", tmp_path)
    captured = capfd.readouterr()
    assert sources and "Treelite version" not in captured.err + captured.out
    assert "functionalities may be unavailable" not in captured.err + captured.out


def test_compiled_model_equals_treelite_48_predictions(real_model_dir, real_bundle, rows):
    import treelite

    model = treelite.frontend.load_xgboost_model(str(real_model_dir / "model.json"))
    expected = treelite.gtil.predict(model, rows.astype(np.float32)).reshape(len(rows), -1)
    got = np.array(real_bundle.model.predict_many(rows.tolist()))
    assert np.isnan(rows).any() and expected.shape == got.shape
    assert np.abs(got - expected).max() < 1e-6
