#!/usr/bin/env python
"""Scaling of the domain-decomposed reference stepper over devices, as JSON.

    python benchmarks/bench_scaling.py --devices 1,2,4 --out scaling.json [--weak] [--set KEY=VALUE ...]

Runs ``faiser bench stepper`` with ``devices=...``: every case once per device count, each with
the grid split over that many devices (:class:`faiser.parallel.domain.DomainStepper`), and prints
steps/s, cell updates/s, speed-up, efficiency and the decomposition overhead against one device
(``cases[name]["scaling"]``). On a CPU the devices are simulated: this script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=<max devices>`` before jax is imported, so the
fake devices share the machine's cores and the figures measure the decomposition's overhead rather
than a speed-up. Default cases: landau_1d1v, 2d3v, hybrid_1d3v. ``--weak`` measures weak scaling
instead: the grid's x axis grows with the device count (same cells per device) and each case gets
``cases[name]["weak_scaling"]`` (weak-scaling efficiency, cost per cell against the smallest count).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4", help="comma-separated device counts (default: %(default)s)")
    p.add_argument("--out", default="bench_scaling.json", help="output JSON file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="bench stepper settings")
    p.add_argument("--weak", action="store_true", help="weak scaling: the grid grows with the device count")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.devices.split(",") if c.strip()]
    flag = "--xla_force_host_platform_device_count"
    if flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {flag}={max(counts)}").strip()

    from faiser.bench import bench_stepper
    from faiser.config import parse_overrides
    from faiser.errors import FaiserError

    overrides = {"cases": "landau_1d1v,2d3v,hybrid_1d3v", **parse_overrides(args.set), "devices": args.devices}
    if args.weak:
        overrides["weak"] = 1
    try:
        bench_stepper(args.out, overrides, progress=not args.quiet)
    except FaiserError as e:
        print(f"bench_scaling: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
