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
from avsev.serving.runtime import TREES_ARRAYS, TREES_HEADER, TREES_MAGIC, host_arch

from avsev_tools.pipeline.treelite_versions import quiet_checkpoint_note

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
    return resources.files("avsev_tools.pipeline").joinpath("csrc", name).read_text()


def generate_sources(
    model_json: Path, out_dir: Path, *, parallel_comp: int = 0, forest: bool = True
) -> tuple[list[Path], str]:
    """tl2cgen C sources for the model, the branch-free evaluator (`avsev_forest.c`) and the
    avsev runtime helper; returns the .c files and why there is no branch-free evaluator
    ("" when there is one)."""
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
    source, reason = generate_forest(model_json, disabled="" if forest else "disabled by the build")
    (out_dir / FOREST_FILE).write_text(source)
    return sorted(out_dir.glob("*.c")), reason


def compile_library(
    sources: list[Path],
    out: Path,
    arch: str,
    *,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    jobs: int | None = None,
    file_cflags: dict[str, tuple[str, ...]] | None = None,
) -> Path:
    """Compile and link C sources into a shared library for `arch` (files in parallel;
    `file_cflags` overrides the flags of the files it names)."""
    cc = compiler_for(arch)
    jobs = jobs or os.cpu_count() or 1
    overrides = file_cflags or {}

    def one(src: Path) -> Path:
        obj = src.with_suffix(".o")
        run([cc, *overrides.get(src.name, cflags), "-c", str(src), "-o", str(obj)])
        return obj

    # the biggest file first: it bounds the wall time
    ordered = sorted(sources, key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        objects = list(pool.map(one, ordered))
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


CATEGORY_LIMIT = 1 << 24
"""XGBoost reads a categorical value as a category when it is in [0, 2^24) (its integer
part); other values are in no set (`common::InvalidCat`)."""


def category_sets(tree: dict[str, Any]) -> dict[int, list[int]]:
    """Node → its category set (the categories that go right) for each categorical split of
    an XGBoost JSON tree (`categories_nodes`, `_segments`, `_sizes` into `categories`)."""
    nodes = tree.get("categories_nodes", [])
    segments, sizes = tree.get("categories_segments", []), tree.get("categories_sizes", [])
    cats = tree.get("categories", [])
    sets = {
        int(n): [int(c) for c in cats[int(b) : int(b) + int(k)]]
        for n, b, k in zip(nodes, segments, sizes, strict=True)
    }
    for i, kind in enumerate(tree.get("split_type", [])):
        if int(kind) == 1:
            sets.setdefault(i, [])  # a categorical split with no set: everything goes left
        elif int(kind) != 0:
            raise ValueError(f"tree node {i}: unknown split type {kind}")
    if any(c < 0 or c >= CATEGORY_LIMIT for s in sets.values() for c in s):
        raise ValueError(f"a category outside [0, {CATEGORY_LIMIT})")
    return sets


def category_words(categories: list[int]) -> list[int]:
    """A category set as 32-bit words: category c is bit c % 32 of word c // 32 (as many
    words as the largest category needs; none for an empty set)."""
    words = [0] * ((max(categories) // 32 + 1) if categories else 0)
    for c in categories:
        words[c // 32] |= 1 << (c % 32)
    return words


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
        sets = category_sets(tree)
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
        for i in range(len(left)):
            words = category_words(sets[i]) if i in sets else []
            cols["split_type"].append(int(i in sets))
            cols["cat_offset"].append(len(cols["cat_bits"]))
            cols["cat_size"].append(len(words))
            cols["cat_bits"].extend(words)
        offset += len(left)
    cols["base_margin"] = base_margin
    header = {
        "n_trees": len(trees),
        "n_nodes": offset,
        "n_class": n_class,
        "n_feature": n_feature,
        "max_depth": max_depth,
        "n_cat_words": len(cols["cat_bits"]),
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


FOREST_BLOCK = 64
"""Rows the branch-free evaluator scores at a time (a multiple of every vector width)."""
FOREST_TREES_PER_FUNCTION = 8
"""Trees per generated function, in order (the sums are the same): gcc's time grows faster
than the size of one function, and a categorical model's single function took ~60 s to
compile against ~15 s in functions of 8 trees."""
FOREST_CFLAGS = ("-O3", "-fPIC", "-std=gnu11", "-fno-math-errno")
"""-O3 for the branch-free evaluator: it is straight-line vector code (no -ffast-math: the
sums must stay in XGBoost's order)."""
FOREST_FILE = "avsev_forest.c"
FOREST_OBJECTIVES = ("multi:softprob",)


def _c_float(value: float) -> str:
    """A float32 as an exact C literal (hexadecimal)."""
    return float(np.float32(value)).hex() + "f"


def _booster_doc(model_json: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(model_json.read_text())
    return doc


def _gbtree(learner: dict[str, Any]) -> dict[str, Any]:
    booster = learner["gradient_booster"]
    model: dict[str, Any] = booster["model"] if "model" in booster else booster["gbtree"]["model"]
    return model


FOREST_MAX_DEPTH = 5
"""Deeper trees keep tl2cgen's if-else code (the default models are depth 4)."""


def _depth(tree: dict[str, Any]) -> int:
    """The depth of an XGBoost JSON tree (a lone leaf: 0)."""
    left, right = tree["left_children"], tree["right_children"]
    depth, frontier = 0, [0]
    while True:
        children = [c for n in frontier for c in (left[n], right[n]) if c != -1]
        if not children:
            return depth
        depth, frontier = depth + 1, children


def generate_forest(
    model_json: Path, *, block: int = FOREST_BLOCK, disabled: str = ""
) -> tuple[str, str]:
    """C source of the branch-free evaluator for an XGBoost JSON model, and why there is
    none when the model is outside what it handles ("" when it is there).

    Each tree becomes one loop over a block of rows whose body evaluates the tree bottom-up
    as nested selects (children before parents): `x < t ? left : right` when missing values
    go right, `x >= t ? right : left` when they go left, thresholds and leaves as exact
    float32 hexadecimal literals. A categorical split is a bit lookup: each categorical
    feature a tree reads becomes a category index per row (its integer part when it is in
    [0, 2^24), else -1: in no set), the node picks the 32-bit word of its set that holds
    the index (nested selects over the set's nonzero words, 0 for any other), and the row
    goes right when the index's bit is set, or, when missing values go right, when it is
    missing (NaN reads as index -1, so left is the default otherwise).
    """
    doc = _booster_doc(model_json)
    learner = doc["learner"]
    objective = learner.get("objective", {}).get("name", "")
    n_class = max(1, int(learner["learner_model_param"].get("num_class", "1")))
    n_feature = int(learner["learner_model_param"]["num_feature"])
    gbtree = _gbtree(learner)
    trees, tree_info = gbtree["trees"], gbtree["tree_info"]
    reason = disabled
    if reason:
        pass
    elif objective not in FOREST_OBJECTIVES:
        reason = f"objective {objective!r} (handled: {', '.join(FOREST_OBJECTIVES)})"
    elif learner["gradient_booster"].get("name", "gbtree") != "gbtree":
        reason = f"booster {learner['gradient_booster'].get('name')!r}"
    elif max((_depth(t) for t in trees), default=0) > FOREST_MAX_DEPTH:
        # every node of a tree is computed for every row: 2^depth work per tree, and a
        # source gcc takes minutes and gigabytes to compile; tl2cgen's code wins there
        reason = f"trees deeper than {FOREST_MAX_DEPTH}"
    head = [
        "/* Generated by avsev_tools.pipeline.compile.generate_forest: do not edit. */",
        "#include <stdint.h>",
        f"#define AVSEV_BLOCK {block}",
    ]
    if reason:
        head.append("#define AVSEV_FOREST_AVAILABLE 0")
        return "\n".join(head) + "\n" + _csrc(FOREST_FILE), reason
    base = parse_base_score(learner["learner_model_param"]["base_score"])
    base_margin = base if len(base) == n_class else base * n_class
    head += [
        "#define AVSEV_FOREST_AVAILABLE 1",
        f"#define AVSEV_FOREST_NF {n_feature}",
        f"#define AVSEV_FOREST_NC {n_class}",
        f"#define AVSEV_FOREST_SOFTMAX {int(objective == 'multi:softprob')}",
        f"#define AVSEV_FOREST_TREES {len(trees)}",
        "static const float avsev_forest_base[AVSEV_FOREST_NC] = {"
        + ", ".join(_c_float(b) for b in base_margin)
        + "};",
        "",
    ]
    body: list[str] = []
    for t, tree in enumerate(trees):
        if t % FOREST_TREES_PER_FUNCTION == 0:
            if t:
                body.append("}")
            body += [
                "#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)",
                '__attribute__((target_clones("avx2", "default")))',
                "#endif",
                f"static void forest_part{t // FOREST_TREES_PER_FUNCTION}("
                "const float* restrict xb, float* restrict acc, int32_t m) {",
            ]
        left, right = tree["left_children"], tree["right_children"]
        feature, cond = tree["split_indices"], tree["split_conditions"]
        default_left = tree["default_left"]
        sets = category_sets(tree)

        def ref(i: int, left: list[int] = left, cond: list[float] = cond) -> str:
            return _c_float(cond[i]) if left[i] < 0 else f"n{i}"

        cls = int(tree_info[t])
        body.append(f"  {{ /* tree {t}, class {cls} */")
        body.append(f"    float* restrict a = acc + {cls} * AVSEV_BLOCK;")
        body.append("    for (int32_t r = 0; r < m; ++r) {")
        body.append("      const float* v = xb + r;")
        for f in sorted({int(feature[i]) for i in sets if left[i] >= 0}):
            x = f"v[{f} * AVSEV_BLOCK]"
            body.append(
                f"      const int32_t k{f} = (int32_t)({x} >= 0.0f && {x} < "
                f"{_c_float(CATEGORY_LIMIT)} ? {x} : -1.0f);"
            )
        for i in reversed(range(len(left))):
            if left[i] < 0:
                continue
            f = int(feature[i])
            x = f"v[{f} * AVSEV_BLOCK]"
            lo, hi = ref(left[i]), ref(right[i])
            if i in sets:
                word = "0u"
                for w, bits in reversed(list(enumerate(category_words(sets[i])))):
                    if bits:
                        word = f"(k{f} >> 5) == {w} ? {bits:#x}u : {word}"
                hit = f"(int32_t)((({word}) >> (k{f} & 31)) & 1u)"
                go_right = hit if int(default_left[i]) else f"(({x} != {x}) | {hit})"
                expr = f"{go_right} ? {hi} : {lo}"
            elif int(default_left[i]):
                expr = f"{x} >= {_c_float(cond[i])} ? {hi} : {lo}"
            else:
                expr = f"{x} < {_c_float(cond[i])} ? {lo} : {hi}"
            body.append(f"      const float n{i} = {expr};")
        body.append(f"      a[r] += {ref(0)};")
        body.append("    }")
        body.append("  }")
    parts = -(-len(trees) // FOREST_TREES_PER_FUNCTION)
    calls = [
        "}" if trees else "",
        "static void forest_block(const float* restrict xb, float* restrict acc, int32_t m) {",
        *(f"  forest_part{k}(xb, acc, m);" for k in range(parts)),
        "}",
    ]
    return "\n".join([*head, *body, *calls, ""]) + _csrc(FOREST_FILE), ""


def compile_model(
    model_json: Path,
    out_dir: Path,
    arch: str,
    *,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    parallel_comp: int = 0,
    forest: bool = True,
) -> dict[str, Any]:
    """model.so and trees.bin in `out_dir`; returns build facts for the card."""
    with tempfile.TemporaryDirectory(prefix="avsev-cc-") as tmp:
        sources, no_forest = generate_sources(
            model_json, Path(tmp), parallel_comp=parallel_comp, forest=forest
        )
        compile_library(
            sources,
            out_dir / "model.so",
            arch,
            cflags=cflags,
            file_cflags={FOREST_FILE: FOREST_CFLAGS},
        )
    trees = export_trees(model_json, out_dir / "trees.bin")
    return {
        "arch": arch,
        "compiler": compiler_for(arch),
        "cflags": list(cflags),
        "source_files": len(sources),
        "evaluator": {
            "batch": "tl2cgen if-else" if no_forest else "branch-free (avsev_forest.c)",
            "block_rows": FOREST_BLOCK,
            "cflags": list(FOREST_CFLAGS),
            **({"why_not_branch_free": no_forest} if no_forest else {}),
        },
        **trees,
    }


def crosscheck(
    library: Path, rows: np.ndarray, arch: str, *, symbol: str = "avsev_predict_rows"
) -> np.ndarray:
    """Score rows with a library of any architecture: natively, or under qemu-user.

    Builds a small C driver for `arch` that dlopens the library and prints probabilities
    (from `symbol`: avsev_predict_rows, avsev_forest_rows or avsev_tl2cgen_rows).
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
        cmd = [str(driver), str(library), str(data), str(rows.shape[1]), symbol]
        if arch != host_arch():
            qemu = shutil.which(f"qemu-{'aarch64' if arch == 'arm64' else 'x86_64'}")
            if not qemu:
                raise CompileError(f"cannot run {arch} code here: install Debian's qemu-user")
            cmd = [qemu, "-L", f"/usr/{GNU_TRIPLES[arch]}", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"cross-check driver failed ({proc.returncode}): {proc.stderr}")
        return np.array([[float(v) for v in line.split()] for line in proc.stdout.splitlines()])
