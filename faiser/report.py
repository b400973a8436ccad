"""A short Markdown report of the demo's outputs: ``faiser report runs/demo``.

Reads what ``demo.sh`` wrote (reference runs, codec outputs, the latent model, the held-out
reference and latent rollout) and writes ``DIR/report.md`` with the figures: reference diagnostics,
compression ratios, and the latent rollout against the reference (errors vs time, density maps,
speed). Sections whose inputs are missing or unreadable are skipped with a note.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["write_report"]


def _rel(p: Path, root: Path) -> str:
    return str(Path(p).resolve().relative_to(root.resolve()))


def _latent_section(root: Path) -> list[str]:
    from faiser.bench.latent import compare_runs, plot_comparison

    ref, lat, pers = root / "latent" / "reference", root / "latent" / "rollout", root / "latent" / "persistence"
    model = root / "latent" / "model" / "model.json"
    if not (ref.exists() and lat.exists() and model.exists()):
        return ["## Latent solver", "", "_not run (no latent/model, latent/reference or latent/rollout)_", ""]
    meta = _json(model)
    variants = {"latent": compare_runs(ref, lat)}
    if pers.exists():
        variants["persistence"] = compare_runs(ref, pers)
    D, ldt = int(meta["steps_per_latent"]), float(meta["latent_dt"])
    held = _json(lat / "config.json")["config"]
    title = f"held-out shock, V_left = {held.get('V_left_kms')} km/s; D = {D} reference steps"
    plots = plot_comparison(variants, ref, lat, ldt, title, str(root / "latent" / "rollout_vs_reference"))
    t_ref = _json(ref / "timing.json")
    t_lat = _json(lat / "timing.json")
    h = meta["history"]
    out = [
        "## Latent solver (6D VQ-VAE + propagator)",
        "",
        f"Trained on {len(meta['runs'])} runs ({', '.join(meta['runs'])}) in "
        f"{meta['seconds']['vqvae']:.0f} s (VQ-VAE) + {meta['seconds']['propagator']:.0f} s (propagator); "
        f"VQ-VAE loss {h['vqvae']['loss'][0]:.3g} -> {h['vqvae']['loss'][1]:.3g}, propagator loss "
        f"{h['propagator']['loss'][0]:.3g} -> {h['propagator']['loss'][1]:.3g}.",
        "",
        "| variant | latent steps | rel. L2 of f | rel. error of n | rel. error of T | correlation | corr. time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in variants.items():
        ct = "> run" if r["correlation_time"] is None else f"{r['correlation_time']:g}"
        out.append(
            f"| {name} | {round(r['time'][-1] / ldt)} | {r['l2_f'][-1]:.3g} | {r['density'][-1]:.3g} | "
            f"{r['temperature'][-1]:.3g} | {r['correlation'][-1]:.3f} | {ct} |"
        )
    speed = t_ref["wall_s"] / t_lat["wall_s"] if t_lat["wall_s"] > 0 else float("nan")
    out += [
        "",
        f"Speed on this machine ({t_lat['device']}): reference {t_ref['wall_s']:.3f} s for {t_ref['steps']} steps, "
        f"latent rollout {t_lat['wall_s']:.4f} s (encode {t_lat['encode_s']:.4f}, {t_lat['latent_steps']} latent "
        f"steps {t_lat['propagate_s']:.4f}, {t_lat['decoded_outputs']} decodes {t_lat['decode_s']:.4f}): "
        f"**{speed:.0f}x** (both without compilation; decoding at every output of the comparison).",
        f"Drift over the rollout (mass mode `{t_lat['mass']}`): "
        + ", ".join(f"{k} {v:+.2e}" for k, v in t_lat["drift"].items())
        + ".",
        "",
        f"![errors]({_rel(Path(plots[0]), root)})",
        "",
        f"![density]({_rel(Path(plots[1]), root)})",
        "",
        "A model trained for a few minutes on a CPU is a demonstration of the pipeline; measured figures "
        "at larger training budgets are in the README (`faiser bench latent`).",
        "",
    ]
    return out


def _json(path: Path) -> dict:
    """A JSON object written by a run; :class:`~faiser.errors.DataError` if it cannot be read."""
    from faiser.errors import DataError

    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a JSON object")
    return doc


def write_report(root: str | Path) -> Path:
    """Write ``root/report.md`` from the demo outputs under ``root``; returns its path.

    Raises :class:`~faiser.errors.DataError` if ``root`` is not a directory or cannot be written."""
    import jax

    from faiser.errors import DataError
    from faiser.run.outputs import prepare_output_file

    if not str(root).strip() or not Path(root).is_dir():
        raise DataError(f"{root!s}: no such directory (give the directory demo.sh wrote)")
    root = Path(root)
    prepare_output_file(root / "report.md", "report")
    lines = [
        "# faiser demo report",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, Python {sys.version.split()[0]}, "
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}.",
        "",
        "## Reference simulations",
        "",
    ]
    for run, what in (("landau", "Landau damping"), ("larmor", "gyration"), ("shock", "Shocktest")):
        png = root / run / "diagnostics.png"
        if png.exists():
            try:
                t = _json(root / run / "timing.json")
                t["steps"], t["wall_s"]  # noqa: B018 (the keys this section needs)
            except (DataError, KeyError) as e:
                lines += [f"**{what}**: _unreadable outputs ({e})_", ""]
                continue
            lines += [
                f"**{what}**: {t['steps']} steps in {t['wall_s']:.2f} s.",
                "",
                f"![{run}]({run}/diagnostics.png)",
                "",
            ]
    if (root / "shock" / "shock_profiles.png").exists():
        lines += ["![shock profiles](shock/shock_profiles.png)", ""]
    summary = root / "codecs" / "summary.txt"
    lines += ["## Compression of the shock's last VLSV file", ""]
    if summary.exists():
        lines += ["```", summary.read_text(errors="replace").strip(), "```", ""]
    else:
        lines += ["_not run_", ""]
    try:
        lines += _latent_section(root)
    except (DataError, KeyError, TypeError, ValueError, IndexError) as e:
        lines += ["## Latent solver", "", f"_unreadable outputs ({e!r})_", ""]
    path = root / "report.md"
    from faiser.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


if __name__ == "__main__":  # python -m faiser.report DIR: the same as faiser report DIR
    from faiser.errors import FaiserError

    if len(sys.argv) != 2:
        print("faiser: error: usage: faiser report DIR", file=sys.stderr)
        raise SystemExit(2)
    try:
        print(f"report: {write_report(sys.argv[1])}")
    except FaiserError as e:
        print(f"faiser: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
