"""Linear theory for validation: electrostatic dispersion roots and rate fits, and the cold
parallel (ion-cyclotron / whistler) branches of the hybrid model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import fsolve
from scipy.signal import argrelmax
from scipy.special import wofz

from faiser.errors import ConfigError


def plasma_z(zeta):
    """Plasma dispersion function Z(zeta) = i sqrt(pi) w(zeta) (Fried & Conte)."""
    return 1j * math.sqrt(math.pi) * wofz(zeta)


def dielectric(omega: complex, k: float, beams: Sequence[tuple[float, float, float]]) -> complex:
    """Electrostatic dielectric function of Maxwellian electron beams on a neutralizing background.

    ``beams`` is a list of ``(density, drift, thermal_speed)`` in plasma units (omega_pe = 1 for
    unit total density): ``1 + sum_j n_j (1 + zeta_j Z(zeta_j)) / (k vth_j)^2`` with
    ``zeta_j = (omega - k u_j) / (sqrt(2) k vth_j)``.
    """
    eps = 1.0 + 0j
    for n, u, vth in beams:
        z = (omega - k * u) / (math.sqrt(2) * k * vth)
        eps += n * (1 + z * plasma_z(z)) / (k * vth) ** 2
    return eps


def dispersion_root(k: float, beams: Sequence[tuple[float, float, float]], guess: complex) -> complex:
    """Root ``omega`` of :func:`dielectric` near ``guess`` (e.g. Landau: k = 0.5 -> 1.4157 - 0.1534j)."""

    def residual(x):
        d = dielectric(x[0] + 1j * x[1], k, beams)
        return [d.real, d.imag]

    x, info, ok, msg = fsolve(residual, [guess.real, guess.imag], xtol=1e-12, full_output=True)
    if ok != 1:
        raise RuntimeError(f"dispersion root not found near {guess}: {msg}")
    return complex(x[0], x[1])


def fit_damping(time: np.ndarray, electric_energy: np.ndarray, t_min: float = 0.0, t_max: float = np.inf):
    """Fit ``(gamma, omega)`` from the peaks of the electric energy ``~ exp(2 gamma t) cos^2``.

    Uses the local maxima with ``t_min < t < t_max``; |E|^2 peaks twice per wave period.
    Returns ``(gamma, omega, n_peaks)``.
    """
    t = np.asarray(time)
    ee = np.asarray(electric_energy)
    peaks = argrelmax(ee)[0]
    peaks = peaks[(t[peaks] > t_min) & (t[peaks] < t_max)]
    if len(peaks) < 3:
        return float("nan"), float("nan"), len(peaks)
    gamma = np.polyfit(t[peaks], np.log(ee[peaks]), 1)[0] / 2
    omega = math.pi / float(np.mean(np.diff(t[peaks])))
    return float(gamma), omega, len(peaks)


def fit_growth(time: np.ndarray, electric_energy: np.ndarray, t_min: float, t_max: float) -> float:
    """Growth rate ``gamma`` of ``|E|^2 ~ exp(2 gamma t)`` by a least-squares line on ``[t_min, t_max]``."""
    t = np.asarray(time)
    m = (t >= t_min) & (t <= t_max)
    return float(np.polyfit(t[m], np.log(np.asarray(electric_energy)[m]), 1)[0] / 2)


def cold_parallel_frequency(k: float, branch: str) -> float:
    """Roots of ``w^2 + k^2 w - k^2 = 0`` (cold ions, massless electrons; ``b ~ exp(i(kx - wt))``),
    hybrid units (``k`` in ``1/d_i``, ``w`` in ``Omega_i``): ion-cyclotron ``w > 0`` and whistler
    ``w < 0`` (it moves towards -x)."""
    disc = math.sqrt(k**4 + 4 * k**2)
    if branch == "ion_cyclotron":
        return 0.5 * (-(k**2) + disc)
    if branch == "whistler":
        return 0.5 * (-(k**2) - disc)
    raise ConfigError(f"branch must be ion_cyclotron, whistler or both, got {branch!r}")
