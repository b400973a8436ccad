"""The ``faiser`` command line: parses, builds a config, calls one public function.

Bad input exits with status 2 and one line on stderr (see DESIGN.md, command-line contract).
"""

from __future__ import annotations

import argparse
import os
import sys

from faiser.errors import FaiserError

CONTRACT_ONLY = {
    "checkpoint_every": "--checkpoint-every",
    "resume": "--resume",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        print(f"faiser: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faiser", description="Vlasov simulation, VDF compression and latent solvers in JAX")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("simulate", help="run a reference simulation of a named case")
    s.add_argument(
        "case", help="landau, two_stream, bump_on_tail, free_streaming, larmor, exb, alfven, shock, khi"
    )
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--config", help="JSON config file (keys as for --set)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--save-every", type=int)
    s.add_argument("--vlsv-every", type=int)
    s.add_argument("--checkpoint-every", type=int)
    s.add_argument("--resume", action="store_true")
    s.add_argument("--devices", type=int, default=None)
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("sweep", help="generate a family of datasets from a sweep file (experiments/sweeps/)")
    w.add_argument("file", help="sweep JSON file")
    w.add_argument("--out", required=True, help="root directory; one sub-directory per run")
    w.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    w.add_argument("--quiet", action="store_true", help="no progress bars")

    i = sub.add_parser("inspect", help="describe a Vlasiator VLSV file")
    i.add_argument("file", help="a .vlsv file")
    i.add_argument("--json", action="store_true", help="print the contract's JSON object")

    b = sub.add_parser("bench", help="benchmarks that print JSON")
    b.add_argument("what", choices=["stepper", "codecs", "latent", "loader"])
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--out", required=True, help="output JSON file")
    return p


def _simulate(args) -> int:
    from faiser.config import parse_overrides
    from faiser.errors import ConfigError
    from faiser.simulation import simulate

    for key, what in CONTRACT_ONLY.items():
        if getattr(args, key):
            raise ConfigError(f"{what} is not available yet in this version of faiser")
    if args.devices not in (None, 1):
        raise ConfigError("--devices > 1 is not available yet in this version of faiser")
    res = simulate(
        args.case, parse_overrides(args.set), args.out, args.config, progress=not args.quiet,
        save_every=args.save_every, vlsv_every=args.vlsv_every,
    )  # fmt: skip
    t = res.timing
    print(
        f"{args.case}: {t['steps']} steps to t={t['simulated_time']:g} in {t['wall_s']:.2f} s "
        f"(+{t['compile_s']:.1f} s compile); outputs in {args.out}"
    )
    return 0


def _sweep(args) -> int:
    from faiser.sweep import run_sweep

    index = run_sweep(args.file, args.out, progress=not args.quiet, dry_run=args.dry_run)
    for e in index:
        print(f"{e['status']:8s} {e['name']}")
    return 0


def _inspect(args) -> int:
    import json

    from faiser.data.vlsv import format_inspection, inspect_file

    info = inspect_file(args.file)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


def _bench(args) -> int:
    from faiser.config import parse_overrides
    from faiser.errors import ConfigError

    if args.what == "loader":
        from faiser.bench import bench_loader

        bench_loader(args.out, parse_overrides(args.set))
        return 0
    if args.what != "stepper":
        raise ConfigError(f"bench {args.what} is not available yet in this version of faiser")
    from faiser.bench import bench_stepper

    bench_stepper(args.out, parse_overrides(args.set))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "bench":
            return _bench(args)
    except FaiserError as e:
        print(f"faiser: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `faiser inspect --json FILE | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silence the flush at exit)
        return 0
    except KeyboardInterrupt:
        print("faiser: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
