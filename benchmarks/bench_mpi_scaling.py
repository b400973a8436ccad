#!/usr/bin/env python
"""Scaling of the MPI-decomposed reference stepper over ranks (weak or strong), as JSON.

    python benchmarks/bench_mpi_scaling.py --ranks 1,2 --out mpi_scaling.json [--weak] [--set KEY=VALUE ...]

For every rank count this launches ``mpirun -n R`` on itself in worker mode: each rank builds a
``faiser bench stepper`` case (:data:`faiser.bench.stepper.STEPPER_CASES`), cuts its block
(:class:`faiser.parallel.mpi.MpiStepper`), compiles a chunk of ``steps`` steps and times
``repeats`` (>= 5) chunks; a chunk's time is the slowest rank's. With ``--weak`` the grid's x axis grows
with the rank count (the same cells per rank), otherwise one grid is split over every count.

Unlike fake CPU devices, MPI ranks are separate processes: pin each to its own core(s) (here XLA
runs one thread per rank, ``--xla_cpu_multi_thread_eigen=false``, for every count, so one rank is
one core) and the figures are a real parallel speed-up or weak-scaling efficiency on a CPU host.
Output per case: per rank count the median (min, max) time per step, cells per rank and, against the
smallest count, the speed-up and efficiency (strong) or ``weak_efficiency`` (time per step of the
smallest count over this count's; 1 = perfect).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker(case_names: list[str], overrides: dict, stretch_with_ranks: bool) -> None:
    """One rank of an ``mpirun`` launch: time every case, print the JSON on rank 0."""
    import jax
    import numpy as np
    from mpi4py import MPI

    from faiser.bench.common import summarize
    from faiser.bench.stepper import STEPPER_CASES, build_stepper, resolve_settings
    from faiser.parallel.mpi import MpiStepper

    comm = MPI.COMM_WORLD
    ranks, rank = comm.Get_size(), comm.Get_rank()
    settings = resolve_settings(overrides).effective()
    out = {}
    for name in case_names:
        with jax.default_device(jax.devices("cpu")[0]):
            stepper, state, dt = build_stepper(STEPPER_CASES[name], settings, ranks if stretch_with_ranks else 1)
        ms = MpiStepper(stepper, field_solve=settings.field_solve)
        block = ms.shard(state)
        del state
        n = settings.steps
        fn = jax.jit(lambda s, ms=ms, n=n: ms.multi_step(s, n))
        t0 = time.perf_counter()
        fn.lower(block).compile()
        compile_s = time.perf_counter() - t0
        for _ in range(settings.warmup):
            block = jax.block_until_ready(fn(block))
        times = []
        for _ in range(settings.repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            block = jax.block_until_ready(fn(block))
            local = np.array([time.perf_counter() - t0])
            slowest = np.empty(1)
            comm.Allreduce(local, slowest, op=MPI.MAX)
            times.append(float(slowest[0]) / n)
        finite = np.array([np.all(np.isfinite(np.asarray(block.f[0])))], np.int32)
        all_finite = np.empty(1, np.int32)
        comm.Allreduce(finite, all_finite, op=MPI.MIN)  # buffers, not pickles
        out[name] = {
            "ranks": ranks,
            "blocks": list(ms.blocks),
            "field_solve": settings.field_solve,
            "grid_shape": list(stepper.grid.shape),
            "num_cells": stepper.grid.num_cells,
            "cells_per_rank": stepper.grid.num_cells // ranks,
            "dt": dt,
            "steps": n,
            "step_s": times,
            "median_step_s": statistics.median(times),
            "min_step_s": min(times),
            "max_step_s": max(times),
            "step_time": summarize(times),
            "compile_s": compile_s,
            "finite": bool(all_finite[0]),
        }
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _efficiencies(rows: list[dict], weak: bool) -> None:
    base = rows[0]
    for r in rows:
        t = r["median_step_s"]
        r["cell_updates_per_s"] = r["num_cells"] / t
        if weak:
            r["weak_efficiency"] = base["median_step_s"] / t
        else:
            r["speedup"] = base["median_step_s"] / t
            r["efficiency"] = base["median_step_s"] * base["ranks"] / (t * r["ranks"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default: %(default)s)")
    p.add_argument("--cases", default="landau_1d1v,hybrid_1d3v", help="bench stepper cases (default: %(default)s)")
    p.add_argument("--weak", action="store_true", help="weak scaling: the grid's x axis grows with the ranks")
    p.add_argument("--out", default="bench_mpi_scaling.json", help="output JSON file (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="bench stepper settings")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per mpirun launch (default: %(default)s)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    from faiser.bench.stepper import resolve_settings
    from faiser.config import parse_overrides
    from faiser.errors import FaiserError

    overrides = parse_overrides(args.set)
    cases = [c for c in args.cases.split(",") if c.strip()]
    try:
        settings = resolve_settings({**overrides, "cases": cases}).effective()
    except FaiserError as e:
        print(f"bench_mpi_scaling: error: {e}", file=sys.stderr)
        return 2
    if args.worker:
        worker(cases, overrides, args.weak)
        return 0
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        print("bench_mpi_scaling: error: mpirun not found (install OpenMPI)", file=sys.stderr)
        return 2
    env = dict(os.environ, XLA_FLAGS=THREAD_FLAGS, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    from faiser.bench.env import environment

    machine = environment()
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    counts = [int(x) for x in args.ranks.split(",") if x.strip()]
    for r in counts:
        cmd = [mpirun, "-n", str(r), "--oversubscribe", "--bind-to", "core", sys.executable, __file__, "--worker"]
        cmd += ["--cases", ",".join(cases), *(["--weak"] if args.weak else [])]
        cmd += [x for kv in args.set for x in ("--set", kv)]
        print(f"bench_mpi_scaling: {r} rank(s) ...", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
        if res.returncode != 0 or not lines:
            print(f"bench_mpi_scaling: error: the {r}-rank run failed:\n{res.stderr[-2000:]}", file=sys.stderr)
            return 2
        for name, row in json.loads(lines[-1][len("RESULT ") :]).items():
            runs[name].append(row)
    for rows in runs.values():
        _efficiencies(rows, args.weak)

    from faiser.bench.common import document, write_json
    from faiser.bench.env import finish

    report = document(
        "mpi_scaling", settings, finish(machine), mode="weak" if args.weak else "strong", ranks=counts,
        xla_flags=THREAD_FLAGS, cases=runs,
    )  # fmt: skip
    write_json(args.out, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
