"""The package version, importable without the package's ``__init__`` (no import cycles)."""

__version__ = "0.1.0"
