"""Synthetic low-rank data with a known spectrum over P ranks.

Every rank draws ``n_per_rank`` samples from ``shared`` directions common to all ranks (standard
deviations ``geomspace(8, 4)``) plus ``private`` directions of its own (standard deviations
``geomspace(3, 1)`` times a per-rank factor in [0.5, 1.5]), around a rank-specific mean, with
isotropic noise ``noise``. ``split="non-iid"`` keeps every rank's own samples on that rank (what a
spatial domain decomposition does); ``split="iid"`` deals the same samples out at random
(:func:`faiser.reduce.partition.assign`, ``mode="random"``), so both splits have the same
centralized solution and differ only in how the data sit on the ranks.
"""

import numpy as np
from benchopt import BaseDataset

from faiser.reduce import block_neighbours
from faiser.reduce.partition import assign, blocks_for


class Dataset(BaseDataset):
    name = "synthetic"
    requirements = []
    parameters = {
        "ranks": [2, 8, 16],
        "split": ["iid", "non-iid"],
        "dim": [96],
        "n_per_rank": [100],
        "shared": [4],
        "private": [3],
        "noise": [0.01],
    }
    test_parameters = {"ranks": [4], "split": ["non-iid"], "dim": [24], "n_per_rank": [30]}

    def get_data(self):
        rng = np.random.default_rng(self.get_seed(use_repetition=True))
        P, d = self.ranks, self.dim
        shared = np.linalg.qr(rng.standard_normal((d, self.shared)))[0].T
        shared_std = np.geomspace(8.0, 4.0, self.shared)
        origin = rng.standard_normal(d)
        parts = []
        for _ in range(P):
            own = np.linalg.qr(rng.standard_normal((d, self.private)))[0].T
            own_std = np.geomspace(3.0, 1.0, self.private) * rng.uniform(0.5, 1.5)
            std = np.concatenate([shared_std, own_std])
            coef = rng.standard_normal((self.n_per_rank, len(std))) * std
            mean = origin + 2.0 * rng.standard_normal(d) / np.sqrt(d)
            noise = self.noise * rng.standard_normal((self.n_per_rank, d))
            parts.append(mean + coef @ np.vstack([shared, own]) + noise)
        if self.split == "iid":
            X = np.vstack(parts)
            owner = assign(np.zeros((len(X), 3)), P, mode="random", seed=int(rng.integers(2**31)))
            parts = [X[owner == r] for r in range(P)]
        elif self.split != "non-iid":
            raise ValueError(f"unknown split {self.split!r}: iid or non-iid")
        grid = blocks_for(P, (1.0, 1.0, 0.0))  # ranks on a 2D grid of blocks
        return dict(
            blocks=parts, neighbours=block_neighbours(grid), decomposition=tuple(grid), noniid=self.split == "non-iid"
        )
