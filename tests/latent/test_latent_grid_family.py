"""A family whose grid changes with its parameter: Landau damping over k (the box is 2 pi / k, the
cell counts stay). The latent solver trains across the extents and rolls out at a held-out k."""

import warnings

import numpy as np
import pytest

from faiser.errors import ConfigError, DatasetError, ExtrapolationWarning
from faiser.latent.data import load_trajectories
from faiser.latent.rollout import rollout
from faiser.latent.train import LatentTrainConfig, train_latent
from faiser.run.simulate import simulate

BASE = {"nx": 16, "nv": 32, "dt": 0.1, "vmax": 6.0, "alpha": 0.1, "t_end": 2.0}
EVERY = 5
TINY = {"hidden": 8, "cell_dim": 8, "code_dim": 8, "code_groups": 4, "prop_hidden": 8, "velocity_channels": 4,
        "ae_batch": 4, "prop_batch": 4}  # fmt: skip


@pytest.fixture(scope="module")
def k_family(tmp_path_factory):
    root = tmp_path_factory.mktemp("landau_k")
    for k in (0.4, 0.6):
        simulate("landau", {**BASE, "k": k}, root / f"k={k}", progress=False, save_every=EVERY)
    return root


def test_landau_over_k_trains_and_rolls_out_at_a_held_out_k(k_family, tmp_path):
    data = load_trajectories([k_family / "k=0.4", k_family / "k=0.6"])
    assert data.grid_varies and data.varying_keys() == ["k"]
    lengths = [g["x_max"][0] - g["x_min"][0] for g in data.grids]
    np.testing.assert_allclose(lengths, [2 * np.pi / 0.4, 2 * np.pi / 0.6], rtol=1e-6)
    model = train_latent(data, LatentTrainConfig.of(ae_steps=20, prop_steps=10, unroll=1, **TINY), progress=False)
    assert model.meta["grid_varies"] and model.norm.cond_keys == ("k",)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)  # k = 0.5 lies inside the trained range
        res = rollout(model, "landau", {**BASE, "k": 0.5}, tmp_path / "r", progress=False, save_every=EVERY)
    assert res.case.grid.x_max[0] == pytest.approx(2 * np.pi / 0.5)  # the held-out box, not a trained one
    f = np.asarray(res.states[-1].f[0])
    assert f.shape == (16, 1, 1, 32, 1, 1) and np.all(np.isfinite(f)) and np.all(f >= 0)
    with pytest.warns(ExtrapolationWarning, match=r"k = 0.8 .*\[0.4, 0.6\]"):
        rollout(model, "landau", {**BASE, "k": 0.8}, None, progress=False)
    with pytest.raises(ConfigError, match="grid"):  # other cell counts: the networks do not fit
        rollout(model, "landau", {**BASE, "k": 0.5, "nx": 32}, None, progress=False)


def test_runs_with_other_cell_counts_are_refused(k_family, tmp_path):
    simulate("landau", {**BASE, "k": 0.5, "nx": 8}, tmp_path / "nx8", progress=False, save_every=EVERY)
    with pytest.raises(DatasetError, match="grid cells"):
        load_trajectories([k_family / "k=0.4", tmp_path / "nx8"])
    simulate("landau", {**BASE, "k": 0.5, "dt": 0.05, "t_end": 1.0}, tmp_path / "dt", progress=False, save_every=EVERY)
    with pytest.raises(DatasetError, match="time step"):
        load_trajectories([k_family / "k=0.4", tmp_path / "dt"])
