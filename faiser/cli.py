"""The ``faiser`` command line: one table of subcommands, each an argument setup and a handler.

A handler parses, builds a config, calls one public function and prints one summary line.
``--set`` carries config keys only (a case's, a codec's, a training config's, a benchmark's); data
selection and run-time switches are named flags (``--snapshot``, ``--population``, ``--max-vdfs``,
``--seed``, ``--checkpoint-every``, ``--mass``, ``--propagator``), and a ``--set`` of one of them
exits 2 with a line naming the flag.

Bad input exits with status 2 and one line on stderr (see DESIGN.md, command-line contract): every
:class:`~faiser.errors.FaiserError`, a failed allocation, and an ``OSError`` that reaches the top.
Warnings raised while a command runs are held back and shown only when it succeeds, so that bad
input never prints a warning (with its source line) before the error line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Callable

from faiser.errors import CodecError, ConfigError, FaiserError, is_out_of_memory, out_of_memory_error


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        print(f"faiser: error: {message}", file=sys.stderr)
        raise SystemExit(2)


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its help line, the function adding its arguments and its handler (-> exit status)."""

    help: str
    setup: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- shared arguments and helpers ------------------------------------------------------------------
def _set(p, help="config key (repeatable)") -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _quiet(p, help="no progress bar") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _overrides(args, flags: dict[str, str] | None = None, allowed: set[str] | frozenset = frozenset()) -> dict:
    """``--set`` items as a dict; a key that is a named flag of this command (and not in ``allowed``)
    raises :class:`ConfigError` naming the flag."""
    from faiser.config import parse_overrides

    over = parse_overrides(args.set)
    for key, flag in (flags or {}).items():
        if key in over and key not in allowed:
            raise ConfigError(f"--set {key}=... is not a config key of faiser {args.command}: use {flag}")
    return over


def _run_summary(case: str, t: dict, out, ranks: bool = False) -> str:
    """The one line ``simulate`` prints: steps, time, wall and compile seconds, resume, a shortened dt."""
    on = f" on {t['devices']} MPI ranks" if ranks else ""
    resumed = f" (resumed at step {t['resumed_from_step']})" if t.get("resumed_from_step") is not None else ""
    dt = ""
    if t.get("dt_requested") and t["dt"] < t["dt_requested"] * (1 - 1e-12):
        dt = f"; dt={t['dt']:.6g} (dt={t['dt_requested']:g} shortened to end at t_end)"
    return (
        f"{case}: {t['steps']} steps to t={t['simulated_time']:g}{on} in {t['wall_s']:.2f} s "
        f"(+{t['compile_s']:.1f} s compile){resumed}{dt}; outputs in {out}"
    )


# ---- simulate ------------------------------------------------------------------------------------
SIMULATE_FLAGS = {
    "save_every": "--save-every N", "vlsv_every": "--vlsv-every N", "checkpoint_every": "--checkpoint-every N",
    "resume": "--resume", "devices": "--devices N", "distributed": "--distributed mpi",
}  # fmt: skip


def _simulate_args(s) -> None:
    s.add_argument("case", help="landau, two_stream, bump_on_tail, free_streaming, larmor, exb, alfven, shock, khi")
    _set(s, "override a case config key (repeatable)")
    s.add_argument("--config", help="JSON config file (keys as for --set)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--save-every", type=int, metavar="N", help="zarr dataset snapshot every N steps")
    s.add_argument("--vlsv-every", type=int, metavar="N", help="VLSV file every N steps")
    s.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint the full state every N steps")
    s.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    s.add_argument("--devices", type=int, default=None, help="split the domain over N devices (shard_map)")
    s.add_argument(
        "--distributed", choices=["none", "mpi"], default="none",
        help="mpi: one domain block per rank of an mpirun launch (rank 0 writes the outputs)",
    )  # fmt: skip
    _quiet(s)


def _simulate(args) -> int:
    from faiser.run.simulate import simulate

    over = _overrides(args, SIMULATE_FLAGS)
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices must be >= 1, got {args.devices}")
    if args.distributed == "mpi":
        return _simulate_mpi(args, over)
    res = simulate(
        args.case, over, args.out, args.config, progress=not args.quiet,
        save_every=args.save_every, vlsv_every=args.vlsv_every,
        checkpoint_every=args.checkpoint_every, resume=args.resume, devices=args.devices,
    )  # fmt: skip
    print(_run_summary(args.case, res.timing, args.out))
    return 0


