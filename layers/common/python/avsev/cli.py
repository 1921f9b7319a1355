"""The `avsev` command: train, evaluate, compare, build (and more as the system grows)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=1, default=str))


def _load_data(path: str | None, *, rows: int = 20_000, seed: int = 0) -> Any:
    from avsev.pipeline.data import load
    from avsev.pipeline.synthetic import generate

    return load(path) if path else generate(rows, seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    from avsev.pipeline.train import save, train

    data = _load_data(args.data, rows=args.synthetic_rows, seed=args.seed)
    params = json.loads(args.params) if args.params else None
    result = train(data, params=params, balanced=args.balanced, seed=args.seed, rounds=args.rounds)
    out = save(result, args.out)
    test = result.metrics["test"]
    base = test["baseline_majority"]
    print(f"trained on {data.summary()['path']}: {result.info['split']}", file=sys.stderr)
    print(
        f"{result.info['n_trees']} trees; test weighted F1 {test['weighted_f1']:.3f} "
        f"(majority baseline {base['weighted_f1']:.3f}), macro F1 {test['macro_f1']:.3f}, "
        f"log loss {test['log_loss']:.3f}; written to {out}",
        file=sys.stderr,
    )
    _print_json(result.metrics)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from avsev.pipeline.build import build_bundle

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
    from avsev.pipeline.data import load
    from avsev.pipeline.evaluate import evaluate

    _print_json(evaluate(args.bundle, load(args.data)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from avsev.pipeline.data import load
    from avsev.pipeline.evaluate import compare

    result = compare(args.a, args.b, load(args.data))
    _print_json(result)
    print(result["verdict"], file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avsev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("train", cmd_train, "train XGBoost on an NTSB export (synthetic data without --data)")
    p.add_argument("--data", help="NTSB export CSV (underscore or dotted columns)")
    p.add_argument("--out", required=True, help="directory for model.json and training.json")
    p.add_argument("--balanced", action="store_true", help="weight classes by inverse frequency")
    p.add_argument("--rounds", type=int, default=400, help="most boosting rounds (early stopping)")
    p.add_argument("--params", help="XGBoost parameters as JSON, over the defaults")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-rows", type=int, default=20_000)

    p = add("build", cmd_build, "compile a trained model into a versioned bundle")
    p.add_argument("--model", required=True, help="directory written by `avsev train`")
    p.add_argument("--version", required=True, help="semantic version X.Y.Z")
    p.add_argument("--arch", default="arm64", choices=["arm64", "x86_64"])
    p.add_argument("--out", default="layers/model/build")
    p.add_argument("--name", default="avsev-severity")
    p.add_argument(
        "--parallel-comp", type=int, default=2, help="C source files (compiled in parallel)"
    )

    p = add("evaluate", cmd_evaluate, "metrics of a bundle on a data file, as JSON")
    p.add_argument("--bundle", required=True)
    p.add_argument("--data", required=True)

    p = add("compare", cmd_compare, "two bundles on the same rows: metrics and McNemar's test")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--data", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from avsev.pipeline.build import BuildError
    from avsev.pipeline.compile import CompileError
    from avsev.pipeline.data import DataError
    from avsev.serving.bundle import BundleError

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (BuildError, CompileError, DataError, BundleError, FileNotFoundError) as e:
        print(f"avsev {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
