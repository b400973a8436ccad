"""Latent model files store the nested LatentTrainConfig; files with the old flat layout fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from faiser.errors import CheckpointError
from faiser.latent.data import Normalization
from faiser.latent.model import LatentModel, flat_state, load_latent_model, save_latent_model
from faiser.latent.train import LatentTrainConfig, model_configs_for


def _model(cfg: LatentTrainConfig) -> LatentModel:
    from faiser.models.propagator import LatentPropagator
    from faiser.models.vqvae6d import PhaseSpaceVQVAE

    vq_cfg, p_cfg = model_configs_for((8, 1, 1), (8, 8, 8), "landau", cfg, 0)
    meta = {"case": "landau", "steps_per_latent": 5, "latent_dt": 0.5, "train_config": cfg.to_json()}
    return LatentModel(PhaseSpaceVQVAE(vq_cfg, rngs=nnx.Rngs(0)), LatentPropagator(p_cfg, rngs=nnx.Rngs(1)),
                       Normalization(), meta)  # fmt: skip


def test_nested_config_round_trip_and_flat_file_rejected(tmp_path):
    cfg = LatentTrainConfig.of(hidden=8, cell_dim=8, code_dim=8, code_groups=2, prop_hidden=8, velocity_channels=4,
                               codebook_size=16, requantize=True)  # fmt: skip
    m = _model(cfg)
    assert m.requantize
    save_latent_model(tmp_path / "m", m)
    back = load_latent_model(tmp_path / "m")
    assert LatentTrainConfig.from_json(back.meta["train_config"]) == cfg and back.requantize
    a, b = flat_state(m.vqvae, "vqvae"), flat_state(back.vqvae, "vqvae")
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # a model.json with the flat train config of older versions: a CheckpointError that says so
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    doc["train_config"] = {"ae_steps": 600, "prop_steps": 600, "hidden": 8, "requantize": True}
    (tmp_path / "m" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="train_config.*flat"):
        load_latent_model(tmp_path / "m")
