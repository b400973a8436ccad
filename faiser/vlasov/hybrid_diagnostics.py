"""Diagnostics of hybrid runs: div B, energy budget, T_perp/T_par, shock, KHI, wave modes, spectra.

Per-output *probes* (:func:`make_probe`) are jit-able functions of the state returning scalars
(merged into the run's time series by :func:`faiser.run.simulate.simulate`) and small arrays
(profiles, maps; kept as snapshots for the case plots). The analysis helpers (shock position and
compression, growth-rate fit, Rankine-Hugoniot, dispersion relation) run on the host with NumPy /
SciPy. Everything is in hybrid units (:class:`faiser.units.HybridUnits`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.diagnostics import anisotropy, moments
from faiser.vlasov.hybrid_fields import (
    HybridFields,
    electron_internal_energy,
    ion_moments,
    magnetic_energy_faces,
)

# Michalke (1964): incompressible tanh(x/a) shear layer (velocity jump 2 V0), fastest mode.
MICHALKE_K_WIDTH = 0.4446
MICHALKE_MAX_GROWTH = 0.1897  # gamma a / V0


def div_b_relative(model: HybridFields, B_face, grid: PhaseSpaceGrid):
    """``max |div B| / (max |B| / dx_min)`` over the cells (0 when no axis is resolved)."""
    if not grid.spatial_dims:
        return jnp.zeros((), B_face.dtype)
    div = model.div_B(B_face, grid)
    dx = min(grid.dx[d] for d in grid.spatial_dims)
    bmax = jnp.max(jnp.sqrt(jnp.sum(B_face * B_face, axis=-1)))
    return jnp.max(jnp.abs(div)) * dx / jnp.maximum(bmax, 1e-300)


def energy_budget(state, grid: PhaseSpaceGrid, species, model: HybridFields) -> dict:
    """Ion kinetic, magnetic (staggered) and electron internal energy and their sum (scalars)."""
    return _energy_budget(state, _kinetic_energy_density(state.f, grid, species), grid, species, model)


def _kinetic_energy_density(fs, grid: PhaseSpaceGrid, species):
    """``sum_s (m_s / 2) int |v|^2 f_s d3v`` per spatial cell, (nx, ny, nz)."""
    kin = 0.0
    for f, s in zip(fs, species):
        v2 = sum(jnp.asarray(grid.v_mesh(d), f.dtype) ** 2 for d in range(3))
        kin = kin + 0.5 * s.mass * jnp.sum(f * v2, axis=(3, 4, 5)) * grid.velocity_cell_volume
    return kin


def _energy_budget(state, kin_density, grid: PhaseSpaceGrid, species, model: HybridFields, rho=None) -> dict:
    kin = jnp.sum(kin_density) * grid.cell_volume
    mag = magnetic_energy_faces(state.aux["B_face"], grid)
    rho = ion_moments(state.f, grid, species)["rho"] if rho is None else rho
    ele = electron_internal_energy(model, rho, grid)
    return {
        "ion_kinetic_energy": kin,
        "magnetic_energy_faces": mag,
        "electron_internal_energy": ele,
        "hybrid_total_energy": kin + mag + ele,
    }


class CellProbe:
    """A jit-able ``probe(state) -> dict`` computed in two parts: :meth:`cells`, the per-cell
    velocity integrals of ``f`` it needs (arrays with the spatial axes first), and :meth:`finish`,
    which needs only those, the fields and ``state.aux``. ``probe(state) = finish(state,
    cells(state.f, grid))``; a domain-decomposed run computes :meth:`cells` block by block on a
    block's grid and gathers only them (a few numbers per cell instead of ``f``)."""

    def __init__(self, grid: PhaseSpaceGrid, cells, finish):
        self.grid, self._cells, self._finish = grid, cells, finish

    def cells(self, fs, grid: PhaseSpaceGrid | None = None) -> dict:
        """Per-cell integrals of the distributions ``fs`` on ``grid`` (default: the whole grid)."""
        return self._cells(fs, self.grid if grid is None else grid)

    def finish(self, state, cells: dict) -> dict:
        """The probe's outputs from the global ``cells``, ``state.E``, ``state.B`` and ``state.aux``."""
        return self._finish(state, cells)

    def __call__(self, state) -> dict:
        return self.finish(state, self.cells(state.f))


