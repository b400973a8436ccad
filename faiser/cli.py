"""The ``faiser`` command line: parses, builds a config, calls one public function.

Bad input exits with status 2 and one line on stderr (see DESIGN.md, command-line contract).
"""

from __future__ import annotations

import argparse
import os
import sys

from faiser.errors import FaiserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        print(f"faiser: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faiser", description="Vlasov simulation, VDF compression and latent solvers in JAX")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("simulate", help="run a reference simulation of a named case")
    s.add_argument("case", help="landau, two_stream, bump_on_tail, free_streaming, larmor, exb, alfven, shock, khi")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--config", help="JSON config file (keys as for --set)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--save-every", type=int)
    s.add_argument("--vlsv-every", type=int)
    s.add_argument("--checkpoint-every", type=int, metavar="N", help="checkpoint the full state every N steps")
    s.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    s.add_argument("--devices", type=int, default=None, help="split the domain over N devices (shard_map)")
    s.add_argument(
        "--distributed", choices=["none", "mpi"], default="none",
        help="mpi: one domain block per rank of an mpirun launch (rank 0 writes the outputs)",
    )  # fmt: skip
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("sweep", help="generate a family of datasets from a sweep file (experiments/sweeps/)")
    w.add_argument("file", help="sweep JSON file")
    w.add_argument("--out", required=True, help="root directory; one sub-directory per run")
    w.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    w.add_argument("--quiet", action="store_true", help="no progress bars")

    i = sub.add_parser("inspect", help="describe a Vlasiator VLSV file")
    i.add_argument("file", help="a .vlsv file")
    i.add_argument("--json", action="store_true", help="print the contract's JSON object")

    t = sub.add_parser("train-codec", help="fit a VDF codec (pca, mlp, vqvae) on datasets or VLSV files")
    t.add_argument("--codec", required=True, help="sparse, maxwellian, zfp, sz3, pca, mlp, vqvae")
    t.add_argument("--data", required=True, nargs="+", help="datasets / run directories / VLSV files")
    t.add_argument("--out", required=True, help="model directory")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="codec setting or max_vdfs/seed")
    t.add_argument("--resume", action="store_true", help="continue from the newest training checkpoint in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    c = sub.add_parser("compress", help="compress the VDFs of a VLSV file or dataset snapshot")
    c.add_argument("input", help="a .vlsv file or a faiser dataset (run directory)")
    c.add_argument("--codec", required=True, help="sparse, maxwellian, zfp, sz3, pca, mlp, vqvae")
    c.add_argument("--model", help="model directory of a trained codec (faiser train-codec)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="codec setting, or snapshot=I")
    c.add_argument("--out", required=True, help="compressed file")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    d = sub.add_parser("decompress", help="decode a compressed file into a VLSV file")
    d.add_argument("file", help="file written by faiser compress")
    d.add_argument("--model", help="model directory of a trained codec")
    d.add_argument("--out", required=True, help="output .vlsv file")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    tl = sub.add_parser("train-latent", help="train the latent solver (6D VQ-VAE + propagator) on trajectory datasets")
    tl.add_argument("--data", required=True, nargs="+", help="run directories / datasets / sweep roots of one case")
    tl.add_argument("--out", required=True, help="model directory")
    tl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="LatentTrainConfig key")
    tl.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out/checkpoints")
    tl.add_argument("--quiet", action="store_true", help="no progress bars")

    r = sub.add_parser("rollout", help="advance a case in latent space; writes the same files as simulate")
    r.add_argument("case", help="the case the model was trained on (e.g. shock)")
    r.add_argument("--model", required=True, help="model directory (faiser train-latent)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="case config key; mass=conserve|decoded|auto, propagator=trained|persistence")  # fmt: skip
    r.add_argument("--config", help="JSON config file (keys as for --set)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--save-every", type=int)
    r.add_argument("--vlsv-every", type=int)
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("bench", help="benchmarks that print JSON")
    b.add_argument("what", choices=["stepper", "codecs", "latent", "loader"])
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--out", required=True, help="output JSON file")
    return p


def _simulate(args) -> int:
    from faiser.config import parse_overrides
    from faiser.errors import ConfigError
    from faiser.run.simulate import simulate

    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices must be >= 1, got {args.devices}")
    if args.distributed == "mpi":
        return _simulate_mpi(args)
    res = simulate(
        args.case, parse_overrides(args.set), args.out, args.config, progress=not args.quiet,
        save_every=args.save_every, vlsv_every=args.vlsv_every,
        checkpoint_every=args.checkpoint_every, resume=args.resume, devices=args.devices,
    )  # fmt: skip
    t = res.timing
    print(
        f"{args.case}: {t['steps']} steps to t={t['simulated_time']:g} in {t['wall_s']:.2f} s "
        f"(+{t['compile_s']:.1f} s compile); outputs in {args.out}"
    )
    return 0


def _simulate_mpi(args) -> int:
    """``simulate --distributed mpi``: every rank steps its block; rank 0 writes the outputs."""
    from faiser.config import parse_overrides
    from faiser.parallel.mpi import abort_on_error, world
    from faiser.run.simulate import simulate

    comm = world()
    root = comm.Get_rank() == 0
    with abort_on_error(comm):
        res = simulate(
            args.case, parse_overrides(args.set), args.out, args.config,
            progress=root and not args.quiet, save_every=args.save_every, vlsv_every=args.vlsv_every,
            checkpoint_every=args.checkpoint_every, resume=args.resume, devices=args.devices, distributed="mpi",
        )  # fmt: skip
    if root:
        t = res.timing
        resumed = f" (resumed at step {t['resumed_from_step']})" if t["resumed_from_step"] is not None else ""
        print(
            f"{args.case}: {t['steps']} steps to t={t['simulated_time']:g} on {t['devices']} MPI ranks in "
            f"{t['wall_s']:.2f} s (+{t['compile_s']:.1f} s compile){resumed}; outputs in {args.out}"
        )
    return 0


def _sweep(args) -> int:
    from faiser.run.sweep import run_sweep

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


def _codec_command(args) -> int:
    from faiser.codecs import commands
    from faiser.config import parse_overrides

    if args.command == "train-codec":
        info = commands.train_codec(
            args.codec, args.data, args.out, parse_overrides(args.set), not args.quiet, resume=args.resume
        )
        print(
            f"{info['codec']} model {info['model_id']} ({info['model_bytes']} bytes, {info['n_train_vdfs']} "
            f"training VDFs) in {info['model_dir']}"
        )
    elif args.command == "compress":
        rep = commands.compress(args.codec, args.input, args.out, args.model, parse_overrides(args.set), not args.quiet)
        print(commands.summary(rep))
    else:
        rep = commands.decompress(args.file, args.out, args.model, not args.quiet)
        print(f"{rep['file']}: {rep['n_vdfs']} VDFs decoded with {rep['codec']} in {rep['wall_s']:.2f} s")
    return 0


def _train_latent(args) -> int:
    from faiser.config import apply_overrides, parse_overrides
    from faiser.latent.train import LatentTrainConfig, train_latent_files

    cfg = apply_overrides(LatentTrainConfig(), parse_overrides(args.set))
    m = train_latent_files(args.data, args.out, cfg, progress=not args.quiet, resume=args.resume)
    h = m.meta["history"]
    print(
        f"latent model for {m.meta['case']} ({len(m.meta['runs'])} runs, D={m.steps_per_latent} steps per latent "
        f"step): VQ-VAE loss {h['vqvae'].get('loss', [0, 0])[-1]:.4g}, propagator loss "
        f"{h['propagator'].get('loss', [0, 0])[-1]:.4g}; in {args.out}"
    )
    return 0


def _rollout(args) -> int:
    from faiser.config import parse_overrides
    from faiser.latent.rollout import rollout

    over = parse_overrides(args.set)
    mass, prop = over.pop("mass", "auto"), over.pop("propagator", "trained")
    res = rollout(args.model, args.case, over, args.out, args.config, progress=not args.quiet,
                  save_every=args.save_every, vlsv_every=args.vlsv_every, mass=mass, propagator=prop)  # fmt: skip
    t = res.timing
    print(
        f"{args.case}: {t['latent_steps']} latent steps ({t['steps']} reference steps) to t={t['simulated_time']:g} "
        f"in {t['wall_s']:.3f} s (+{t['compile_s']:.1f} s compile); outputs in {args.out}"
    )
    return 0


def _bench(args) -> int:
    from faiser.config import parse_overrides
    from faiser.errors import ConfigError

    if args.what == "codecs":
        from faiser.bench import bench_codecs

        doc = bench_codecs(args.out, parse_overrides(args.set))
        print(f"bench codecs: {len(doc['results'])} results over {len(doc['sets'])} VDF sets in {args.out}")
        return 0
    if args.what == "loader":
        from faiser.bench import bench_loader

        bench_loader(args.out, parse_overrides(args.set))
        return 0
    if args.what == "latent":
        from faiser.bench import bench_latent

        doc = bench_latent(args.out, parse_overrides(args.set))
        print(f"bench latent: {len(doc['results'])} results over {len(doc['families'])} families in {args.out}")
        return 0
    if args.what != "stepper":
        raise ConfigError(f"bench {args.what} is not available in this version of faiser")
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
        if args.command in ("train-codec", "compress", "decompress"):
            return _codec_command(args)
        if args.command == "train-latent":
            return _train_latent(args)
        if args.command == "rollout":
            return _rollout(args)
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
