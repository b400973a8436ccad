"""Data-parallel training of the latent solver: 4 fake CPU devices match 1 device (issue #7)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from faiser.latent.data import Trajectories
from faiser.latent.model import flat_state
from faiser.latent.train import LatentTrainConfig, train_latent


def _synthetic(runs: int = 2, times: int = 5) -> Trajectories:
    """Drifting Maxwellians on 8 cells x 8^3 velocities; the drift grows with time and with the run's ``a``."""
    v = np.linspace(-1, 1, 8)
    vx, vy, vz = np.meshgrid(v, v, v, indexing="ij")
    x = np.arange(8)
    f = np.zeros((runs, times, 8, 1, 1, 8, 8, 8), np.float32)
    for r in range(runs):
        for t in range(times):
            for i in x:
                u = 0.1 * (r + 1) * np.sin(2 * np.pi * (i / 8 + 0.05 * t))
                f[r, t, i, 0, 0] = np.exp(-((vx - u) ** 2 + vy**2 + vz**2) / 0.3)
    E = np.zeros((runs, times, 8, 1, 1, 3), np.float32)
    E[..., 0] = np.linspace(0, 1, 8)[None, None, :, None, None]
    B = np.ones((runs, times, 8, 1, 1, 3), np.float32)
    return Trajectories(
        f=f, E=E, B=B, times=np.arange(times, dtype=np.float64), configs=[{"a": float(r)} for r in range(runs)],
        case="synthetic", species="proton", grid={}, dt=0.1, snapshot_steps=1, names=[f"r{r}" for r in range(runs)],
    )  # fmt: skip


@pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 (fake) devices")
def test_four_devices_match_one():
    data = _synthetic()
    cfg = LatentTrainConfig.of(
        ae_steps=6, prop_steps=5, ae_batch=4, prop_batch=4, unroll=2, hidden=8, cell_dim=8, code_dim=8, code_groups=2,
        prop_hidden=8, velocity_channels=4, codebook_size=16, vq_warmup_steps=2,
    )  # fmt: skip
    one = train_latent(data, cfg, progress=False)
    four = train_latent(data, cfg.replace(devices=4), progress=False)
    for mod in ("vqvae", "propagator"):
        a, b = flat_state(getattr(one, mod), mod), flat_state(getattr(four, mod), mod)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for stage in ("vqvae", "propagator"):
        np.testing.assert_allclose(one.meta["history"][stage]["loss"], four.meta["history"][stage]["loss"], rtol=1e-5)


def test_batch_must_divide_over_devices():
    from faiser.errors import ConfigError

    if len(jax.devices()) < 3:
        pytest.skip("needs 3 devices")
    with pytest.raises(ConfigError, match="divide"):
        train_latent(
            _synthetic(), LatentTrainConfig.of(ae_steps=1, prop_steps=1, ae_batch=4, devices=3), progress=False
        )
