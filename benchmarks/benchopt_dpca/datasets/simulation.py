"""VDF windows of a faiser simulation (1D3V shock or 2D3V Kelvin-Helmholtz) over P ranks.

The run is simulated once into the cache folder (``benchmark_utils.cache_dir()``; ``benchopt
prepare`` does it ahead of a run). Every rank reads only its own VDFs
(:func:`faiser.reduce.partition.rank_vdfs`) and cuts them into the PCA codec's dimensionless
``window^3`` windows: ``split="spatial"`` gives each rank a block of the domain (non-i.i.d.: one
rank holds the upstream plasma, its neighbour the shock ramp), ``split="random"`` a random share of
the same VDFs (the i.i.d. control).
"""

from benchmark_utils import simulated_run, vdf_window_blocks
from benchopt import BaseDataset


class Dataset(BaseDataset):
    name = "simulation"
    requirements = []
    parameters = {
        "case": ["shock", "khi"],
        "ranks": [2, 8, 16],
        "split": ["spatial", "random"],
        "window": [6],
    }
    test_parameters = {"case": ["shock"], "ranks": [2], "split": ["spatial"]}
    prepare_cache_ignore = ("ranks", "split", "window", "base_seed")

    def prepare(self):
        simulated_run(self.case)

    def get_data(self):
        path = simulated_run(self.case)
        blocks, neighbours, decomp = vdf_window_blocks(
            [str(path)], self.ranks, self.split, self.window, seed=self.get_seed(use_repetition=True)
        )
        return dict(blocks=blocks, neighbours=neighbours, decomposition=tuple(decomp), noniid=self.split == "spatial")
