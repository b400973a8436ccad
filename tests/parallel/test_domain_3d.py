"""A 3D decomposition over 8 fake CPU devices, (2, 2, 2) blocks: a hybrid run with two ion species
(protons and alphas), an inflow face along x whose ghost values vary along y and z (the split axes
it does not face, so every block must take its own slice of them), outflow along z and periodic y.

The suite's other tests see 4 devices (``conftest.py``), so this runs in a subprocess with its own
``XLA_FLAGS``; float64 shows the agreement far below the 1e-6 asked.
"""

import os
import subprocess
import sys

SCRIPT = r"""
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from faiser.grid import PhaseSpaceGrid
from faiser.parallel import domain
from faiser.parallel.domain import DomainStepper
from faiser.vlasov import distributions as dist
from faiser.cases.hybrid import ALPHA
from faiser.vlasov.hybrid_fields import FieldInflow, HybridFields, face_field
from faiser.vlasov.state import PROTON, State
from faiser.vlasov.stepper import Stepper

nx, nv = (8, 8, 8), 4
grid = PhaseSpaceGrid(x_min=(0.0, 0.0, 0.0), x_max=(8.0, 8.0, 8.0), nx=nx, v_min=(-2.0,) * 3, v_max=(2.0,) * 3,
                      nv=(nv,) * 3, boundaries=(("inflow", "outflow"), "periodic", "outflow"))
x, y, z = np.meshgrid(*(grid.x_centers(d) for d in range(3)), indexing="ij")
n = 1.0 + 0.2 * np.sin(2 * np.pi * y / 8) * np.cos(2 * np.pi * z / 8) + 0.1 * np.cos(2 * np.pi * x / 8)
V = np.zeros((*nx, 3))
V[..., 0], V[..., 1] = 0.4, 0.1 * np.cos(2 * np.pi * z / 8)
fp = dist.maxwellian(grid, n, V, 0.3, dtype=jnp.float64)
fa = dist.maxwellian(grid, 0.05 * n, V, ALPHA.mass * 0.1, mass=ALPHA.mass, dtype=jnp.float64)
inflow = FieldInflow(0, 0, 1.1, (0.4, 0.0, 0.0), (1.0, 0.3, 0.2))
model = HybridFields(face_field(grid, (1.0, 0.3, 0.2)), b_max=3.0, electron_temperature=0.1, inflow=(inflow,))
shape = 1 + 0.3 * np.sin(2 * np.pi * (y[:1] + 2 * z[:1]) / 8)[..., None, None, None]
ghosts = [{(0, 0): jnp.asarray(f[:1] * shape)} for f in (fp, fa)]
st = Stepper(grid, (PROTON, ALPHA), model, 0.05, inflow=ghosts)
s0 = st.initialize(State.create((fp, fa), dtype=jnp.float64))
ref = jax.jit(lambda s: st.multi_step(s, 1))(s0)
ds = DomainStepper(st, blocks=(2, 2, 2))
assert dict(ds.mesh.shape) == {"space_x": 2, "space_y": 2, "space_z": 2}
out = jax.jit(lambda s: ds.multi_step(s, 1))(ds.shard(s0))
pairs = {"f_proton": (ref.f[0], out.f[0]), "f_alpha": (ref.f[1], out.f[1]), "E": (ref.E, out.E),
         "B": (ref.B, out.B), "mass_lost": (ref.mass_lost, out.mass_lost)}
pairs.update({k: (ref.aux[k], out.aux[k]) for k in ref.aux})
for k, (a, b) in pairs.items():
    a, b = np.asarray(a, float), np.asarray(b, float)
    print(f"{k} {np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300):.3e}")
moved = np.max(np.abs(np.asarray(ref.f[1]) - np.asarray(fa))) / np.max(np.asarray(fa))
print(f"moved {moved:.3e}")

# mutant: every block takes the first block's slice of the inflow ghosts (the only values sliced
# with an axis skipped); the comparison must see it
local = domain.ShardMapComm.local
first = lambda x, p, skip: x[tuple(slice(None) if d in skip else slice(0, x.shape[d] // p[d]) for d in range(3))]
domain.ShardMapComm.local = lambda self, x, skip=(): first(x, self.blocks, skip) if skip else local(self, x)
bad = jax.jit(lambda s: DomainStepper(st, blocks=(2, 2, 2)).multi_step(s, 1))(ds.shard(s0))
err = max(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))) for a, b in zip(ref.f, bad.f))
print(f"mutant {err:.3e}")
"""


def _run() -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return {k: float(v) for k, v in (line.split() for line in res.stdout.splitlines() if line.strip())}


def test_3d_two_species_inflow_over_2x2x2_blocks_matches_one_domain():
    err = _run()
    assert err["moved"] > 1e-3  # the alphas moved: the comparison covers a changed state
    for name in ("f_proton", "f_alpha", "E", "B", "mass_lost", "B_face"):
        assert err[name] <= 1e-6, (name, err)
    # the comparison can fail: blocks that all take the first block's ghost slice differ
    assert err["mutant"] > 1e-6, err
