#!/usr/bin/env python
"""Throughput of the reference Vlasov stepper (phase-space cell updates per second) as JSON.

The same benchmark as ``faiser bench stepper``::

    python benchmarks/bench_stepper.py --out bench_stepper.json [--set KEY=VALUE ...]

Keys: ``cases`` (comma-separated subset of landau_1d1v, magnetized_1d3v, 2d3v), ``repeats``,
``steps``, ``warmup``, ``dtype`` (float32/float64), ``loop`` (step/multi_step), ``scale`` and
``nv_scale`` (factors on the spatial and velocity cells per axis, for quick runs), ``devices``
(device counts to run domain-decomposed, e.g. 1,2,4; see bench_scaling.py).
See :func:`faiser.bench.bench_stepper`.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from faiser.bench import SETTING_HELP, bench_stepper
    from faiser.config import parse_overrides
    from faiser.errors import FaiserError

    keys = "; ".join(f"{k}: {h}" for k, h in SETTING_HELP.items())
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_stepper.json", help="output JSON file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override a setting ({keys})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        bench_stepper(args.out, parse_overrides(args.set), progress=not args.quiet)
    except FaiserError as e:
        print(f"bench_stepper: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
