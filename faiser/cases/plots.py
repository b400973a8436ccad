"""Plots and summaries of the hybrid cases, written by ``faiser simulate shock|khi``.

* ``shock``: ``shock_profiles.png`` (n, V, B, T_perp/T_par along x at t = 0 and at the end),
  ``shock_position.png`` and ``shock.json`` (shock position, compression ratio against
  Rankine-Hugoniot, mass flux in and out, averaged over the second half of the run);
* ``khi``: ``khi_density.png`` (density maps at several times), ``khi_growth.png`` (mode
  amplitude and the fitted exponential), ``magnetic_spectrum.png`` (along the flow) and
  ``khi.json`` (growth rate, fit window, spectra).

Matplotlib's object API only (the caller's pyplot backend is left alone). Every figure and JSON
file is written atomically (:mod:`faiser.atomic`): a reader sees the old file or the whole new one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from faiser.atomic import atomic_path, atomic_write_text
from faiser.vlasov import hybrid_diagnostics as hd


def _save(fig, path: Path) -> None:
    """``fig`` as PNG at ``path``, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _figure(**kw):
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kw)


def shock_summary(case, snapshots: list[dict], margin: float = 20.0, edge: float = 5.0, late: float = 0.5) -> dict:
    """Shock position over time and the compression / mass fluxes averaged over the last ``1 - late``
    of the run, upstream and downstream at more than ``margin`` (d_i) from the shock and ``edge``
    from the boundaries (a quasi-parallel shock's transition is tens of d_i wide)."""
    cfg = case.config
    p = cfg.normalized()
    x = case.grid.x_centers(0)
    nL, nR = p["left"]["density"], p["right"]["density"]
    times = np.array([s["time"] for s in snapshots])
    pos = np.array([hd.shock_position(x, s["density"], nL, nR) for s in snapshots])
    late = [i for i, t in enumerate(times) if t >= late * times[-1] and np.isfinite(pos[i])]
    rows = []
    for i in late:
        s = snapshots[i]
        rows.append(hd.shock_analysis(x, s["density"], s["velocity"][:, 0], pos[i], margin=margin, edge=edge))
    rh = hd.rankine_hugoniot(p["left"], electron_temperature=cfg.electron_temperature)
    out = {
        "times": times.tolist(),
        "shock_position": [None if not np.isfinite(v) else float(v) for v in pos],
        "initial_position": p["x_shock"],
        "rankine_hugoniot_compression": rh["compression"],
        "configured_compression": nR / nL,
    }
    if rows:
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        out.update(
            compression=mean["compression"],
            compression_vs_rh=mean["compression"] / rh["compression"] - 1,
            mass_flux_up=mean["mass_flux_up"],
            mass_flux_down=mean["mass_flux_down"],
            mass_flux_mismatch=mean["mass_flux_down"] / mean["mass_flux_up"] - 1,
            mean_late_position=float(np.mean(pos[late])),
            averaged_over=[float(times[late[0]]), float(times[late[-1]])],
        )
    return out


def khi_summary(case, records: list[dict]) -> dict:
    """Growth rate of the seeded mode fitted over its exponential phase."""
    t = np.array([r["time"] for r in records])
    a = np.array([r["khi_amplitude"] for r in records])
    t0, t1 = hd.linear_phase_window(t, a)
    out = {"times": t.tolist(), "amplitude": a.tolist(), "fit_window": [t0, t1]}
    try:
        out["growth_rate"] = hd.fit_growth_rate(t, a, t0, t1)
    except Exception:  # too short a run: no window
        out["growth_rate"] = None
    d = case.config.describe()
    out["growth_rate_incompressible_reference"] = d["growth_rate_incompressible"]
    out["k_width"] = d["k_width"]
    out["fast_mach_V0"] = d["fast_mach_V0"]
    return out


def write_case_plots(kind: str, case, records: list[dict], snapshots: list[dict], out_dir) -> dict:
    """Write the plots and JSON summary of ``kind`` (``shock`` or ``khi``) into ``out_dir``."""
    out_dir = Path(out_dir)
    if kind == "shock":
        summary = shock_summary(case, snapshots)
        _plot_shock(case, snapshots, summary, out_dir)
    elif kind == "khi":
        summary = khi_summary(case, records)
        _plot_khi(case, snapshots, summary, out_dir)
        summary["magnetic_spectrum"] = _plot_spectrum(case, snapshots, out_dir, axis=1)
    else:
        raise ValueError(kind)
    atomic_write_text(out_dir / f"{kind}.json", json.dumps(summary, indent=2))
    return summary


