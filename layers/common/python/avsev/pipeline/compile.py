"""XGBoost JSON → Treelite 4 → tl2cgen C → gcc → `model.so` for a Lambda architecture,
and the tree arrays TreeSHAP walks (trees.bin)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from avsev.pipeline.treelite_versions import quiet_checkpoint_note
from avsev.serving.runtime import TREES_ARRAYS, TREES_HEADER, TREES_MAGIC, host_arch

ARCHES = ("arm64", "x86_64")
GNU_TRIPLES = {"arm64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
DEBIAN_PACKAGES = {"arm64": "gcc-aarch64-linux-gnu", "x86_64": "gcc-x86-64-linux-gnu"}
DEFAULT_CFLAGS = ("-Os", "-fPIC", "-std=gnu11", "-fno-math-errno")
"""-Os, not tl2cgen's -O3: compiled if-else trees are bound by branch mispredictions and
instruction-cache misses, and smaller code wins (about 1.8x here)."""


class CompileError(Exception):
    """The model could not be compiled for the requested architecture."""


def compiler_for(arch: str) -> str:
    """The gcc that targets `arch`: the native one, or the Debian cross-compiler."""
    if arch not in ARCHES:
        raise CompileError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    candidates = [f"{GNU_TRIPLES[arch]}-gcc"]
    if arch == host_arch():
        candidates.insert(0, os.environ.get("CC", "gcc"))
    for cc in candidates:
        if shutil.which(cc):
            return cc
    raise CompileError(
        f"no C compiler for {arch}: install Debian's {DEBIAN_PACKAGES[arch]} "
        f"(apt-get install {DEBIAN_PACKAGES[arch]})"
    )


def _csrc(name: str) -> str:
    return resources.files("avsev.pipeline").joinpath("csrc", name).read_text()


def generate_sources(model_json: Path, out_dir: Path, *, parallel_comp: int = 0) -> list[Path]:
    """tl2cgen C sources for the model plus the avsev runtime helper; returns the .c files."""
    import tl2cgen
    import treelite

    params: dict[str, Any] = {}
    if parallel_comp > 1:
        params["parallel_comp"] = parallel_comp
    with contextlib.redirect_stdout(sys.stderr):  # their log lines are not our output
        model = treelite.frontend.load_xgboost_model(str(model_json))
        with quiet_checkpoint_note():  # Treelite 4.8 → tl2cgen's 4.1.2: see treelite_versions
            tl2cgen.generate_c_code(model, str(out_dir), params=params, verbose=False)
    (out_dir / "avsev_runtime.c").write_text(_csrc("avsev_runtime.c"))
    return sorted(out_dir.glob("*.c"))


def compile_library(
    sources: list[Path],
    out: Path,
    arch: str,
    *,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    jobs: int | None = None,
) -> Path:
    """Compile and link C sources into a shared library for `arch` (files in parallel)."""
    cc = compiler_for(arch)
    jobs = jobs or os.cpu_count() or 1

    def one(src: Path) -> Path:
        obj = src.with_suffix(".o")
        run([cc, *cflags, "-c", str(src), "-o", str(obj)])
        return obj

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        objects = list(pool.map(one, sources))
    run([cc, "-shared", "-o", str(out), *map(str, objects), "-lm"])
    strip = shutil.which(f"{GNU_TRIPLES[arch]}-strip") or (
        shutil.which("strip") if arch == host_arch() else None
    )
    if strip:
        run([strip, "--strip-unneeded", str(out)])
    return out


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"{' '.join(cmd[:3])} ... failed:\n{proc.stderr[-2000:]}")


def parse_base_score(raw: str | float) -> list[float]:
    """XGBoost's base_score: a scalar, or (XGBoost ≥ 3.1) a per-class vector as text."""
    if isinstance(raw, int | float):
        return [float(raw)]
    text = raw.strip()
    if text.startswith("["):
        return [float(v) for v in text.strip("[]").split(",") if v.strip()]
    return [float(text)]


