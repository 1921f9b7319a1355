"""The ctypes binding to a compiled `model.so`: predict one row, a batch, and TreeSHAP.

No numpy, xgboost or tl2cgen: rows are lists of floats (NaN = missing), the loops run in C.
"""

from __future__ import annotations

import ctypes
import platform
import struct
from collections.abc import Sequence
from pathlib import Path

ABI_VERSION = 1

ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}
"""ELF e_machine → Lambda architecture name."""

TREES_MAGIC = b"AVSEVTR1"
TREES_HEADER = struct.Struct("<8s5i")
"""magic, n_trees, n_nodes, n_class, n_feature, max_depth."""
TREES_ARRAYS: tuple[tuple[str, str, str], ...] = (
    # (name, struct type code, length field)
    ("roots", "i", "n_trees"),
    ("tree_class", "i", "n_trees"),
    ("tree_expect", "d", "n_trees"),
    ("base_margin", "d", "n_class"),
    ("left", "i", "n_nodes"),
    ("right", "i", "n_nodes"),
    ("feature", "i", "n_nodes"),
    ("default_left", "i", "n_nodes"),
    ("threshold", "f", "n_nodes"),
    ("value", "d", "n_nodes"),
    ("cover", "d", "n_nodes"),
)
"""The layout of trees.bin, after the header: little-endian arrays in this order."""

_CTYPES: dict[str, type[ctypes.c_int32] | type[ctypes.c_double] | type[ctypes.c_float]] = {
    "i": ctypes.c_int32,
    "d": ctypes.c_double,
    "f": ctypes.c_float,
}


class ModelError(Exception):
    """A compiled model that cannot be loaded or called."""


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )


def elf_arch(path: Path) -> str:
    """The architecture an ELF shared library was built for ('x86_64', 'arm64', ...)."""
    head = path.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise ModelError(f"{path}: not an ELF shared library")
    little = head[5] == 1
    (machine,) = struct.unpack("<H" if little else ">H", head[18:20])
    return ELF_MACHINES.get(machine, f"elf-machine-{machine:#x}")


class _Trees(ctypes.Structure):
    _fields_ = [
        ("left", ctypes.POINTER(ctypes.c_int32)),
        ("right", ctypes.POINTER(ctypes.c_int32)),
        ("feature", ctypes.POINTER(ctypes.c_int32)),
        ("default_left", ctypes.POINTER(ctypes.c_int32)),
        ("threshold", ctypes.POINTER(ctypes.c_float)),
        ("value", ctypes.POINTER(ctypes.c_double)),
        ("cover", ctypes.POINTER(ctypes.c_double)),
        ("roots", ctypes.POINTER(ctypes.c_int32)),
        ("tree_class", ctypes.POINTER(ctypes.c_int32)),
        ("tree_expect", ctypes.POINTER(ctypes.c_double)),
        ("base_margin", ctypes.POINTER(ctypes.c_double)),
        ("n_trees", ctypes.c_int32),
        ("n_class", ctypes.c_int32),
        ("n_feature", ctypes.c_int32),
        ("max_depth", ctypes.c_int32),
    ]


def read_trees(path: Path) -> tuple[dict[str, int], dict[str, ctypes.Array]]:  # type: ignore[type-arg]
    """Header and arrays of a trees.bin file, as ctypes arrays."""
    data = path.read_bytes()
    if len(data) < TREES_HEADER.size:
        raise ModelError(f"{path}: truncated tree file")
    magic, n_trees, n_nodes, n_class, n_feature, max_depth = TREES_HEADER.unpack_from(data)
    if magic != TREES_MAGIC:
        raise ModelError(f"{path}: not an avsev tree file")
    header = {
        "n_trees": n_trees,
        "n_nodes": n_nodes,
        "n_class": n_class,
        "n_feature": n_feature,
        "max_depth": max_depth,
    }
    arrays: dict[str, ctypes.Array] = {}  # type: ignore[type-arg]
    offset = TREES_HEADER.size
    for name, code, length in TREES_ARRAYS:
        n = header[length]
        ctype = _CTYPES[code]
        size = n * ctypes.sizeof(ctype)
        if offset + size > len(data):
            raise ModelError(f"{path}: truncated tree file (array {name})")
        arrays[name] = (ctype * n).from_buffer_copy(data, offset)
        offset += size
    return header, arrays