def make_probe(
    grid: PhaseSpaceGrid,
    model: HybridFields,
    species: Sequence,
    mode_axis: int | None = None,
    mode_k: int = 1,
    shock: bool = False,
    khi: bool = False,
) -> CellProbe:
    """A jit-able ``probe(state) -> dict`` for :func:`faiser.run.simulate.simulate` (a :class:`CellProbe`).

    Scalars: ``div_b_rel``, the energy budget, ``field_subcycles``, ``b_max``; with ``mode_axis``
    the complex Fourier mode ``mode_k`` of ``B_y + i B_z`` along that axis (``mode_re``, ``mode_im``,
    the Alfven diagnostics); with ``khi`` the amplitude of mode ``mode_k`` of ``V_x`` along y
    (``khi_amplitude``, max over x), the density map ``density`` (nx, ny) and ``B`` (nx, ny, 3); with ``shock`` the 1D
    profiles ``profile_x``, ``density``, ``velocity`` (nx, 3), ``B`` (nx, 3) and ``anisotropy``
    (T_perp/T_par in the frame of B).
    """
    species = tuple(species)

    def cells(fs, g):
        out = {k: v for k, v in ion_moments(fs, g, species).items() if k in ("rho", "U")}
        out["kinetic_energy_density"] = _kinetic_energy_density(fs, g, species)
        if shock:
            m0 = moments(fs[0], g, species[0].mass)
            out["pressure0"], out["density0"] = m0["pressure"], m0["density"]
        return out

    def finish(state, mom):
        out = {
            "div_b_rel": div_b_relative(model, state.aux["B_face"], grid),
            "field_subcycles": state.aux["subcycles"].astype(state.B.dtype),
            "b_max": jnp.max(jnp.sqrt(jnp.sum(state.B**2, axis=-1))),
        }
        out.update(_energy_budget(state, mom["kinetic_energy_density"], grid, species, model, rho=mom["rho"]))
        if mode_axis is not None and not khi:
            n = grid.nx[mode_axis]
            x = np.arange(n)
            shape = [1, 1, 1]
            shape[mode_axis] = n
            phase = jnp.asarray(np.exp(-2j * np.pi * mode_k * x / n).reshape(shape))
            b = state.B[..., 1] + 1j * state.B[..., 2]
            m = jnp.mean(b * phase)
            out["mode_re"], out["mode_im"] = jnp.real(m), jnp.imag(m)
        if khi:
            ny = grid.nx[1]
            phase = jnp.asarray(np.exp(-2j * np.pi * mode_k * np.arange(ny) / ny).reshape(1, ny, 1))
            amp = 2 * jnp.abs(jnp.mean(mom["U"][..., 0] * phase, axis=1))  # (nx, nz)
            out["khi_amplitude"] = jnp.max(amp)
            out["density"] = mom["rho"][:, :, 0]
            out["B"] = state.B[:, :, 0, :]
        if shock:
            _, _, ratio = anisotropy(mom["pressure0"], mom["density0"], state.B)
            out["density"] = mom["rho"][:, 0, 0]
            out["velocity"] = mom["U"][:, 0, 0, :]
            out["B"] = state.B[:, 0, 0, :]
            out["anisotropy"] = ratio[:, 0, 0]
        return out

    return CellProbe(grid, cells, finish)


# ---- shock ------------------------------------------------------------------------------------------
def shock_position(x: np.ndarray, n: np.ndarray, n_up: float, n_down: float) -> float:
    """Leftmost x where the density rises through ``(n_up + n_down)/2`` and stays above it for
    three cells (linear interpolation between cells); NaN if there is none."""
    mid = 0.5 * (n_up + n_down)
    above = n > mid
    for i in range(1, len(n) - 3):
        if above[i] and not above[i - 1] and above[i : i + 3].all():
            return float(x[i - 1] + (mid - n[i - 1]) / (n[i] - n[i - 1]) * (x[i] - x[i - 1]))
    return float("nan")