def export_trees(model_json: Path, out: Path) -> dict[str, int]:
    """Write trees.bin (layout: `avsev.serving.runtime.TREES_ARRAYS`) from an XGBoost JSON
    model. Returns the header values."""
    doc = json.loads(model_json.read_text())
    learner = doc["learner"]
    n_class = max(1, int(learner["learner_model_param"].get("num_class", "1")))
    n_feature = int(learner["learner_model_param"]["num_feature"])
    base = parse_base_score(learner["learner_model_param"]["base_score"])
    base_margin = base if len(base) == n_class else base * n_class
    booster = learner["gradient_booster"]
    gbtree = booster["model"] if "model" in booster else booster["gbtree"]["model"]
    trees = gbtree["trees"]
    tree_info = gbtree["tree_info"]

    cols: dict[str, list[Any]] = {k: [] for k, _, _ in TREES_ARRAYS}
    max_depth = 0
    offset = 0
    for t, tree in enumerate(trees):
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        if any(int(s) != 0 for s in tree.get("split_type", [])):
            raise ValueError("categorical splits are not supported by the TreeSHAP export")
        cond = np.asarray(tree["split_conditions"], dtype=np.float32)
        cover = np.asarray(tree["sum_hessian"], dtype=np.float64)
        leaf = left < 0
        depth = np.zeros(len(left), dtype=np.int64)
        mean = np.where(leaf, cond.astype(np.float64), 0.0)
        for i in range(len(left)):  # parents come before children in XGBoost's arrays
            if not leaf[i]:
                depth[left[i]] = depth[right[i]] = depth[i] + 1
        for i in reversed(range(len(left))):
            if not leaf[i]:
                mean[i] = (
                    mean[left[i]] * cover[left[i]] + mean[right[i]] * cover[right[i]]
                ) / cover[i]
        max_depth = max(max_depth, int(depth.max()))
        cols["roots"].append(offset)
        cols["tree_class"].append(int(tree_info[t]))
        cols["tree_expect"].append(float(mean[0]))
        cols["left"].extend(np.where(leaf, -1, left + offset).tolist())
        cols["right"].extend(np.where(leaf, -1, right + offset).tolist())
        cols["feature"].extend(np.where(leaf, 0, tree["split_indices"]).tolist())
        cols["default_left"].extend(int(v) for v in tree["default_left"])
        cols["threshold"].extend(np.where(leaf, 0.0, cond).tolist())
        cols["value"].extend(np.where(leaf, cond.astype(np.float64), 0.0).tolist())
        cols["cover"].extend(cover.tolist())
        offset += len(left)
    cols["base_margin"] = base_margin
    header = {
        "n_trees": len(trees),
        "n_nodes": offset,
        "n_class": n_class,
        "n_feature": n_feature,
        "max_depth": max_depth,
    }
    with out.open("wb") as f:
        f.write(TREES_HEADER.pack(TREES_MAGIC, *header.values()))
        for name, code, length in TREES_ARRAYS:
            values = cols[name]
            if len(values) != header[length]:
                raise ValueError(
                    f"tree export: {name} has {len(values)} values, expected {header[length]}"
                )
            f.write(struct.pack(f"<{len(values)}{code}", *values))
    return header


def compile_model(
    model_json: Path,
    out_dir: Path,
    arch: str,
    *,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    parallel_comp: int = 0,
) -> dict[str, Any]:
    """model.so and trees.bin in `out_dir`; returns build facts for the card."""
    with tempfile.TemporaryDirectory(prefix="avsev-cc-") as tmp:
        sources = generate_sources(model_json, Path(tmp), parallel_comp=parallel_comp)
        compile_library(sources, out_dir / "model.so", arch, cflags=cflags)
    trees = export_trees(model_json, out_dir / "trees.bin")
    return {
        "arch": arch,
        "compiler": compiler_for(arch),
        "cflags": list(cflags),
        "source_files": len(sources),
        **trees,
    }


def crosscheck(library: Path, rows: np.ndarray, arch: str) -> np.ndarray:
    """Score rows with a library of any architecture: natively, or under qemu-user.

    Builds a small C driver for `arch` that dlopens the library and prints probabilities.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="avsev-xc-") as tmp:
        tmp_path = Path(tmp)
        driver_c = tmp_path / "driver.c"
        driver_c.write_text(_csrc("driver.c"))
        driver = tmp_path / "driver"
        run([compiler_for(arch), "-O1", str(driver_c), "-o", str(driver), "-ldl"])
        data = tmp_path / "rows.bin"
        data.write_bytes(rows.tobytes())
        cmd = [str(driver), str(library), str(data), str(rows.shape[1])]
        if arch != host_arch():
            qemu = shutil.which(f"qemu-{'aarch64' if arch == 'arm64' else 'x86_64'}")
            if not qemu:
                raise CompileError(f"cannot run {arch} code here: install Debian's qemu-user")
            cmd = [qemu, "-L", f"/usr/{GNU_TRIPLES[arch]}", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"cross-check driver failed ({proc.returncode}): {proc.stderr}")
        return np.array([[float(v) for v in line.split()] for line in proc.stdout.splitlines()])
