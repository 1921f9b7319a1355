"""`avsev cost`: what a prediction costs (the model of it is `avsev_tools.cost`).

avsev cost --template T.json             # or --bundle B to synthesize the app first
avsev cost --bundle B -c api=http        # a context of the app (cdk's -c), as deployed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avsev_tools.commands._shared import Subcommands, add


def _cost_default(name: str) -> Path:
    from avsev_tools import cost

    return Path(getattr(cost, name))


def cmd_cost(args: argparse.Namespace) -> int:
    """What a prediction costs, from the template's settings, the measured inputs and prices."""
    from avsev_tools import cost

    if args.template:
        path = Path(args.template)
    else:
        from avsev_tools.local.synth import SynthError, synthesize

        if not args.bundle:
            print("avsev cost: error: give --template, or --bundle to synthesize", file=sys.stderr)
            return 2
        context = {}
        for item in args.context:
            key, sep, value = item.partition("=")
            if not sep or not key:
                print(f"avsev cost: error: -c {item!r}: give key=value", file=sys.stderr)
                return 2
            context[key] = value
        try:
            synth = synthesize(args.bundle, stage=args.stage, arch=args.arch, context=context)
        except SynthError as e:
            print(f"avsev cost: error: {e}", file=sys.stderr)
            return 2
        path = synth.folder / f"{synth.stack}.template.json"
    try:
        template = json.loads(path.read_text())
        inputs = cost.load_inputs(Path(args.inputs))
        prices = cost.load_prices(Path(args.prices))
        estimate = cost.estimate(template, inputs, prices)
    except (OSError, ValueError, KeyError) as e:
        print(f"avsev cost: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(cost.render(estimate))
    return 0


def register(sub: Subcommands) -> None:
    p = add(
        sub,
        "cost",
        cmd_cost,
        "cost per million predictions and per month, by service, and where a provisioned "
        "alternative costs less",
    )
    p.add_argument("--template", help="a synthesized template (default: synthesize with --bundle)")
    p.add_argument("--bundle", help="model bundle to synthesize the app with (without --template)")
    p.add_argument("--stage", default="prod")
    p.add_argument("--arch", default="arm64", help="with --bundle: the architecture to deploy")
    p.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --bundle: a context of the app, as `cdk synth -c` (api=http, tracing=...)",
    )
    p.add_argument("--inputs", default=str(_cost_default("INPUTS")), help="bench/cost.py's output")
    p.add_argument("--prices", default=str(_cost_default("PRICES")), help="the dated price table")