def _simulate_mpi(args, over: dict) -> int:
    """``simulate --distributed mpi``: every rank steps its block; rank 0 writes the outputs."""
    from faiser.parallel.mpi import abort_on_error, world
    from faiser.run.simulate import simulate

    comm = world()
    root = comm.Get_rank() == 0
    with abort_on_error(comm):
        res = simulate(
            args.case, over, args.out, args.config,
            progress=root and not args.quiet, save_every=args.save_every, vlsv_every=args.vlsv_every,
            checkpoint_every=args.checkpoint_every, resume=args.resume, devices=args.devices, distributed="mpi",
        )  # fmt: skip
    if root:
        print(_run_summary(args.case, res.timing, args.out, ranks=True))
    return 0


# ---- sweep, inspect, report ------------------------------------------------------------------------
def _sweep_args(w) -> None:
    w.add_argument("file", help="sweep JSON file")
    w.add_argument("--out", required=True, help="root directory; one sub-directory per run")
    w.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    _quiet(w, "no progress bars")


def _sweep(args) -> int:
    from faiser.run.sweep import run_sweep

    index = run_sweep(args.file, args.out, progress=not args.quiet, dry_run=args.dry_run)
    for e in index:
        print(f"{e['status']:8s} {e['name']}")
    return 0


def _inspect_args(i) -> None:
    i.add_argument("file", help="a .vlsv file")
    i.add_argument("--json", action="store_true", help="print the contract's JSON object")


def _inspect(args) -> int:
    import json

    from faiser.data.vlsv import format_inspection, inspect_file

    info = inspect_file(args.file)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 0


def _report_args(r) -> None:
    r.add_argument("dir", help="directory written by demo.sh (reference runs, codecs/, latent/)")


def _report(args) -> int:
    from faiser.report import write_report

    print(f"report: {write_report(args.dir)}")
    return 0


# ---- codecs ----------------------------------------------------------------------------------------
def _codec_args(p, what: str) -> None:
    p.add_argument("--codec", required=True, help="sparse, maxwellian, zfp, sz3, pca, mlp, vqvae")
    p.add_argument("--population", metavar="NAME", help=f"the species / VLSV population to {what}")


def _train_codec_args(t) -> None:
    _codec_args(t, "train on (default: each input's first)")
    t.add_argument("--data", required=True, nargs="+", help="datasets / run directories / VLSV files")
    t.add_argument("--out", required=True, help="model directory")
    _set(t, "codec setting (repeatable)")
    t.add_argument("--max-vdfs", type=_nonneg_int, metavar="N", help="train on a random subset of N VDFs")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the --max-vdfs subset (default 0)")
    t.add_argument("--checkpoint-every", type=_nonneg_int, metavar="N", help="checkpoint the training every N steps")
    t.add_argument("--resume", action="store_true", help="continue from the newest training checkpoint in --out")
    t.add_argument(
        "--distributed", choices=["none", "mpi"], default="none",
        help="mpi (pca): each rank of an mpirun launch reads its spatial block; --set merge=NAME combines them",
    )  # fmt: skip
    _quiet(t)


