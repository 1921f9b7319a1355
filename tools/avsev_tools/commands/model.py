"""`avsev train|build|evaluate|compare`: the model, from a data file to a compiled bundle.

avsev train --out M [--data FILE]        # XGBoost (synthetic data without --data); metrics JSON
avsev build --model M --version X.Y.Z    # compile into a versioned bundle; prints its folder
avsev evaluate --bundle B --data FILE    # a bundle's metrics on a file, as JSON
avsev compare --a B1 --b B2 --data FILE  # two bundles on the same rows, McNemar's test
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from avsev_tools.commands._shared import Subcommands, add, print_json


def _load_data(path: str | None, *, rows: int = 20_000, seed: int = 0) -> Any:
    from avsev.data import load

    from avsev_tools.pipeline.synthetic import generate

    return load(path) if path else generate(rows, seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    from avsev_tools.pipeline.train import save, train

    data = _load_data(args.data, rows=args.synthetic_rows, seed=args.seed)
    params = json.loads(args.params) if args.params else None
    result = train(data, params=params, balanced=args.balanced, seed=args.seed, rounds=args.rounds)
    out = save(result, args.out)
    from avsev_tools.pipeline.evaluate import summary_lines

    info = result.info
    test = result.metrics["test"]
    base = test["baseline_majority"]
    aug = info["augmentation"]
    print(f"trained on {data.summary()['path']}: {info['split']}", file=sys.stderr)
    print(
        f"{info['n_trees']} trees, blank-field augmentation rate {aug['rate']} (chosen on "
        f"validation); shipped: refit on {info['refit']['on']} ({info['refit']['rows']} rows); "
        f"test weighted F1 {test['weighted_f1']:.3f} (majority baseline "
        f"{base['weighted_f1']:.3f}); written to {out}",
        file=sys.stderr,
    )
    print("held-out test rows:", file=sys.stderr)
    for line in summary_lines(test, info["calibration"]):
        print("  " + line, file=sys.stderr)
    blank = result.metrics["test_top_field_blank"]
    print(
        f"  with {blank['field']} blanked in {blank['share']:.0%} of them: log loss "
        f"{blank['log_loss']:.4f}, gain over prior {blank['gain_over_prior']:.1%}",
        file=sys.stderr,
    )
    print_json(result.metrics)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from avsev_tools.pipeline.build import build_bundle

    path = build_bundle(
        args.model,
        args.version,
        out_root=args.out,
        arch=args.arch,
        name=args.name,
        parallel_comp=args.parallel_comp,
    )
    print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from avsev.data import load

    from avsev_tools.pipeline.evaluate import evaluate, summary_lines

    result = evaluate(args.bundle, load(args.data))
    print(f"{result['bundle']} on {args.data}", file=sys.stderr)
    for line in summary_lines(result["metrics"], result["calibration"]):
        print("  " + line, file=sys.stderr)
    print_json(result)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from avsev.data import load

    from avsev_tools.pipeline.evaluate import compare

    result = compare(args.a, args.b, load(args.data))
    print_json(result)
    print(result["verdict"], file=sys.stderr)
    return 0


def register(sub: Subcommands) -> None:
    p = add(
        sub, "train", cmd_train, "train XGBoost on an NTSB export (synthetic data without --data)"
    )
    p.add_argument("--data", help="NTSB export CSV (underscore or dotted columns)")
    p.add_argument("--out", required=True, help="directory for model.json and training.json")
    p.add_argument("--balanced", action="store_true", help="weight classes by inverse frequency")
    p.add_argument("--rounds", type=int, default=400, help="most boosting rounds (early stopping)")
    p.add_argument("--params", help="XGBoost parameters as JSON, over the defaults")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-rows", type=int, default=20_000)

    p = add(sub, "build", cmd_build, "compile a trained model into a versioned bundle")
    p.add_argument("--model", required=True, help="directory written by `avsev train`")
    p.add_argument("--version", required=True, help="semantic version X.Y.Z")
    p.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"])
    p.add_argument("--out", default="layers/model/build")
    p.add_argument("--name", default="avsev-severity")
    p.add_argument(
        "--parallel-comp", type=int, default=2, help="C source files (compiled in parallel)"
    )

    p = add(sub, "evaluate", cmd_evaluate, "metrics of a bundle on a data file, as JSON")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True)

    p = add(sub, "compare", cmd_compare, "two bundles on the same rows: metrics and McNemar's test")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--data", required=True)
