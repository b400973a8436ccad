"""Hybrid-Vlasov cases: parallel Alfven wave, Vlasiator's Shocktest, Kelvin-Helmholtz (KHB).

Every config is a frozen dataclass whose fields are the ``--set`` keys of ``faiser simulate``.
The stepper works in hybrid units (:class:`faiser.units.HybridUnits`: time ``1/Omega_i``, length
``d_i``, velocity ``v_A``, B in ``B0``, n in ``n0``, temperature in ``m_i v_A^2``). ``shock`` and
``khi`` take Vlasiator's SI parameters (keys ending in ``_m3``, ``_K``, ``_kms``, ``_nT``, ``_m``,
``_Pa``) and report the normalized values from :meth:`describe` (written to ``config.json``).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from faiser.cases.base import Case, CommonConfig, jax_dtype, positive_sizes
from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.units import BOLTZMANN, MU_0, PROTON_MASS, HybridUnits
from faiser.vlasov import distributions as dist
from faiser.vlasov import hybrid_diagnostics as hd
from faiser.vlasov.hybrid_fields import FieldInflow, HybridFields, face_field, hybrid_species_check
from faiser.vlasov.linear_theory import cold_parallel_frequency
from faiser.vlasov.state import PROTON, Species, State
from faiser.vlasov.stepper import Stepper

ALPHA = Species("alpha", 2.0, 4.0)  # He++ in proton units (charge e, mass m_p: approximately 4)
Vec3 = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class HybridConfig(CommonConfig):
    """Keys shared by the hybrid cases (field model and units)."""

    electron_temperature: float = 0.0  # T_e in m_i v_A^2 (normalized); 0: no pressure term
    gamma_e: float = 1.0  # electron polytropic index (1 = isothermal)
    resistivity: float = 0.0  # eta in mu0 v_A d_i
    hall: bool = True
    pressure_term: bool = True
    upwind: float = 1.0  # factor on the Rusanov-type upwind edge E
    field_cfl: float = 0.4
    max_subcycles: int = 2000
    n0_m3: float = 1e6  # density unit (m^-3)
    B0_nT: float = 1.0  # magnetic field unit (nT)

    def units(self) -> HybridUnits:
        return HybridUnits(n0=self.n0_m3, B0=self.B0_nT * 1e-9)

    def field_kwargs(self) -> dict:
        return dict(
            electron_temperature=self.electron_temperature, gamma_e=self.gamma_e, resistivity=self.resistivity,
            hall=self.hall, pressure_term=self.pressure_term, upwind=self.upwind, field_cfl=self.field_cfl,
            max_subcycles=self.max_subcycles,
        )  # fmt: skip


# ---- Alfven -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AlfvenConfig(HybridConfig):
    """Small-amplitude parallel circularly polarized wave along x in a periodic box of one wavelength.

    ``branch``: ``ion_cyclotron`` (left-hand, slower than ``k v_A``), ``whistler`` (right-hand, faster;
    it propagates towards -x in the sign convention of ``b = B_y + i B_z ~ exp(i (k x - w t))``) or
    ``both`` (a magnetic perturbation only, which excites both). Ions are a cold Maxwellian
    (``vth``) carrying the eigenmode velocity of the cold-plasma branch.
    """

    k: float = 0.1  # k d_i
    amplitude: float = 0.01  # |dB| / B0
    branch: str = "ion_cyclotron"
    nx: int = 32
    nv: int = 24
    vth: float = 0.1  # ion thermal speed sqrt(T_i / m_i) in v_A
    vmax: float = 0.6
    alpha_density: float = 0.0  # alpha particles (q=2, m=4) per n0; protons fill up to n_e = 1
    dt: float = 0.2
    t_end: float = 0.0  # 0: one wave period of the chosen branch

    def phase_space_cells(self) -> list[int]:
        n = positive_sizes(self, "nx", "nv")
        return [n[0] * n[1] ** 3] * (2 if self.alpha_density > 0 else 1) if n else []

    def omega(self) -> float:
        """Cold-plasma frequency of the configured branch (signed, see class docstring)."""
        return cold_parallel_frequency(self.k, self.branch if self.branch != "both" else "ion_cyclotron")


def _build_hybrid(name, cfg, grid, species, fs, model, units, n_steps, inflow=None, **case_kw) -> Case:
    hybrid_species_check(tuple(species))
    dtype = jax_dtype(cfg)
    fs = tuple(jnp.asarray(f, dtype) for f in fs)
    for f in fs:
        dist.validate_distribution(f, grid)
    dt = cfg.effective_dt
    stepper = Stepper(
        grid, tuple(species), model, dt, scheme=cfg.scheme, limiter=cfg.limiter, f_min=cfg.f_min, inflow=inflow
    )
    state = stepper.initialize(State.create(fs, dtype=dtype))
    case = Case(name, cfg, stepper, state, n_steps, units, "magnetic_energy", **case_kw)
    return case


def build_alfven(cfg: AlfvenConfig) -> Case:
    if cfg.k <= 0 or cfg.amplitude < 0 or cfg.vth <= 0:
        raise ConfigError("alfven needs k > 0, amplitude >= 0 and vth > 0")
    if not (0 <= cfg.alpha_density < 0.5):
        raise ConfigError("alpha_density must be in [0, 0.5)")
    omega = cfg.omega()
    if cfg.t_end == 0:
        cfg = dataclasses.replace(cfg, t_end=2 * math.pi / abs(omega))
    n_steps = cfg.n_steps
    L = 2 * math.pi / cfg.k
    grid = PhaseSpaceGrid.make_1d3v(cfg.nx, L, cfg.nv, cfg.vmax)
    x = grid.x_centers(0)
    A = cfg.amplitude
    B = face_field(grid, (1.0, 0.0, 0.0))
    B[:, 0, 0, 1] += A * np.cos(cfg.k * x)
    B[:, 0, 0, 2] += A * np.sin(cfg.k * x)
    if cfg.branch == "both":
        u = np.zeros((cfg.nx, 3))
    else:  # eigenmode: u = -k b / w  (complex u = uy + i uz)
        c = -cfg.k * A / omega
        u = np.stack([np.zeros_like(x), c * np.cos(cfg.k * x), c * np.sin(cfg.k * x)], -1)
    V = u.reshape(cfg.nx, 1, 1, 3)
    dtype = jax_dtype(cfg)
    n_a = cfg.alpha_density
    species, fs = [PROTON], [dist.maxwellian(grid, 1.0 - 2 * n_a, V, cfg.vth**2, dtype=dtype)]
    if n_a > 0:
        species.append(ALPHA)
        fs.append(dist.maxwellian(grid, n_a, V, ALPHA.mass * cfg.vth**2, mass=ALPHA.mass, dtype=dtype))
    model = HybridFields(B, b_max=1.0 + 4 * A + 0.5, **cfg.field_kwargs())
    probe = hd.make_probe(grid, model, species, mode_axis=0, mode_k=1)
    return _build_hybrid("alfven", cfg, grid, species, fs, model, cfg.units(), n_steps, probe=probe)


# ---- Shocktest --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShockConfig(HybridConfig):
    """Vlasiator's Shocktest: a standing oblique shock in its de Hoffmann-Teller frame (SI inputs).

    Left (upstream) state for ``x < x_shock``, right (downstream) state beyond; Maxwellian inflow
    of the left state at the left face, outflow at the right face. Vlasiator's run uses 1000
    cells over +-1e8 m (dx = 2e5 m); the default here keeps that dx over a shorter box.
    """

    n_left_m3: float = 1e6
    T_left_K: float = 1e5
    V_left_kms: Vec3 = (100.0, 50.0, 0.0)
    B_left_nT: Vec3 = (1.0, 0.5, 0.0)
    n_right_m3: float = 2.74e6
    T_right_K: float = 3e5
    V_right_kms: Vec3 = (36.45, 53.71, 0.0)
    B_right_nT: Vec3 = (1.0, 1.474, 0.0)
    # "configured": the right state above; "rankine_hugoniot": the right state solved from the left
    # one by the MHD jump conditions (the *_right keys are then ignored), e.g. for Mach-number sweeps
    downstream: str = "configured"
    x_min_m: float = -1.2e7
    x_max_m: float = 1.8e7
    x_shock_m: float = 0.0
    nx: int = 150
    nv: int = 24
    v_min_kms: Vec3 = (-220.0, -200.0, -250.0)
    v_max_kms: Vec3 = (320.0, 310.0, 250.0)
    dt: float = 0.05
    t_end: float = 40.0
    diag_every: int = 40

    def phase_space_cells(self) -> list[int]:
        n = positive_sizes(self, "nx", "nv")
        return [n[0] * n[1] ** 3] if n else []

    def normalized(self) -> dict:
        """Left/right states in hybrid units (n, T = kT/(m v_A^2), V, B) and the grid in d_i, v_A."""
        u = self.units()
        out = {}
        for side in ("left", "right"):
            out[side] = {
                "density": getattr(self, f"n_{side}_m3") / u.n0,
                "temperature": BOLTZMANN * getattr(self, f"T_{side}_K") / (PROTON_MASS * u.velocity**2),
                "velocity": tuple(v * 1e3 / u.velocity for v in getattr(self, f"V_{side}_kms")),
                "B": tuple(b * 1e-9 / u.B0 for b in getattr(self, f"B_{side}_nT")),
            }
        if self.downstream == "rankine_hugoniot":
            rh = hd.rankine_hugoniot(out["left"], gamma=5.0 / 3.0, electron_temperature=self.electron_temperature)
            t_ion = rh["pressure"] / rh["density"] - self.electron_temperature
            if t_ion <= 0:
                raise ConfigError("the Rankine-Hugoniot downstream state has no positive ion temperature")
            out["right"] = {"density": rh["density"], "temperature": t_ion, "velocity": rh["velocity"], "B": rh["B"]}
        elif self.downstream != "configured":
            raise ConfigError(f"downstream must be 'configured' or 'rankine_hugoniot', got {self.downstream!r}")
        out["x_min"], out["x_max"] = self.x_min_m / u.length, self.x_max_m / u.length
        out["x_shock"] = self.x_shock_m / u.length
        out["v_min"] = tuple(v * 1e3 / u.velocity for v in self.v_min_kms)
        out["v_max"] = tuple(v * 1e3 / u.velocity for v in self.v_max_kms)
        return out

    def describe(self) -> dict:
        """SI parameters (the config) with their normalized values and the units' SI factors."""
        u = self.units()
        d = self.normalized()
        d["dt_s"], d["t_end_s"] = self.dt * u.time, self.t_end * u.time
        d["dx"] = (d["x_max"] - d["x_min"]) / self.nx
        d["dx_m"] = (self.x_max_m - self.x_min_m) / self.nx
        rh = hd.rankine_hugoniot(d["left"], gamma=5.0 / 3.0, electron_temperature=self.electron_temperature)
        d["rankine_hugoniot_ratio"] = rh["compression"]
        L = d["left"]
        b2 = sum(b * b for b in L["B"])
        v_alfven = math.sqrt(b2 / L["density"])
        c_sound = math.sqrt(5.0 / 3.0 * (L["temperature"] + self.electron_temperature))
        d["upstream_alfven_mach"] = abs(L["velocity"][0]) / v_alfven
        d["upstream_sonic_mach"] = abs(L["velocity"][0]) / c_sound
        d["upstream_fast_mach_perp"] = abs(L["velocity"][0]) / math.sqrt(v_alfven**2 + c_sound**2)
        return d


