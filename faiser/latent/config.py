"""Settings of the latent-solver training (:mod:`faiser.latent.train`): one nested, frozen, JSON-serialisable
:class:`LatentTrainConfig` made of groups::

    LatentTrainConfig(
        architecture=LatentArchitecture(...),   # the networks (hidden, code_dim, prop_hidden, padding, ...)
        autoencoder=AutoencoderStage(...),      # stage 1: steps, batch, lr, warmup_steps, ..., vq_warmup_steps
        propagator=PropagatorStage(...),        # stage 2: steps, batch, lr, ..., stride, unroll, pushforward, ...
        loss=LossWeights(...),                  # reconstruction terms of both stages
        conditions="auto", species="", devices=1, checkpoint_every=0, seed=0,
    )

Keys (``faiser train-latent --set KEY=VALUE``, :meth:`LatentTrainConfig.of`, ``cfg.replace``): dotted
(``autoencoder.lr``), a bare leaf name that only one key ends in (``unroll``, ``vq_warmup_steps``,
``hidden``), or a former flat name (``ae_steps``, ``ae_batch``, ``ae_lr``, ``prop_steps``,
``prop_batch``, ``prop_lr``). Latent model files store ``cfg.to_json()`` (nested dicts).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import optax

from faiser.config import JsonConfig, NestedConfig
from faiser.errors import ConfigError
from faiser.train.loop import lr_schedule, make_optimizer

__all__ = [
    "AutoencoderStage",
    "LatentArchitecture",
    "LatentTrainConfig",
    "LossWeights",
    "PropagatorStage",
    "StageConfig",
]


@dataclasses.dataclass(frozen=True)
class LatentArchitecture(JsonConfig):
    """The networks (see :class:`PhaseSpaceVQVAEConfig`, :class:`PropagatorConfig`).

    Attributes:
      velocity_stages, spatial_stages: stride-2 stages (-1: as many as fit, at most 2 / 1).
      velocity_channels, cell_dim, hidden, n_res, code_dim, codebook_size, code_groups: the 6D VQ-VAE.
      prop_hidden, prop_blocks: the propagator.
      padding: ``auto`` (circular for periodic cases), ``zeros`` or ``circular``.
    """

    velocity_stages: int = -1
    spatial_stages: int = -1
    velocity_channels: int = 16
    cell_dim: int = 32
    hidden: int = 64
    n_res: int = 2
    code_dim: int = 32
    codebook_size: int = 256
    code_groups: int = 8
    prop_hidden: int = 64
    prop_blocks: int = 3
    padding: str = "auto"

    def __post_init__(self):
        if self.padding not in ("auto", "zeros", "circular"):
            raise ConfigError(f"padding must be auto, zeros or circular, got {self.padding!r}")


@dataclasses.dataclass(frozen=True)
class StageConfig(JsonConfig):
    """Optimisation of one training stage: Adam, global-norm clipping, linear warmup + cosine decay.

    Attributes:
      steps: optimizer steps. batch: global batch (a multiple of ``devices``). lr: peak learning rate.
      warmup_steps: linear warmup from 0 (-1: ``min(50, max(steps // 10, 1))``).
      lr_final: final learning rate as a fraction of ``lr``. grad_clip: global-norm clip (0: none).
    """

    steps: int = 600
    batch: int = 8
    lr: float = 1e-3
    warmup_steps: int = -1
    lr_final: float = 0.05
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.steps < 0 or self.batch < 1 or self.warmup_steps < -1:
            raise ConfigError(f"{type(self).__name__}: steps >= 0, batch >= 1 and warmup_steps >= -1 are required")
        if not (self.lr > 0 and 0 <= self.lr_final <= 1 and self.grad_clip >= 0):
            raise ConfigError(f"{type(self).__name__}: lr > 0, 0 <= lr_final <= 1 and grad_clip >= 0 are required")

    def optimizer(self) -> optax.GradientTransformation:
        """The stage's optax optimizer (:func:`faiser.train.loop.make_optimizer`)."""
        warm = self.warmup_steps if self.warmup_steps >= 0 else min(50, max(self.steps // 10, 1))
        sched = lr_schedule(self.lr, self.steps, warm, self.lr * self.lr_final)
        return make_optimizer(sched, grad_clip=self.grad_clip or None)


@dataclasses.dataclass(frozen=True)
class AutoencoderStage(StageConfig):
    """Stage 1, the 6D VQ-VAE: :class:`StageConfig` plus ``vq_warmup_steps``, the steps during which the
    decoder gets the continuous encoder output (a plain autoencoder; quantization starts after)."""

    lr: float = 5e-3
    vq_warmup_steps: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.vq_warmup_steps < 0:
            raise ConfigError("vq_warmup_steps must be >= 0")


@dataclasses.dataclass(frozen=True)
class PropagatorStage(StageConfig):
    """Stage 2, the latent propagator: :class:`StageConfig` plus

    Attributes:
      stride: snapshots per latent step. unroll: latent steps per training window.
      pushforward: stop the gradient between unrolled steps. noise_std: Gaussian noise on the initial
        latent state (in latent standard deviations). latent_weight, f_weight: weights of the latent
        MSE and of the decoded-f loss (``loss.moment_weight`` also applies). requantize: snap every
        predicted state to the codebook. remat: ``jax.checkpoint`` each unrolled step.
    """

    stride: int = 1
    unroll: int = 4
    pushforward: bool = False
    noise_std: float = 0.0
    latent_weight: float = 1.0
    f_weight: float = 1.0
    requantize: bool = False
    remat: bool = True

    def __post_init__(self):
        super().__post_init__()
        if min(self.stride, self.unroll) < 1:
            raise ConfigError("stride and unroll must be >= 1")
        if min(self.noise_std, self.latent_weight, self.f_weight) < 0:
            raise ConfigError("noise_std, latent_weight and f_weight must be >= 0")


@dataclasses.dataclass(frozen=True)
class LossWeights(JsonConfig):
    """Reconstruction terms of both stages: ``field_weight`` x MSE of the normalized fields,
    ``moment_weight`` x :func:`moment_loss`, ``f_space_weight`` (see :func:`recon_loss`)."""

    field_weight: float = 1.0
    moment_weight: float = 1.0
    f_space_weight: float = 1.0

    def __post_init__(self):
        if min(self.field_weight, self.moment_weight, self.f_space_weight) < 0:
            raise ConfigError("loss weights must be >= 0")


@dataclasses.dataclass(frozen=True)
class LatentTrainConfig(NestedConfig):
    """Everything ``faiser train-latent --set`` can change (frozen, nested, JSON-serialisable).

    Attributes:
      architecture: :class:`LatentArchitecture`. autoencoder: stage 1 (:class:`AutoencoderStage`).
      propagator: stage 2 (:class:`PropagatorStage`). loss: :class:`LossWeights` of both stages.
      conditions: ``auto`` (config entries that vary across the runs), ``none``, or comma-separated keys.
      species: which species (default: the datasets' only one). devices: data-parallel devices.
      checkpoint_every: checkpoint each stage every this many steps (and at its end) when a checkpoint
        directory is given (``faiser train-latent`` uses ``MODEL_DIR/checkpoints``; ``--resume``).
      seed: parameters, batches and noise.

    Build and change it by key (see the module docstring): ``LatentTrainConfig.of(ae_steps=300, unroll=2)``,
    ``cfg.replace(**{"autoencoder.lr": 1e-3})``.
    """

    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "ae_steps": "autoencoder.steps", "ae_batch": "autoencoder.batch", "ae_lr": "autoencoder.lr",
        "prop_steps": "propagator.steps", "prop_batch": "propagator.batch", "prop_lr": "propagator.lr",
    }  # fmt: skip

    architecture: LatentArchitecture = dataclasses.field(default_factory=LatentArchitecture)
    autoencoder: AutoencoderStage = dataclasses.field(default_factory=AutoencoderStage)
    propagator: PropagatorStage = dataclasses.field(default_factory=PropagatorStage)
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    conditions: str = "auto"
    species: str = ""
    devices: int = 1
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.devices < 1 or self.checkpoint_every < 0:
            raise ConfigError("devices >= 1 and checkpoint_every >= 0 are required")