def shock_analysis(x, n, vx, x_shock: float, margin: float, edge: float) -> dict:
    """Upstream/downstream averages away from the shock at ``x_shock``.

    Upstream: ``x_min + edge < x < x_shock - margin``; downstream: ``x_shock + margin < x < x_max
    - edge``. Returns the compression ratio ``n_down / n_up`` and the mass fluxes ``<n V_x>``."""
    x, n, vx = map(np.asarray, (x, n, vx))
    up = (x > x[0] + edge) & (x < x_shock - margin)
    down = (x > x_shock + margin) & (x < x[-1] - edge)
    if up.sum() < 2 or down.sum() < 2:
        raise ConfigError("shock analysis: too few cells upstream or downstream of the shock")
    n_up, n_down = n[up].mean(), n[down].mean()
    return {
        "n_up": float(n_up),
        "n_down": float(n_down),
        "compression": float(n_down / n_up),
        "mass_flux_up": float((n * vx)[up].mean()),
        "mass_flux_down": float((n * vx)[down].mean()),
    }


def rankine_hugoniot(upstream: dict, gamma: float = 5.0 / 3.0, electron_temperature: float = 0.0) -> dict:
    """Downstream state of the MHD Rankine-Hugoniot relations for a shock normal to x (hybrid units).

    ``upstream``: ``density``, ``temperature`` (ions), ``velocity`` and ``B`` (3-vectors, in the
    shock frame). Electrons add ``p_e = n T_e`` (isothermal electrons would not conserve this
    energy flux; used only as pressure). Solves mass, normal and tangential momentum, energy and
    tangential E continuity for the compressive root. Returns the downstream state and
    ``compression`` (= n_down / n_up).
    """
    from scipy.optimize import fsolve

    n1 = upstream["density"]
    v1 = np.asarray(upstream["velocity"], float)
    B1 = np.asarray(upstream["B"], float)
    p1 = n1 * (upstream["temperature"] + electron_temperature)
    Bn = B1[0]

    def fluxes(n, v, B, p):
        vn = v[0]
        Bt, vt = B[1:], v[1:]
        mass = n * vn
        mom_n = n * vn**2 + p + 0.5 * np.dot(Bt, Bt)
        mom_t = n * vn * vt - Bn * Bt
        energy = n * vn * (0.5 * np.dot(v, v) + gamma / (gamma - 1) * p / n) + np.dot(B, B) * vn - np.dot(v, B) * Bn
        ind = vn * Bt - vt * Bn
        return np.concatenate([[mass, mom_n], mom_t, [energy], ind])

    F1 = fluxes(n1, v1, B1, p1)
    scale = 1e-3 * abs(F1[1])  # the normal momentum flux sets the scale of vanishing fluxes

    def resid(u):
        n, vn, vy, vz, By, Bz, p = u
        F = fluxes(n, np.array([vn, vy, vz]), np.array([Bn, By, Bz]), p)
        return (F - F1) / np.maximum(np.abs(F1), scale)

    best = None
    for r in (2.0, 3.0, 3.8, 1.5):
        guess = [n1 * r, v1[0] / r, v1[1], v1[2], B1[1] * r, B1[2] * r, p1 * r * 3]
        sol, info, ok, _ = fsolve(resid, guess, full_output=True, xtol=1e-12)
        if ok == 1 and sol[0] > n1 * 1.01 and sol[6] > 0 and np.max(np.abs(resid(sol))) < 1e-8:
            best = sol
            break
    if best is None:
        raise ConfigError("no compressive Rankine-Hugoniot solution for this upstream state")
    n, vn, vy, vz, By, Bz, p = best
    return {
        "density": float(n),
        "velocity": (float(vn), float(vy), float(vz)),
        "B": (float(Bn), float(By), float(Bz)),
        "pressure": float(p),
        "compression": float(n / n1),
    }


