"""Nested frozen-dataclass configs: dotted / bare / aliased ``--set`` keys, JSON round trip, clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from faiser.config import JsonConfig, NestedConfig, apply_overrides, config_keys, resolve_key
from faiser.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class _Opt(JsonConfig):
    lr: float = 1e-3
    steps: int = 10
    clip: float | None = None


@dataclasses.dataclass(frozen=True)
class _Net(JsonConfig):
    width: int = 8
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if self.width < 1:
            raise ConfigError("width must be >= 1")


@dataclasses.dataclass(frozen=True)
class _Cfg(NestedConfig):
    KEY_ALIASES = {"enc_lr": "encoder.lr"}

    net: _Net = dataclasses.field(default_factory=_Net)
    encoder: _Opt = dataclasses.field(default_factory=_Opt)
    decoder: _Opt = dataclasses.field(default_factory=lambda: _Opt(lr=1e-2))
    seed: int = 0


def test_keys_are_dotted_paths():
    keys = config_keys(_Cfg)
    assert list(keys) == ["net.width", "net.sizes", "encoder.lr", "encoder.steps", "encoder.clip", "decoder.lr",
                          "decoder.steps", "decoder.clip", "seed"]  # fmt: skip
    assert keys["encoder.lr"] is float and keys["seed"] is int


def test_dotted_bare_and_aliased_keys():
    c = apply_overrides(_Cfg(), {"encoder.lr": "0.5", "width": "16", "seed": "3", "sizes": "4,5,6"})
    assert c.encoder.lr == 0.5 and c.decoder.lr == 1e-2 and c.net == _Net(width=16, sizes=(4, 5, 6)) and c.seed == 3
    assert apply_overrides(_Cfg(), {"enc_lr": 2.0}).encoder.lr == 2.0
    assert resolve_key(_Cfg, "width") == "net.width" and resolve_key(_Cfg(), "enc_lr") == "encoder.lr"
    # Python values through of() / replace()
    c2 = _Cfg.of(width=4, enc_lr=0.1).replace(seed=7, **{"decoder.steps": 5})
    assert (c2.net.width, c2.encoder.lr, c2.seed, c2.decoder.steps) == (4, 0.1, 7, 5)
    # Optional fields: "none" clears
    c3 = apply_overrides(_Cfg(), {"encoder.clip": "1.5", "decoder.clip": "none"})
    assert c3.encoder.clip == 1.5 and c3.decoder.clip is None


def test_ambiguous_unknown_group_and_bad_values():
    with pytest.raises(ConfigError, match="ambiguous.*encoder.lr, decoder.lr"):
        apply_overrides(_Cfg(), {"lr": "1"})
    with pytest.raises(ConfigError, match="unknown key 'nope'.*known keys: .*encoder.lr"):
        apply_overrides(_Cfg(), {"nope": "1"})
    with pytest.raises(ConfigError, match="group.*encoder.lr"):
        apply_overrides(_Cfg(), {"encoder": "1"})
    with pytest.raises(ConfigError, match="encoder.steps"):
        apply_overrides(_Cfg(), {"encoder.steps": "1.5"})
    with pytest.raises(ConfigError, match="width"):  # the group's own validation
        apply_overrides(_Cfg(), {"width": "0"})
    assert apply_overrides(_Cfg(), {"lr": "1"}, ignore=("lr",)) == _Cfg()


def test_json_round_trip_and_flat_layout_rejected():
    c = _Cfg.of(width=3, sizes=(7,), enc_lr=0.25, seed=9)
    d = c.to_json()
    assert d["net"] == {"width": 3, "sizes": [7]} and d["encoder"]["lr"] == 0.25
    assert _Cfg.from_json(d) == c and _Cfg.from_json(json.dumps(d)) == c
    assert _Cfg.from_json({"seed": 1}) == _Cfg(seed=1)  # missing groups take their defaults
    with pytest.raises(ConfigError, match="unknown _Cfg keys"):
        _Cfg.from_json({"width": 3, "seed": 1})  # a flat (old) layout
    with pytest.raises(ConfigError, match="JSON object"):
        _Cfg.from_json({"net": 3})


def test_latent_train_config_keys():
    pytest.importorskip("flax")
    from faiser.latent.train import LatentTrainConfig

    cfg = apply_overrides(
        LatentTrainConfig(),
        {"ae_steps": "300", "prop_steps": "200", "autoencoder.lr": "1e-3", "unroll": "2", "hidden": "8",
         "field_weight": "0.5", "checkpoint_every": "4"},
    )  # fmt: skip
    assert (cfg.autoencoder.steps, cfg.propagator.steps, cfg.autoencoder.lr) == (300, 200, 1e-3)
    assert cfg.propagator.unroll == 2 and cfg.architecture.hidden == 8 and cfg.loss.field_weight == 0.5
    assert cfg.checkpoint_every == 4 and cfg.propagator.lr == LatentTrainConfig().propagator.lr
    assert LatentTrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="autoencoder.lr, propagator.lr"):
        apply_overrides(LatentTrainConfig(), {"lr": "1e-3"})
    for bad in ({"unroll": 0}, {"prop_batch": 0}, {"ae_lr": 0.0}, {"devices": 0}, {"padding": "x"}):
        with pytest.raises(ConfigError):
            LatentTrainConfig.of(**bad)
    flat = {"ae_steps": 600, "prop_steps": 600, "unroll": 4, "hidden": 64}  # the layout of older model files
    with pytest.raises(ConfigError, match="unknown LatentTrainConfig keys"):
        LatentTrainConfig.from_json(flat)


def test_cli_set_keys(tmp_path, capsys):
    pytest.importorskip("flax")
    from faiser.cli import main

    out = tmp_path / "m"
    assert main(["train-latent", "--data", str(tmp_path / "none"), "--out", str(out), "--set", "lr=1e-3"]) == 2
    assert "autoencoder.lr, propagator.lr" in capsys.readouterr().err
    assert main(["train-latent", "--data", str(tmp_path / "none"), "--out", str(out), "--set", "bogus=1"]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