def _plot_shock(case, snapshots, summary, out_dir: Path) -> None:
    x = case.grid.x_centers(0)
    fig = _figure(figsize=(11, 7))
    ax = fig.subplots(2, 2).ravel()
    for s, style, lab in ((snapshots[0], "--", "t=0"), (snapshots[-1], "-", f"t={snapshots[-1]['time']:.1f}")):
        ax[0].plot(x, s["density"], style, label=lab)
        for c, col in zip(range(3), "C0 C1 C2".split()):
            ax[1].plot(x, s["velocity"][:, c], style, color=col, label=f"V{'xyz'[c]} {lab}")
            ax[2].plot(x, s["B"][:, c], style, color=col, label=f"B{'xyz'[c]} {lab}")
        ax[3].plot(x, s["anisotropy"], style, label=lab)
    ax[0].axhline(summary["rankine_hugoniot_compression"], color="k", lw=0.6, ls=":", label="RH downstream")
    titles = ["density n / n0", "ion bulk velocity / v_A", "B / B0", "T_perp / T_par"]
    for a, title in zip(ax, titles):
        a.set_title(title)
        a.set_xlabel("x / d_i")
        a.legend(fontsize=7)
    fig.suptitle(f"shock: compression {summary.get('compression', float('nan')):.3f} "
                 f"(RH {summary['rankine_hugoniot_compression']:.3f})")  # fmt: skip
    _save(fig, out_dir / "shock_profiles.png")
    fig = _figure(figsize=(6, 3.5))
    a = fig.subplots()
    pos = [np.nan if p is None else p for p in summary["shock_position"]]
    a.plot(summary["times"], pos, "o-")
    a.axhline(summary["initial_position"], color="k", lw=0.6)
    a.set_xlabel("t Omega_i")
    a.set_ylabel("shock position / d_i")
    _save(fig, out_dir / "shock_position.png")


def _plot_spectrum(case, snapshots, out_dir: Path, axis: int) -> dict:
    """Magnetic energy spectrum along the periodic ``axis`` at the first, middle and last output
    (``magnetic_spectrum.png``); returns the spectra for the JSON summary."""
    from faiser.vlasov.hybrid_diagnostics import magnetic_spectrum

    fig = _figure(figsize=(6, 4))
    a = fig.subplots()
    out = {}
    for i in sorted({0, len(snapshots) // 2, len(snapshots) - 1}):
        B = np.asarray(snapshots[i]["B"])
        k, E = magnetic_spectrum(B.reshape(*B.shape[:2], 1, 3), case.grid, axis=axis)
        out[f"t={snapshots[i]['time']:.3g}"] = E.tolist()
        if np.any(E[1:] > 0):
            a.loglog(k[1:], E[1:], label=f"t = {snapshots[i]['time']:.1f}")
    out["k"] = k.tolist()
    a.set_xlabel(f"k_{'xyz'[axis]} d_i")
    a.set_ylabel("E_B(k) / B0^2")
    a.set_title("magnetic energy spectrum (fluctuations)")
    a.legend()
    _save(fig, out_dir / "magnetic_spectrum.png")
    return out


def _plot_khi(case, snapshots, summary, out_dir: Path) -> None:
    g = case.grid
    n_maps = max(1, min(case.config.snapshots, len(snapshots)))
    idx = np.unique(np.linspace(0, len(snapshots) - 1, n_maps).round().astype(int))
    cols = min(len(idx), 3)
    rows = math.ceil(len(idx) / cols)
    fig = _figure(figsize=(3.6 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    ext = (g.x_min[1], g.x_max[1], g.x_min[0], g.x_max[0])
    for a, i in zip(axes, idx):
        im = a.imshow(snapshots[i]["density"], origin="lower", extent=ext, aspect="auto", cmap="viridis")
        a.set_title(f"t = {snapshots[i]['time']:.1f}")
        a.set_xlabel("y / d_i")
        a.set_ylabel("x / d_i")
        fig.colorbar(im, ax=a, shrink=0.8)
    for a in axes[len(idx) :]:
        a.set_axis_off()
    _save(fig, out_dir / "khi_density.png")
    fig = _figure(figsize=(6, 4))
    a = fig.subplots()
    t, amp = np.array(summary["times"]), np.array(summary["amplitude"])
    a.semilogy(t, amp, label="|V_x| mode 1")
    if summary["growth_rate"] is not None:
        t0, t1 = summary["fit_window"]
        sel = (t >= t0) & (t <= t1)
        fit = np.exp(np.polyval(np.polyfit(t[sel], np.log(amp[sel]), 1), t[sel]))
        a.semilogy(t[sel], fit, "k--", label=f"fit gamma = {summary['growth_rate']:.3f} Omega_i")
    a.set_xlabel("t Omega_i")
    a.set_ylabel("mode amplitude / v_A")
    a.legend()
    _save(fig, out_dir / "khi_growth.png")
