"""Loading a model bundle: card, checks (sha256, architecture, shapes) and the runtime."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avsev.serving.card import Card, CardError
from avsev.serving.completeness import InputCheck
from avsev.serving.features import FeatureSpec
from avsev.serving.runtime import CompiledModel, ModelError, elf_arch, host_arch

CARD_FILE = "card.json"
LIBRARY_FILE = "model.so"
TREES_FILE = "trees.bin"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class BundleError(Exception):
    """A bundle that is missing, corrupt, or not for this machine."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A loaded, checked model bundle."""

    path: Path
    card: Card
    spec: FeatureSpec
    classes: tuple[str, ...]
    model: CompiledModel
    inputs: InputCheck = field(init=False, repr=False, compare=False)
    """Completeness and input warnings of a report, by this model's importance and spec."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", InputCheck.from_card(self.spec, self.card))

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    def summary(self) -> dict[str, Any]:
        """What `GET /model` shows: name, version, features, classes, metrics."""
        test = self.card.metrics.test
        baseline = test.baseline_majority
        return {
            "name": self.name,
            "version": self.version,
            "created": self.card.created,
            "arch": self.card.arch,
            "classes": list(self.classes),
            "features": self.spec.to_dict()["features"],
            "metrics": {
                "rows": test.rows,
                "accuracy": test.accuracy,
                "weighted_f1": test.weighted_f1,
                "macro_f1": test.macro_f1,
                "log_loss": test.log_loss,
                "baseline_majority": baseline.to_dict() if baseline is not None else None,
            },
            "trees": self.card.model.n_trees,
        }


def read_card(path: Path) -> Card:
    """The bundle's card; raises BundleError naming the file and each missing or bad field."""
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise BundleError(f"{path}: no {CARD_FILE}; is this a model bundle?")
    try:
        doc = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{card_path}: not valid JSON ({e})") from e
    try:
        return Card.from_dict(doc)
    except CardError as e:
        raise BundleError(f"{card_path}: {e}") from e


def write_card(path: Path, card: Card) -> None:
    """Write `card` as the bundle's card.json (the build's layout: one-space indent)."""
    (path / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=1, default=str))


def load_bundle(path: str | Path, *, explain: bool = True, verify: bool = True) -> Bundle:
    """Load a bundle directory; with `verify`, check every file's sha256 against the card.

    Raises BundleError naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory not found")
    card = read_card(path)
    for name, digest in card.files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file}: missing (listed in {CARD_FILE})")
        if verify and sha256_file(file) != digest:
            raise BundleError(f"{file}: sha256 does not match {CARD_FILE} (corrupt or replaced)")
    library = path / LIBRARY_FILE
    try:
        built_for = elf_arch(library)
    except ModelError as e:
        raise BundleError(str(e)) from e
    if built_for != card.arch:
        raise BundleError(f"{library}: built for {built_for}, but {CARD_FILE} says {card.arch}")
    if built_for != host_arch():
        raise BundleError(
            f"{library}: built for {built_for}, this machine is {host_arch()}; "
            f"build the bundle with --arch {host_arch()}"
        )
    spec = card.spec()
    classes = tuple(card.classes)
    trees = path / TREES_FILE if explain and (path / TREES_FILE).is_file() else None
    try:
        model = CompiledModel(library, trees)
    except ModelError as e:
        raise BundleError(str(e)) from e
    if model.n_feature != len(spec):
        raise BundleError(
            f"{library}: takes {model.n_feature} features, the card lists {len(spec)}"
        )
    if model.n_class != len(classes):
        raise BundleError(f"{library}: has {model.n_class} classes, the card lists {len(classes)}")
    return Bundle(path=path, card=card, spec=spec, classes=classes, model=model)
