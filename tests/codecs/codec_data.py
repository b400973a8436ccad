"""Synthetic VDFs for the codec tests: drifting anisotropic Maxwellians plus beams (eps_M >= 0.1)."""

import numpy as np

from faiser.codecs.moments import maxwellian
from faiser.data.sparse_blocks import VelocityMesh


def make_vdfs(n: int, nv: int = 24, seed: int = 0, beams: bool = True, dtype=np.float32, floor: float = 1e-7):
    """``n`` VDFs on a ``nv^3`` mesh over [-4, 4]^3: a core Maxwellian and (optionally) a cold beam."""
    mesh = VelocityMesh((nv, nv, nv), (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0))
    rng = np.random.default_rng(seed)
    m = np.zeros((n, 10))
    m[:, 0] = rng.uniform(0.5, 2.0, n)
    m[:, 1:4] = rng.normal(0.0, 0.4, (n, 3))
    m[:, 4:7] = m[:, :1] * rng.uniform(0.25, 0.6, (n, 3))
    m[:, 7] = 0.05 * m[:, 0]
    f = maxwellian(m, mesh, np.float64)
    if beams:
        b = m.copy()
        b[:, 0] *= rng.uniform(0.2, 0.5, n)
        b[:, 1] += rng.uniform(1.2, 2.0, n)
        b[:, 4:7] = b[:, :1] * 0.08
        b[:, 7] = 0
        f += maxwellian(b, mesh, np.float64)
    f[f < floor * f.reshape(n, -1).max(axis=1)[:, None, None, None]] = 0.0
    return f.astype(dtype), mesh
