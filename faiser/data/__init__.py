"""Data on disk: trajectory datasets (zarr), sparse-block VDFs, Vlasiator VLSV files, loaders.

Nothing here is imported by :mod:`faiser.vlasov`; this package may import the numerical core.
"""
