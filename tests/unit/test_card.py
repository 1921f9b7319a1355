"""The model card as one typed model: every stored card reads, reads and writes back as the
same JSON, keeps what it does not declare, and a card missing a required field (or with a
garbled one) is refused naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from avsev.rollout.handover import HandoverRequest
from avsev.serving.bundle import CARD_FILE, BundleError, read_card, write_card
from avsev.serving.card import Card, CardError, GoldenSet
from card_support import STORED, card_doc

REQUIRED = ("name", "version", "arch", "classes", "feature_spec", "files")

BUILD_KEYS = [
    "name",
    "version",
    "created",
    "arch",
    "runtime_abi",
    "classes",
    "feature_spec",
    "model",
    "metrics",
    "importance",
    "calibration",
    "data",
    "split",
    "reference_profile",
    "prediction_mix",
    "golden",
    "files",
]
"""The keys `avsev build` writes, in order: the card's JSON contract."""


def _bundle_with(tmp_path: Path, doc: object) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / CARD_FILE).write_text(json.dumps(doc))
    return bundle


def test_the_stored_card_reads_typed_and_writes_back_the_same_document():
    raw = STORED.read_text()
    card = Card.from_dict(json.loads(raw))
    assert card.version == "1.0.0" and card.classes == ["Fatal", "Serious", "Minor", "None"]
    assert card.metrics.test.accuracy == pytest.approx(0.6313, abs=1e-4)
    assert card.metrics.test_top_field_blank is not None
    assert card.metrics.test_top_field_blank.field == "broad_phase_of_flight"
    assert card.reference().fields["make"].kind == "categorical"
    assert card.data.event_date_range == ["1979-09-17", "2019-12-31"]
    assert card.calibration is not None and card.calibration.from_ == "held-out test rows"
    assert card.recalibration() is None  # written before the estimate's recalibration
    assert card.spec().names[0] == "event_year"
    # same keys, same order, same values, same bytes
    assert card.to_dict() == json.loads(raw)
    assert json.dumps(card.to_dict(), separators=(",", ":")) == raw.strip()


def test_the_built_card_round_trips_byte_for_byte(real_bundle_dir, tmp_path):
    """The build writes a `Card`; reading it and writing it again gives the same file, with
    the keys the build has always written."""
    raw = (real_bundle_dir / CARD_FILE).read_text()
    assert list(json.loads(raw)) == BUILD_KEYS
    card = read_card(real_bundle_dir)
    assert card.recalibration() is not None and card.model.n_trees
    write_card(tmp_path, card)
    assert (tmp_path / CARD_FILE).read_text() == raw


def test_parts_the_model_does_not_declare_are_kept():
    doc = card_doc()
    doc["signed_by"] = {"key": "k1"}  # a newer card's part
    doc["metrics"]["test"]["brier"] = 0.31
    doc["reference_profile"]["fields"]["make"]["top"] = "cessna"
    card = Card.from_dict(doc)
    assert card.to_dict() == doc and list(card.to_dict()) == list(doc)
    assert card.model_extra == {"signed_by": {"key": "k1"}}


def test_an_older_card_without_the_optional_parts_reads_and_adds_none():
    doc = {k: v for k, v in card_doc().items() if k in REQUIRED}
    card = Card.from_dict(doc)
    assert card.calibration is None and card.importance is None and card.golden == []
    assert card.metrics.test.accuracy is None and card.data_end() is None
    assert card.to_dict() == doc
    with pytest.raises(CardError, match="no reference_profile"):
        card.reference()


@pytest.mark.parametrize("field", REQUIRED)
def test_a_card_missing_a_required_field_is_refused_naming_it(tmp_path, field):
    doc = card_doc()
    del doc[field]
    bundle = _bundle_with(tmp_path, doc)
    with pytest.raises(BundleError) as e:
        read_card(bundle)
    assert f"{field}: required, missing" in str(e.value) and CARD_FILE in str(e.value)


def test_a_garbled_part_is_refused_with_its_path():
    doc = card_doc()
    doc["metrics"]["test"]["rows"] = "many"
    doc["reference_profile"]["fields"]["make"]["kind"] = "text"
    with pytest.raises(CardError) as e:
        Card.from_dict(doc)
    message = str(e.value)
    assert "metrics.test.rows: Input should be a valid integer" in message
    assert "reference_profile.fields.make.kind: Input should be 'numeric' or 'categorical'" in (
        message
    )
    with pytest.raises(CardError, match="a card is a JSON object, not list"):
        Card.from_dict([1, 2])


def test_the_parity_checks_golden_set_is_the_cards_and_is_checked_too():
    card = Card.from_dict(card_doc())
    golden = card.golden_set()
    assert golden.to_dict() == {
        "version": card.version,
        "classes": card.classes,
        "golden": card_doc()["golden"],
    }
    props = {
        "FunctionName": "predict",
        "Version": "3",
        "ModelVersion": "1.0.0",
        "SmokeRoute": "/predict/batch",
        "Golden": json.dumps({"version": "1.0.0", "classes": [], "golden": [{"request": {}}]}),
    }
    with pytest.raises(CardError, match=r"golden\.0\.probabilities: required, missing"):
        HandoverRequest.of(props)
    assert GoldenSet.from_dict(golden.to_dict()) == golden