# ---- growth rates, waves, spectra -------------------------------------------------------------------
def fit_growth_rate(t, amplitude, t_min: float = -np.inf, t_max: float = np.inf) -> float:
    """Least-squares slope of ``ln(amplitude)`` over ``t_min <= t <= t_max`` (exponential rate)."""
    t, a = np.asarray(t, float), np.asarray(amplitude, float)
    sel = (t >= t_min) & (t <= t_max) & (a > 0)
    if sel.sum() < 3:
        raise ConfigError("fit_growth_rate needs at least 3 positive samples in the window")
    return float(np.polyfit(t[sel], np.log(a[sel]), 1)[0])


def linear_phase_window(t, amplitude, low: float = 3.0, high: float = 0.3) -> tuple[float, float]:
    """The exponential phase: from the last time the amplitude is below ``low`` times its minimum
    (after the initial transient) to the first time it exceeds ``high`` times its maximum."""
    t, a = np.asarray(t, float), np.asarray(amplitude, float)
    i_min = int(np.argmin(a))
    peak = a.max()
    i_end = i_min + int(np.argmax(a[i_min:] >= high * peak))
    start_cands = np.nonzero(a[: i_end + 1] <= low * a[i_min])[0]
    i_start = int(start_cands[-1]) if len(start_cands) else i_min
    if i_end - i_start < 3:  # no clear exponential phase: everything after the minimum
        i_start, i_end = i_min, len(t) - 1
    return float(t[i_start]), float(t[i_end])


def phase_frequency(t, mode_re, mode_im) -> float:
    """Frequency ``w`` of a complex mode ``~ exp(-i w t)`` from the slope of its unwrapped phase."""
    phase = np.unwrap(np.angle(np.asarray(mode_re) + 1j * np.asarray(mode_im)))
    return float(-np.polyfit(np.asarray(t, float), phase, 1)[0])


def kinetic_parallel_dispersion(k: float, vth: float, branch: str) -> complex:
    """Root of the parallel hybrid dispersion relation with Maxwellian protons, massless electrons:

    ``k^2 = (w / (k w_t)) Z((w - 1) / (k w_t)) - w`` (hybrid units, ``w_t = sqrt(2) vth``, sign
    convention of :func:`faiser.vlasov.linear_theory.cold_parallel_frequency`: ion-cyclotron
    ``Re w > 0``, whistler ``Re w < 0``). Cold limit: ``w^2 + k^2 w - k^2 = 0``.
    """
    from scipy.optimize import fsolve

    from faiser.vlasov.linear_theory import cold_parallel_frequency, plasma_z

    wt = math.sqrt(2.0) * vth

    def D(w):
        return (w / (k * wt)) * plasma_z((w - 1) / (k * wt)) - w - k**2

    w0 = cold_parallel_frequency(k, branch)
    with warnings.catch_warnings():  # fsolve warns when the start is already the root to ~1e-13
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = fsolve(lambda u: [D(u[0] + 1j * u[1]).real, D(u[0] + 1j * u[1]).imag], [w0, 0.0], xtol=1e-13)
    return complex(sol[0], sol[1])


def magnetic_spectrum(B: np.ndarray, grid: PhaseSpaceGrid, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1D magnetic energy spectrum along ``axis``: ``(k, E_B(k))`` with
    ``sum_k E_B(k) = (1/2) <|dB|^2>`` (fluctuation about the mean, averaged over the other axes)."""
    B = np.asarray(B, float)
    n = grid.nx[axis]
    dB = B - B.mean(axis=(0, 1, 2), keepdims=True)
    Bk = np.fft.rfft(dB, axis=axis) / n
    power = np.abs(Bk) ** 2
    power = power.sum(axis=-1)  # components
    power = power.mean(axis=tuple(a for a in range(3) if a != axis))
    power[1:] *= 2.0
    if n % 2 == 0:
        power[-1] /= 2.0
    k = 2 * np.pi * np.fft.rfftfreq(n, d=grid.dx[axis])
    return k, 0.5 * power


def michalke_growth_rate(k_width: float) -> float:
    """The fastest growth rate ``gamma a / V0`` of Michalke's incompressible tanh layer (0.19 at
    ``k a = 0.445``); a reference scale only, returned for ``k a`` within 0.3-0.6, else NaN."""
    return MICHALKE_MAX_GROWTH if 0.3 <= k_width <= 0.6 else float("nan")