def _train_codec(args) -> int:
    from faiser.codecs import commands
    from faiser.config import parse_overrides

    overrides = parse_overrides(args.set)
    if args.distributed == "mpi":
        return _train_codec_mpi(args, overrides)
    if "merge" in overrides:
        raise CodecError("--set merge=... chooses how MPI ranks combine their data: add --distributed mpi")
    info = commands.train_codec(
        args.codec, args.data, args.out, overrides, not args.quiet, resume=args.resume,
        max_vdfs=args.max_vdfs, seed=args.seed, population=args.population, checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    print(
        f"{info['codec']} model {info['model_id']} ({info['model_bytes']} bytes, {info['n_train_vdfs']} "
        f"training VDFs) in {info['model_dir']}"
    )
    return 0


def _train_codec_mpi(args, overrides: dict) -> int:
    from faiser.codecs import commands
    from faiser.parallel.mpi import abort_on_error, world

    for flag, value in (("--max-vdfs", args.max_vdfs), ("--checkpoint-every", args.checkpoint_every),
                        ("--resume", args.resume or None)):  # fmt: skip
        if value is not None:
            raise CodecError(f"{flag} is not available with --distributed mpi (each rank reads its whole block)")
    comm = world()
    with abort_on_error(comm):
        info = commands.train_codec_distributed(args.codec, args.data, args.out, overrides, not args.quiet,
                                                population=args.population, seed=args.seed)  # fmt: skip
    if info is not None:
        d = info["distributed"]
        print(
            f"{info['codec']} model {info['model_id']} ({info['model_bytes']} bytes, {info['n_train_vdfs']} training "
            f"VDFs over {d['ranks']} ranks, merge {d['merge']}: {d['bytes_per_rank_max']} bytes sent per rank at "
            f"most) in {info['model_dir']}"
        )
    return 0


def _compress_args(c) -> None:
    c.add_argument("input", help="a .vlsv file or a faiser dataset (run directory)")
    _codec_args(c, "compress (default: every one)")
    c.add_argument("--model", help="model directory of a trained codec (faiser train-codec)")
    _set(c, "codec setting (repeatable)")
    c.add_argument("--snapshot", type=int, default=-1, metavar="I", help="dataset snapshot to compress (default -1)")
    c.add_argument("--out", required=True, help="compressed file")
    _quiet(c)


def _compress(args) -> int:
    from faiser.codecs import commands
    from faiser.config import parse_overrides

    rep = commands.compress(
        args.codec, args.input, args.out, args.model, parse_overrides(args.set), not args.quiet,
        snapshot=args.snapshot, population=args.population,
    )  # fmt: skip
    print(commands.summary(rep))
    return 0


def _decompress_args(d) -> None:
    d.add_argument("file", help="file written by faiser compress")
    d.add_argument("--model", help="model directory of a trained codec")
    d.add_argument("--out", required=True, help="output .vlsv file")
    _quiet(d)


def _decompress(args) -> int:
    from faiser.codecs import commands

    rep = commands.decompress(args.file, args.out, args.model, not args.quiet)
    print(f"{rep['file']}: {rep['n_vdfs']} VDFs decoded with {rep['codec']} in {rep['wall_s']:.2f} s")
    return 0


# ---- latent solver ---------------------------------------------------------------------------------
def _train_latent_args(tl) -> None:
    tl.add_argument("--data", required=True, nargs="+", help="run directories / datasets / sweep roots of one case")
    tl.add_argument("--out", required=True, help="model directory")
    _set(tl, "LatentTrainConfig key (repeatable)")
    tl.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out/checkpoints")
    _quiet(tl, "no progress bars")


def _train_latent(args) -> int:
    from faiser.config import apply_overrides, parse_overrides
    from faiser.latent.train import LatentTrainConfig, train_latent_files
    from faiser.run.outputs import prepare_run_dir, run_dir_lock

    cfg = apply_overrides(LatentTrainConfig(), parse_overrides(args.set))
    with run_dir_lock(prepare_run_dir(args.out, "model directory")):
        m = train_latent_files(args.data, args.out, cfg, progress=not args.quiet, resume=args.resume)
    h = m.meta["history"]
    print(
        f"latent model for {m.meta['case']} ({len(m.meta['runs'])} runs, D={m.steps_per_latent} steps per latent "
        f"step): VQ-VAE loss {h['vqvae'].get('loss', [0, 0])[-1]:.4g}, propagator loss "
        f"{h['propagator'].get('loss', [0, 0])[-1]:.4g}; in {args.out}"
    )
    return 0


ROLLOUT_FLAGS = {"mass": "--mass conserve|decoded|auto", "propagator": "--propagator trained|persistence"}


def _rollout_args(r) -> None:
    r.add_argument("case", help="the case the model was trained on (e.g. shock)")
    r.add_argument("--model", required=True, help="model directory (faiser train-latent)")
    _set(r, "case config key (repeatable)")
    r.add_argument("--config", help="JSON config file (keys as for --set)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--save-every", type=int, metavar="N")
    r.add_argument("--vlsv-every", type=int, metavar="N")
    r.add_argument(
        "--mass", choices=["auto", "conserve", "decoded"], default="auto",
        help="rescale decoded f to the initial mass (conserve), keep it (decoded), or by case (auto: conserve "
        "for closed periodic cases)",
    )  # fmt: skip
    r.add_argument(
        "--propagator", choices=["trained", "persistence"], default="trained",
        help="the trained latent propagator, or persistence (latent state held constant: a baseline)",
    )  # fmt: skip
    _quiet(r)


def _rollout(args) -> int:
    from faiser.latent.rollout import rollout
    from faiser.run.outputs import prepare_run_dir, run_dir_lock

    over = _overrides(args, {**ROLLOUT_FLAGS, **{k: v for k, v in SIMULATE_FLAGS.items() if "every" in k}})
    with run_dir_lock(prepare_run_dir(args.out)):
        res = rollout(args.model, args.case, over, args.out, args.config, progress=not args.quiet,
                      save_every=args.save_every, vlsv_every=args.vlsv_every, mass=args.mass,
                      propagator=args.propagator)  # fmt: skip
    t = res.timing
    print(
        f"{args.case}: {t['latent_steps']} latent steps ({t['steps']} reference steps) to t={t['simulated_time']:g} "
        f"in {t['wall_s']:.3f} s (+{t['compile_s']:.1f} s compile); outputs in {args.out}"
    )
    return 0


# ---- bench -----------------------------------------------------------------------------------------
def _bench_args(b) -> None:
    b.add_argument("what", choices=["stepper", "codecs", "latent", "loader"])
    _set(b, "benchmark setting (repeatable)")
    b.add_argument("--out", required=True, help="output JSON file")


def _bench(args) -> int:
    from faiser.config import parse_overrides
    from faiser.run.outputs import prepare_output_file

    over = parse_overrides(args.set)
    prepare_output_file(args.out, "benchmark file")
    if args.what == "codecs":
        from faiser.bench import bench_codecs

        doc = bench_codecs(args.out, over)
        print(f"bench codecs: {len(doc['results'])} results over {len(doc['sets'])} VDF sets in {args.out}")
    elif args.what == "loader":
        from faiser.bench import bench_loader

        bench_loader(args.out, over)
    elif args.what == "latent":
        from faiser.bench import bench_latent

        doc = bench_latent(args.out, over)
        print(f"bench latent: {len(doc['results'])} results over {len(doc['families'])} families in {args.out}")
    else:
        from faiser.bench import bench_stepper

        bench_stepper(args.out, over)
    return 0


COMMANDS: dict[str, Command] = {
    "simulate": Command("run a reference simulation of a named case", _simulate_args, _simulate),
    "sweep": Command("generate a family of datasets from a sweep file (experiments/sweeps/)", _sweep_args, _sweep),
    "inspect": Command("describe a Vlasiator VLSV file", _inspect_args, _inspect),
    "train-codec": Command("fit a VDF codec (pca, mlp, vqvae) on datasets or VLSV files", _train_codec_args,
                           _train_codec),
    "compress": Command("compress the VDFs of a VLSV file or dataset snapshot", _compress_args, _compress),
    "decompress": Command("decode a compressed file into a VLSV file", _decompress_args, _decompress),
    "train-latent": Command("train the latent solver (6D VQ-VAE + propagator) on trajectory datasets",
                            _train_latent_args, _train_latent),
    "rollout": Command("advance a case in latent space; writes the same files as simulate", _rollout_args, _rollout),
    "bench": Command("benchmarks that write JSON", _bench_args, _bench),
    "report": Command("write DIR/report.md from the outputs of demo.sh", _report_args, _report),
}  # fmt: skip
"""Every subcommand: name -> (help, argument setup, handler)."""


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faiser", description="Vlasov simulation, VDF compression and latent solvers in JAX")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        cmd.setup(sub.add_parser(name, help=cmd.help))
    return p


def _error(message: str) -> int:
    text = " ".join(str(message).split()) or "failed"  # one line whatever the message holds
    print(f"faiser: error: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    held: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as held:
            code = COMMANDS[args.command].run(args)
    except FaiserError as e:
        return _error(str(e))
    except BrokenPipeError:  # e.g. `faiser inspect --json FILE | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (silence the flush at exit)
        return 0
    except KeyboardInterrupt:
        print("faiser: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if is_out_of_memory(e):
            return _error(str(out_of_memory_error(e, f"faiser {args.command}")))
        if isinstance(e, OSError):  # an environment failure (disk full, permissions) that no check caught
            where = f": {e.filename}" if e.filename else ""
            return _error(f"{e.strerror or e}{where}")
        raise
    for w in held:  # the command succeeded: show what it warned about
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    return code


if __name__ == "__main__":
    sys.exit(main())
