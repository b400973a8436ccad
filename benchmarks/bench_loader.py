#!/usr/bin/env python
"""Throughput of the training loaders (samples/s and MB/s from the store to the device) as JSON.

The same benchmark as ``faiser bench loader``::

    python benchmarks/bench_loader.py --out bench_loader.json [--set KEY=VALUE ...]

Keys: ``data`` (dataset paths, comma-separated; default: a synthetic 1D3V dataset of ``nx`` cells,
``nv^3`` VDFs and ``snapshots`` snapshots in a temporary directory), ``batch``, ``patch_batch``,
``batches``, ``repeats``, ``prefetch``, ``patch``, ``window``, ``stride``, ``cache_mb``, ``step_ms``,
``read_workers``.
See :func:`faiser.bench.bench_loader`.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from faiser.bench import LOADER_SETTING_HELP, bench_loader
    from faiser.config import parse_overrides
    from faiser.errors import FaiserError

    keys = "; ".join(f"{k}: {h}" for k, h in LOADER_SETTING_HELP.items())
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench_loader.json", help="output JSON file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"override a setting ({keys})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        bench_loader(args.out, parse_overrides(args.set), progress=not args.quiet)
    except FaiserError as e:
        print(f"bench_loader: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