class CompiledModel:
    """A loaded `model.so` (and, for explanations, its trees.bin)."""

    def __init__(self, lib_path: Path, trees_path: Path | None = None) -> None:
        try:
            lib = ctypes.CDLL(str(lib_path), mode=ctypes.RTLD_LOCAL)
        except OSError as e:
            raise ModelError(f"{lib_path}: cannot load compiled model: {e}") from e
        for symbol in (
            "avsev_predict_rows",
            "avsev_num_class",
            "avsev_num_feature",
            "avsev_abi_version",
        ):
            if not hasattr(lib, symbol):
                raise ModelError(f"{lib_path}: not an avsev model library (no {symbol})")
        if lib.avsev_abi_version() != ABI_VERSION:
            raise ModelError(f"{lib_path}: runtime ABI {lib.avsev_abi_version()} != {ABI_VERSION}")
        self.lib = lib
        self.n_feature: int = lib.avsev_num_feature()
        self.n_class: int = lib.avsev_num_class()
        f32 = ctypes.POINTER(ctypes.c_float)
        lib.avsev_predict_rows.argtypes = [f32, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32, f32]
        lib.avsev_predict_rows.restype = ctypes.c_int32
        self._row_type = ctypes.c_float * self.n_feature
        self._out_type = ctypes.c_float * self.n_class
        self._trees: _Trees | None = None
        self._tree_arrays: dict[str, ctypes.Array] = {}  # type: ignore[type-arg]
        if trees_path is not None:
            self._load_trees(trees_path)

    def _load_trees(self, path: Path) -> None:
        header, arrays = read_trees(path)
        if header["n_feature"] != self.n_feature or header["n_class"] != self.n_class:
            raise ModelError(
                f"{path}: trees have {header['n_feature']} features and {header['n_class']} "
                f"classes, the library {self.n_feature} and {self.n_class}"
            )
        self._tree_arrays = arrays  # keep the buffers alive
        self._trees = _Trees(
            **{name: ctypes.cast(arr, ctypes.POINTER(arr._type_)) for name, arr in arrays.items()},
            n_trees=header["n_trees"],
            n_class=header["n_class"],
            n_feature=header["n_feature"],
            max_depth=header["max_depth"],
        )
        self.lib.avsev_shap.argtypes = [
            ctypes.POINTER(_Trees),
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_int32,
            ctypes.c_int32,
            ctypes.POINTER(ctypes.c_double),
        ]
        self.lib.avsev_shap.restype = ctypes.c_int32

    def _check(self, row: Sequence[float]) -> None:
        if len(row) != self.n_feature:
            raise ModelError(f"row has {len(row)} values, the model takes {self.n_feature}")

    def predict(self, row: Sequence[float], *, margin: bool = False) -> list[float]:
        """Class probabilities (or margins) of one encoded row."""
        self._check(row)
        out = self._out_type()
        self.lib.avsev_predict_rows(self._row_type(*row), 1, self.n_feature, int(margin), out)
        return out[:]

    def predict_many(
        self, rows: Sequence[Sequence[float]], *, margin: bool = False
    ) -> list[list[float]]:
        """Class probabilities of many rows, scored in one C loop."""
        n, nf, nc = len(rows), self.n_feature, self.n_class
        if n == 0:
            return []
        flat: list[float] = []
        for row in rows:
            self._check(row)
            flat.extend(row)
        out = (ctypes.c_float * (n * nc))()
        self.lib.avsev_predict_rows((ctypes.c_float * (n * nf))(*flat), n, nf, int(margin), out)
        values = out[:]
        return [values[i * nc : (i + 1) * nc] for i in range(n)]

    def predict_buffer(self, buffer: ctypes.Array, n: int, *, margin: bool = False) -> ctypes.Array:  # type: ignore[type-arg]
        """Score `n` rows already packed as float32 (for large files): no per-row Python."""
        out = (ctypes.c_float * (n * self.n_class))()
        self.lib.avsev_predict_rows(
            ctypes.cast(buffer, ctypes.POINTER(ctypes.c_float)), n, self.n_feature, int(margin), out
        )
        return out

    @property
    def can_explain(self) -> bool:
        return self._trees is not None

    def shap(self, row: Sequence[float], *, only_class: int = -1) -> list[list[float]]:
        """Exact TreeSHAP: per class, one contribution per feature and the base value last.

        With `only_class`, only that class's trees are walked (others come back as zeros).
        """
        if self._trees is None:
            raise ModelError("this model was loaded without its trees: no explanations")
        self._check(row)
        stride = self.n_feature + 1
        phi = (ctypes.c_double * (self.n_class * stride))()
        rc = self.lib.avsev_shap(
            ctypes.byref(self._trees), self._row_type(*row), self.n_feature, only_class, phi
        )
        if rc != 0:
            raise ModelError(f"avsev_shap failed ({rc})")
        values = phi[:]
        return [values[c * stride : (c + 1) * stride] for c in range(self.n_class)]