def build_shock(cfg: ShockConfig) -> Case:
    p = cfg.normalized()
    if not (p["x_min"] < p["x_shock"] < p["x_max"]):
        raise ConfigError("x_shock_m must lie inside (x_min_m, x_max_m)")
    if any(hi <= lo for lo, hi in zip(p["v_min"], p["v_max"])):
        raise ConfigError("v_max_kms must exceed v_min_kms in every component")
    grid = PhaseSpaceGrid(
        x_min=(p["x_min"], 0.0, 0.0), x_max=(p["x_max"], 1.0, 1.0), nx=(cfg.nx, 1, 1),
        v_min=p["v_min"], v_max=p["v_max"], nv=(cfg.nv,) * 3,
        boundaries=(("inflow", "outflow"), "periodic", "periodic"),
    )  # fmt: skip
    x = grid.x_centers(0)
    right = x > p["x_shock"]
    L, R = p["left"], p["right"]
    pick = lambda key: np.where(right[:, None], np.asarray(R[key]), np.asarray(L[key]))  # noqa: E731
    n = np.where(right, R["density"], L["density"])
    T = np.where(right, R["temperature"], L["temperature"])
    V = pick("velocity")
    Bc = pick("B")
    if abs(L["B"][0] - R["B"][0]) > 1e-9 * max(1.0, abs(L["B"][0])):
        raise ConfigError("the normal field B_x must be equal on both sides (div B = 0)")
    dtype = jax_dtype(cfg)
    f = dist.maxwellian(grid, n.reshape(-1, 1, 1), V.reshape(-1, 1, 1, 3), T.reshape(-1, 1, 1), dtype=dtype)
    Bf = np.zeros((cfg.nx, 1, 1, 3))
    Bf[:, 0, 0, :] = Bc
    Bf[:, 0, 0, 0] = L["B"][0]
    model = HybridFields(
        Bf,
        b_max=3.0 * max(np.linalg.norm(L["B"]), np.linalg.norm(R["B"])),
        inflow=(FieldInflow(0, 0, L["density"], L["velocity"], L["B"]),),
        **cfg.field_kwargs(),
    )
    ghost = jnp.asarray(f[0:1], dtype)
    n_steps = cfg.n_steps
    probe = hd.make_probe(grid, model, (PROTON,), shock=True)
    return _build_hybrid(
        "shock", cfg, grid, [PROTON], [f], model, cfg.units(), n_steps, inflow=[{(0, 0): ghost}],
        probe=probe, extra_outputs=_plots("shock"),
    )  # fmt: skip


