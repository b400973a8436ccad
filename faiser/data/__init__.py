"""Data on disk: trajectory datasets (zarr), sparse-block VDFs, Vlasiator VLSV files, loaders.

Nothing here is imported by :mod:`faiser.vlasov`; this package may import the numerical core.
The public names below are imported lazily (``from faiser.data import open_dataset``).
"""

from importlib import import_module

_PUBLIC = {
    "Dataset": "dataset",
    "DatasetWriter": "dataset",
    "open_dataset": "dataset",
    "VelocityMesh": "sparse_blocks",
    "SparseBlocks": "sparse_blocks",
    "dense_to_sparse": "sparse_blocks",
    "sparse_to_dense": "sparse_blocks",
    "VlsvFile": "vlsv",
    "open_vlsv": "vlsv",
    "write_vlsv": "vlsv",
    "write_snapshot": "vlsv",
    "inspect_file": "vlsv",
    "ZarrSource": "sources",
    "VlsvSource": "sources",
    "open_source": "sources",
    "resolve_runs": "sources",
    "is_dataset": "sources",
    "is_sweep_root": "sources",
    "VdfLoader": "loaders",
    "PatchLoader": "loaders",
    "WindowLoader": "loaders",
    "NormStats": "normalization",
    "fit_normalization": "normalization",
    "normalize": "normalization",
    "denormalize": "normalization",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f"faiser.data.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'faiser.data' has no attribute {name!r}")
