"""VDF windows of a real Vlasiator file, split over ranks by cells.

``bulk.0000004.vlsv`` (the test data of Vlasiator.jl: a 1D run, 10 cells with 40^3 proton VDFs) is
looked for in ``$FAISER_VLASIATOR_DATA`` or ``../shared/data/vlasiator/`` beside the project root;
without it the dataset is skipped (the objective skips on ``skip_reason``). ``split="spatial"``
gives each rank a contiguous run of cells, ``"random"`` a random share.
"""

import os
from pathlib import Path

from benchmark_utils import vdf_window_blocks
from benchopt import BaseDataset

FILE = "bulk.0000004.vlsv"


def vlasiator_file() -> Path:
    root = Path(__file__).resolve().parents[3]  # the project root
    folder = Path(os.environ.get("FAISER_VLASIATOR_DATA") or root.parent / "shared" / "data" / "vlasiator")
    return folder / FILE


class Dataset(BaseDataset):
    name = "vlasiator"
    requirements = []
    parameters = {
        "ranks": [2],
        "split": ["spatial", "random"],
        "window": [6],
    }
    test_parameters = {"ranks": [2], "split": ["spatial"]}

    def get_data(self):
        path = vlasiator_file()
        if not path.is_file():
            return dict(blocks=None, neighbours=None, skip_reason=f"Vlasiator file {path} not found")
        blocks, neighbours, decomp = vdf_window_blocks(
            [str(path)], self.ranks, self.split, self.window, seed=self.get_seed(use_repetition=True)
        )
        return dict(blocks=blocks, neighbours=neighbours, decomposition=tuple(decomp), noniid=self.split == "spatial")