# ---- Kelvin-Helmholtz ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class KhiConfig(HybridConfig):
    """Kelvin-Helmholtz shear layer after Vlasiator's KHB, in the x-y plane (SI inputs).

    ``V_y = V0 tanh(x / width)``, density ``n1`` (x < 0) to ``n2`` (x > 0) across the same tanh,
    temperature from the total pressure balance ``n k T + B^2 / (2 mu0) = p_total``, uniform B
    (along z by default). Periodic along y (the flow; the box is one wavelength ``wavelength_m``),
    outflow in x at ``+-half_width_layers * width``. Seed: ``V_x = seed V0 sin(2 pi y / L_y)
    exp(-(x/width)^2)``.

    KHB's plasma (n, T from the pressure balance, V0, B) is kept, but not its 1e6 m layer: at 2e7 K
    in 1 nT the thermal ion gyroradius is 4.2e6 m, so such a layer is no kinetic equilibrium and
    is smeared by gyration before any KHI grows. The default layer, 2e7 m, is five gyroradii wide.
    KHB's V0 = 400 km/s is transonic on the dense side (V0 / c_s = 1.08 at 1e7 K), where
    compressibility nearly stabilizes the layer (Miura & Pritchett 1982; measured gamma a / V0 ~ 0.03
    at 24^2 x 48^2); the default V0 = 200 km/s grows cleanly. ``--set V0_kms=400`` runs KHB's.
    With B along z the motion stays in the x-y plane, so v_z is not resolved by default
    (``nv_z=1``, 2D2V); ``nv_z=0`` resolves it with ``nv`` cells.
    """

    B_nT: Vec3 = (0.0, 0.0, 1.0)
    V0_kms: float = 200.0  # KHB: 400 km/s, transonic on the dense side: see the docstring
    n1_m3: float = 1e6
    n2_m3: float = 2e6
    total_pressure_Pa: float = 2.765e-10
    width_m: float = 2e7  # KHB: 1e6 m, thinner than the thermal ion gyroradius (4.2e6 m): see the docstring
    wavelength_m: float = 2.8e8  # fastest-growing mode of a tanh layer: k width ~ 0.45
    half_width_layers: float = 3.0
    seed: float = 0.002
    nx: int = 24
    ny: int = 24
    nv: int = 32
    nv_z: int = 1  # velocity cells along z (0: nv; 1: 2D2V, valid while B is along z)
    vmax_kms: float = 2200.0
    dt: float = 0.25
    t_end: float = 250.0
    diag_every: int = 10
    snapshots: int = 6  # density maps written by the khi plots

    def phase_space_cells(self) -> list[int]:
        n = positive_sizes(self, "nx", "ny", "nv")
        nvz = positive_sizes(self, "nv") if self.nv_z == 0 else positive_sizes(self, "nv_z")
        return [n[0] * n[1] * n[2] ** 2 * nvz[0]] if n and nvz else []

    def normalized(self) -> dict:
        u = self.units()
        a = self.width_m / u.length
        pB = sum((b * 1e-9) ** 2 for b in self.B_nT) / (2 * MU_0)
        p_th = self.total_pressure_Pa - pB
        if p_th <= 0:
            raise ConfigError("total_pressure_Pa must exceed the magnetic pressure")
        T = {k: p_th / (getattr(self, f"{k}_m3") * BOLTZMANN) for k in ("n1", "n2")}
        return {
            "width": a,
            "V0": self.V0_kms * 1e3 / u.velocity,
            "n1": self.n1_m3 / u.n0,
            "n2": self.n2_m3 / u.n0,
            "T1": BOLTZMANN * T["n1"] / (PROTON_MASS * u.velocity**2),
            "T2": BOLTZMANN * T["n2"] / (PROTON_MASS * u.velocity**2),
            "T1_K": T["n1"],
            "T2_K": T["n2"],
            "B": tuple(b * 1e-9 / u.B0 for b in self.B_nT),
            "Lx": 2 * self.half_width_layers * a,
            "Ly": self.wavelength_m / u.length,
            "vmax": self.vmax_kms * 1e3 / u.velocity,
        }

    def describe(self) -> dict:
        u = self.units()
        d = self.normalized()
        d["dt_s"], d["t_end_s"] = self.dt * u.time, self.t_end * u.time
        d["k_width"] = 2 * math.pi / d["Ly"] * d["width"]
        cs = math.sqrt(5.0 / 3.0 * max(d["T1"], d["T2"]))
        d["sonic_mach_V0"] = d["V0"] / cs
        d["fast_mach_V0"] = d["V0"] / math.sqrt(cs**2 + sum(b * b for b in d["B"]) / min(d["n1"], d["n2"]))
        d["growth_rate_incompressible"] = hd.michalke_growth_rate(d["k_width"]) * d["V0"] / d["width"]
        return d


