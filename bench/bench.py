"""Benchmarks: the compiled runtime against xgboost, tl2cgen.Predictor and onnxruntime, in one
run, on the same model and on varied real rows (one thread each).

    python bench/bench.py [--data CSV] [--out bench/results.json]

Trains on the real NTSB data with the default parameters (synthetic data when the file is
absent), builds a bundle for this machine, measures, prints a table and writes JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data/ntsb_us_airplane_accidents.csv.xz"  # shipped (data/README.md)
SINGLE_ROWS = 3000
BATCH_ROWS = 100_000


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    return {
        "median_us": statistics.median(s) / 1e3,
        "p99_us": s[int(len(s) * 0.99) - 1] / 1e3,
    }


def time_each(fn: Callable[[Any], Any], inputs: list[Any], warmup: int = 200) -> dict[str, float]:
    for x in inputs[:warmup]:
        fn(x)
    samples = []
    clock = time.perf_counter_ns
    for x in inputs:
        t0 = clock()
        fn(x)
        samples.append(clock() - t0)
    return percentiles(samples)


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def dir_size(*paths: Path) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def site_size(*modules: str) -> int:
    import importlib.util

    paths = []
    for m in modules:
        spec = importlib.util.find_spec(m)
        if spec and spec.origin:
            origin = Path(spec.origin)
            paths.append(origin.parent if origin.name == "__init__.py" else origin)
            libs = origin.parent.parent / f"{m}.libs"
            if libs.is_dir():
                paths.append(libs)
    return dir_size(*paths)


def cold_start(code: str, repeat: int = 5) -> float:
    """Milliseconds from a new interpreter's first line to the first prediction (median)."""
    wrapper = (
        "import time; _t0 = time.perf_counter()\n"
        + code
        + "\nprint((time.perf_counter() - _t0) * 1e3)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", wrapper], capture_output=True, text=True, env=env, check=True
        )
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def onnx_session(model_json: Path, n_feature: int) -> Any:
    import onnxmltools
    import onnxruntime as ort
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = xgb.Booster()
    booster.load_model(model_json)
    booster.feature_names = None  # onnxmltools converts an XGBoost 3 booster only without them
    onx = onnxmltools.convert_xgboost(
        booster, initial_types=[("input", FloatTensorType([None, n_feature]))], target_opset=15
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(ROOT / "bench/results.json"))
    parser.add_argument("--work", default=str(ROOT / "bench/work"))
    args = parser.parse_args()

    import xgboost as xgb
    from avsev.data import load
    from avsev.pipeline.build import build_bundle
    from avsev.pipeline.synthetic import generate
    from avsev.pipeline.train import matrix, save, train
    from avsev.serving.bundle import load_bundle
    from avsev.serving.runtime import host_arch

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load(args.data) if Path(args.data).is_file() else generate(20_000)
    model_dir = save(train(data), Path(tempfile.mkdtemp(dir=work, prefix="model-")))
    bundle_dir = build_bundle(
        model_dir,
        "1.0.0",
        out_root=Path(tempfile.mkdtemp(dir=work, prefix="bundle-")),
        arch=host_arch(),
        parallel_comp=2,
    )
    bundle = load_bundle(bundle_dir)
    spec, model = bundle.spec, bundle.model
    rows_all = matrix(spec, data.reports())
    rng = np.random.default_rng(0)
    single = rows_all[rng.choice(len(rows_all), SINGLE_ROWS, replace=True)]
    batch = rows_all[rng.choice(len(rows_all), BATCH_ROWS, replace=True)]
    single_lists = single.tolist()

    booster = xgb.Booster()
    booster.load_model(model_dir / "model.json")
    booster.set_param({"nthread": 1})

    import tl2cgen
    import treelite

    tl_lib = work / "tl2cgen_default.so"
    tl_model = treelite.frontend.load_xgboost_model(str(model_dir / "model.json"))
    tl2cgen.export_lib(tl_model, toolchain="gcc", libpath=str(tl_lib), params={"parallel_comp": 2})
    tl_pred = tl2cgen.Predictor(str(tl_lib), nthread=1)

    results: dict[str, Any] = {
        "machine": {
            "arch": host_arch(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "model": {
            "data": data.summary()["path"],
            "trees": bundle.card["model"]["n_trees"],
            "max_depth": bundle.card["model"]["max_depth"],
            "features": len(spec),
            "cflags": bundle.card["model"]["cflags"],
        },
    }

    # --- single row -------------------------------------------------------------------
    single_row_us: dict[str, Any] = {}
    single_row_us["avsev_ctypes"] = time_each(model.predict, single_lists)
    single_row_us["xgboost_inplace_predict"] = time_each(
        lambda r: booster.inplace_predict(r.reshape(1, -1)), list(single)
    )
    single_row_us["tl2cgen_predictor"] = time_each(
        lambda r: tl_pred.predict(tl2cgen.DMatrix(r.reshape(1, -1), missing=np.nan)),
        list(single[:1000]),
    )
    onnx_error = None
    try:
        sess = onnx_session(model_dir / "model.json", len(spec))
        single_row_us["onnxruntime"] = time_each(
            lambda r: sess.run(None, {"input": r.reshape(1, -1)}), list(single)
        )
    except Exception as e:  # a bench-only contender: report why it is absent
        onnx_error = f"{type(e).__name__}: {e}"
        sess = None
    results["single_row_us"] = single_row_us
    ours = single_row_us["avsev_ctypes"]["median_us"]
    results["speedup_vs_xgboost_single_row"] = (
        single_row_us["xgboost_inplace_predict"]["median_us"] / ours
    )
    if "onnxruntime" in single_row_us:
        results["speedup_vs_onnxruntime_single_row"] = (
            single_row_us["onnxruntime"]["median_us"] / ours
        )
    else:
        results["onnxruntime_error"] = onnx_error

    # --- batch --------------------------------------------------------------------------
    import ctypes

    batch32 = np.ascontiguousarray(batch, dtype=np.float32)
    cbuf = (ctypes.c_float * batch32.size).from_buffer(batch32)
    batch_rows_per_s = {
        "avsev_ctypes": BATCH_ROWS / best_of(lambda: model.predict_buffer(cbuf, BATCH_ROWS)),
        "avsev_ctypes_from_python_lists": 20_000
        / best_of(lambda: model.predict_many(batch32[:20_000].tolist())),
        "xgboost_inplace_predict": BATCH_ROWS / best_of(lambda: booster.inplace_predict(batch32)),
        "tl2cgen_predictor": BATCH_ROWS
        / best_of(lambda: tl_pred.predict(tl2cgen.DMatrix(batch32, missing=np.nan))),
    }
    if sess is not None:
        batch_rows_per_s["onnxruntime"] = BATCH_ROWS / best_of(
            lambda: sess.run(None, {"input": batch32})
        )
    results["batch_rows_per_s"] = batch_rows_per_s

    # --- parity -------------------------------------------------------------------------
    expected = booster.inplace_predict(batch32[:20_000])
    got = np.frombuffer(model.predict_buffer(cbuf, 20_000), dtype=np.float32).reshape(20_000, -1)
    results["parity_max_abs_diff"] = float(np.abs(got - expected).max())

    # --- explain ------------------------------------------------------------------------
    explain_rows = single_lists[:500]
    pred_class = [int(np.argmax(model.predict(r))) for r in explain_rows]
    t0 = time.perf_counter()
    for r, c in zip(explain_rows, pred_class, strict=True):
        model.shap(r, only_class=c)
    results["explain_ms"] = (time.perf_counter() - t0) / len(explain_rows) * 1e3
    t0 = time.perf_counter()
    for r in explain_rows:
        model.shap(r)
    results["explain_all_classes_ms"] = (time.perf_counter() - t0) / len(explain_rows) * 1e3
    t0 = time.perf_counter()
    for r in single[:200]:
        booster.predict(xgb.DMatrix(r.reshape(1, -1), feature_names=spec.names), pred_contribs=True)
    results["explain_xgboost_ms"] = (time.perf_counter() - t0) / 200 * 1e3

    # --- cold start ---------------------------------------------------------------------
    row = json.dumps(single_lists[0]).replace("NaN", "float('nan')")
    results["cold_start_ms"] = {
        "avsev_ctypes": cold_start(
            f"from avsev.serving.bundle import load_bundle\n"
            f"b = load_bundle({str(bundle_dir)!r}, explain=False)\nb.model.predict({row})"
        ),
        "xgboost": cold_start(
            "import numpy as np, xgboost as xgb\nb = xgb.Booster()\n"
            f"b.load_model({str(model_dir / 'model.json')!r})\n"
            f"b.inplace_predict(np.array([{row}], dtype=np.float32))"
        ),
        "python_startup_excluded": True,
    }
    cs = results["cold_start_ms"]
    results["cold_start_ratio_xgboost_over_avsev"] = cs["xgboost"] / cs["avsev_ctypes"]

    # --- whole handlers -----------------------------------------------------------------
    results.update(handler_figures(bundle_dir, model_dir, data, spec))

    # --- batch scoring of a 100,000-row file -------------------------------------------
    results.update(batch_file_figures(bundle_dir, work))

    # --- sizes --------------------------------------------------------------------------
    results["bundle_bytes"] = dir_size(bundle_dir)
    results["installed_bytes"] = {
        "avsev_ctypes": dir_size(bundle_dir, ROOT / "layers/common/python/avsev/serving"),
        "xgboost": site_size("xgboost", "numpy", "scipy"),
        "tl2cgen_predictor": site_size("tl2cgen", "treelite", "numpy", "scipy"),
        "onnxruntime": site_size("onnxruntime", "numpy"),
    }

    Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def batch_file_figures(bundle_dir: Path, work: Path, rows: int = 100_000) -> dict[str, Any]:
    """End to end: an NTSB export file of 100,000 rows (the real rows repeated) → predictions
    file, in a fresh process, with its peak memory (Lambda batch function: ≤ 1 GB)."""
    from avsev.data import read_bytes

    source = read_bytes(DEFAULT_DATA) if DEFAULT_DATA.is_file() else None
    path = work / "batch_100k.csv"
    if source is not None:
        header, *lines = source.decode("latin-1").splitlines()
        body = [lines[i % len(lines)] for i in range(rows)]
        path.write_text("\n".join([header, *body]) + "\n", encoding="latin-1")
    else:
        from avsev.pipeline.synthetic import generate_frame

        generate_frame(rows).to_csv(path, index=False)
    code = (
        "import json, resource, time\n"
        "from pathlib import Path\n"
        "from avsev.batch import score_file\n"
        "from avsev.serving.bundle import load_bundle\n"
        f"b = load_bundle({str(bundle_dir)!r}, explain=False)\n"
        "t = time.perf_counter()\n"
        f"s = score_file(b, Path({str(path)!r}), Path({str(work / 'batch_out.csv')!r}), scored_at='now')\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'rows': s.rows_read, 'seconds': dt, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
    )
    return {
        "batch_file_rows": out["rows"],
        "batch_file_seconds": out["seconds"],
        "batch_file_rows_per_s": out["rows"] / out["seconds"],
        "batch_file_peak_mb": out["peak_mb"],
    }


def handler_figures(bundle_dir: Path, model_dir: Path, data: Any, spec: Any) -> dict[str, Any]:
    """The predict handler from REST event to response (warm), a batch of 1,000, and each
    function's cold start in a new process, beside the same handler on xgboost."""
    import contextlib
    import io

    from avsev.local.lambda_runtime import LocalContext, load_handler_module, proxy_event

    sys.path.insert(0, str(ROOT / "bench"))
    from xgboost_handler import xgboost_predict_function

    reports = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in data.reports()
    ]
    rng = np.random.default_rng(1)
    picks = [reports[i] for i in rng.choice(len(reports), 3000)]
    events = [proxy_event("POST", "/predict", r) for r in picks]
    batch_event = proxy_event("POST", "/predict/batch", {"reports": picks[:1000]})
    env = {"MODEL_BUNDLE_PATH": str(bundle_dir)}
    out: dict[str, Any] = {}
    ctx = LocalContext()
    sink = io.StringIO()
    for name, fn in (
        ("avsev", load_handler_module("predict", env)),
        ("xgboost", xgboost_predict_function(str(bundle_dir), str(model_dir / "model.json"))),
    ):
        with contextlib.redirect_stdout(sink):
            assert fn.handler(events[0], ctx)["statusCode"] == 200
            lat = time_each(lambda e, fn=fn: fn.handler(e, ctx), events)
            batch_s = best_of(lambda fn=fn: fn.handler(batch_event, ctx), repeat=5)
        sink.seek(0)
        sink.truncate()
        suffix = "" if name == "avsev" else "_xgboost"
        out[f"handler_p50_us{suffix}"] = lat["median_us"]
        out[f"handler_p99_us{suffix}"] = lat["p99_us"]
        out[f"batch_1000_ms{suffix}"] = batch_s * 1e3

    first = json.dumps(picks[0])
    cold = {}
    for name in ("predict", "explain", "outcomes"):
        route = {"predict": "/predict", "explain": "/predict/explain", "outcomes": "/outcomes"}[
            name
        ]
        body = (
            first if name != "outcomes" else json.dumps({"ev_id": "A1", "actual_severity": "Fatal"})
        )
        cold[name] = cold_start(
            "import contextlib, io, json, os\n"
            "from avsev.local.lambda_runtime import LocalContext, load_handler_module, proxy_event\n"
            f"fn = load_handler_module({name!r}, {env!r})\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    r = fn.handler(proxy_event('POST', {route!r}, json.loads({body!r})), LocalContext())\n"
            "assert r['statusCode'] == 200, r"
        )
    proc = [
        float(
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench/xgboost_handler.py"),
                    str(bundle_dir),
                    str(model_dir / "model.json"),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
        )
        for _ in range(5)
    ]
    cold["predict_on_xgboost"] = statistics.median(proc)
    out["function_cold_start_ms"] = cold
    return out


def print_table(r: dict[str, Any]) -> None:
    print(
        f"\nmodel: {r['model']['trees']} trees, depth {r['model']['max_depth']}, {r['model']['features']} features"
    )
    print(f"{'contender':32} {'single median µs':>17} {'p99 µs':>8} {'batch rows/s':>13}")
    for name, s in r["single_row_us"].items():
        print(
            f"{name:32} {s['median_us']:17.1f} {s['p99_us']:8.1f} {r['batch_rows_per_s'].get(name, 0):13,.0f}"
        )
    print(f"speed-up vs xgboost (single row): {r['speedup_vs_xgboost_single_row']:.1f}x")
    if "speedup_vs_onnxruntime_single_row" in r:
        print(
            f"speed-up vs onnxruntime (single row): {r['speedup_vs_onnxruntime_single_row']:.2f}x"
        )
    cs = r["cold_start_ms"]
    print(
        f"cold start ms: avsev {cs['avsev_ctypes']:.1f}, xgboost {cs['xgboost']:.1f} "
        f"(ratio {r['cold_start_ratio_xgboost_over_avsev']:.1f}x)"
    )
    print(
        f"explain ms/row: avsev {r['explain_ms']:.3f} (all classes {r['explain_all_classes_ms']:.3f}), "
        f"xgboost pred_contribs {r['explain_xgboost_ms']:.3f}"
    )
    print(
        f"bundle {r['bundle_bytes'] / 1e6:.2f} MB; parity max |diff| {r['parity_max_abs_diff']:.1e}"
    )
    print(
        f"predict handler warm: p50 {r['handler_p50_us']:.0f} µs, p99 {r['handler_p99_us']:.0f} µs "
        f"(on xgboost: p50 {r['handler_p50_us_xgboost']:.0f} µs); batch of 1,000: {r['batch_1000_ms']:.1f} ms "
        f"(on xgboost {r['batch_1000_ms_xgboost']:.1f} ms)"
    )
    print(
        f"batch file: {r['batch_file_rows']:,} rows in {r['batch_file_seconds']:.1f} s = "
        f"{r['batch_file_rows_per_s']:,.0f} rows/s end to end, peak memory {r['batch_file_peak_mb']:.0f} MB"
    )
    print(
        "function cold start ms: "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["function_cold_start_ms"].items())
    )
    for k, v in r["installed_bytes"].items():
        print(f"  installed {k}: {v / 1e6:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