def build_khi(cfg: KhiConfig) -> Case:
    p = cfg.normalized()
    if cfg.nx < 4 or cfg.ny < 4:
        raise ConfigError("khi needs nx >= 4 and ny >= 4")
    nvz = cfg.nv_z or cfg.nv
    if nvz == 1 and (p["B"][0] != 0 or p["B"][1] != 0):
        raise ConfigError("nv_z=1 (no v_z) needs B along z")
    vz = p["vmax"] if nvz > 1 else 0.5
    grid = PhaseSpaceGrid(
        x_min=(-p["Lx"] / 2, 0.0, 0.0), x_max=(p["Lx"] / 2, p["Ly"], 1.0), nx=(cfg.nx, cfg.ny, 1),
        v_min=(-p["vmax"], -p["vmax"], -vz), v_max=(p["vmax"], p["vmax"], vz), nv=(cfg.nv, cfg.nv, nvz),
        boundaries=("outflow", "periodic", "periodic"),
    )  # fmt: skip
    x = grid.x_centers(0)[:, None]
    y = grid.x_centers(1)[None, :]
    a, V0 = p["width"], p["V0"]
    s = np.tanh(x / a)
    n = p["n1"] + (p["n2"] - p["n1"]) * 0.5 * (1 + s) + 0 * y
    pth = p["n1"] * p["T1"]
    T = pth / n
    V = np.zeros((*n.shape, 3))
    V[..., 1] = V0 * s
    V[..., 0] = cfg.seed * V0 * np.sin(2 * math.pi * y / p["Ly"]) * np.exp(-((x / a) ** 2))
    dtype = jax_dtype(cfg)
    f = dist.maxwellian(grid, n[..., None], V[:, :, None, :], T[..., None], dtype=dtype)
    Bf = face_field(grid, p["B"])
    bmag = float(np.linalg.norm(p["B"]))
    model = HybridFields(Bf, b_max=1.5 * max(bmag, 1e-3), **cfg.field_kwargs())
    probe = hd.make_probe(grid, model, (PROTON,), mode_axis=1, mode_k=1, khi=True)
    return _build_hybrid(
        "khi", cfg, grid, [PROTON], [f], model, cfg.units(), cfg.n_steps, probe=probe, extra_outputs=_plots("khi")
    )


def _plots(kind: str):
    def hook(case, records, snapshots, out_dir):
        from faiser.cases import plots

        return plots.write_case_plots(kind, case, records, snapshots, out_dir)

    return hook


# ---- larmor / exb under the hybrid model (fields held fixed) ----------------------------------------
def hybrid_gyration_fields(B: Vec3, E: Vec3) -> HybridFields:
    """The hybrid model on one spatial cell with B and E held fixed (``evolve=False``)."""
    Bf = np.zeros((1, 1, 1, 3))
    Bf[...] = np.asarray(B, float)
    return HybridFields(Bf, evolve=False, E_external=tuple(float(e) for e in E), b_max=float(np.linalg.norm(B)))


__all__ = [
    "AlfvenConfig", "ShockConfig", "KhiConfig", "build_alfven", "build_shock", "build_khi",
    "hybrid_gyration_fields",
]  # fmt: skip
