"""Device meshes with named axes (``data`` for batches, ``space`` for the spatial decomposition).

One place builds every mesh, so the CLI's ``--devices N`` and the configs' axis names mean the same
everywhere. PartitionSpecs are written as tuples of axis names (or None) in configs and turned
into :class:`jax.sharding.PartitionSpec` here.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from faiser.errors import DistributedError

DATA = "data"
SPACE = "space"
# Domain decomposition of the reference stepper: one mesh axis per split spatial axis.
SPACE_AXES = ("space_x", "space_y", "space_z")


def make_mesh(
    shape: int | Sequence[int] | None = None,
    axis_names: str | Sequence[str] = (DATA,),
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh over ``prod(shape)`` devices (default: all devices, one axis).

    Args:
      shape: devices per axis; an int for a 1D mesh; None uses every device on the first axis.
      axis_names: one name per axis, e.g. ``("data",)`` or ``("data", "space")``.
      devices: the devices to use (default ``jax.devices()``, i.e. all processes' devices).

    Raises:
      DistributedError: more devices asked for than exist, or shape and names disagree.
    """
    names = (axis_names,) if isinstance(axis_names, str) else tuple(axis_names)
    devs = list(jax.devices() if devices is None else devices)
    if shape is None:
        shape = (len(devs),) + (1,) * (len(names) - 1)
    elif isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(names):
        raise DistributedError(f"mesh shape {shape} has {len(shape)} axes but names {names} have {len(names)}")
    n = 1
    for s in shape:
        if s < 1:
            raise DistributedError(f"mesh shape {shape} must be positive")
        n *= s
    if n > len(devs):
        raise DistributedError(
            f"asked for {n} devices but only {len(devs)} exist ({devs[0].platform}); on CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before jax is imported"
        )
    # Auto axes: the classic jit-with-shardings (pjit) semantics, on jax 0.10 and 0.11 alike.
    return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names), devices=devs[:n])


def partition_spec(spec: Sequence[str | Sequence[str] | None] | PartitionSpec | None) -> PartitionSpec:
    """A PartitionSpec from its JSON form, e.g. ``["data", None]`` (None: fully replicated)."""
    if spec is None:
        return PartitionSpec()
    if isinstance(spec, PartitionSpec):
        return spec
    return PartitionSpec(*[tuple(s) if isinstance(s, list) else s for s in spec])


def sharding(mesh: Mesh, spec: Sequence[str | Sequence[str] | None] | PartitionSpec | None) -> NamedSharding:
    """``NamedSharding(mesh, partition_spec(spec))``."""
    return NamedSharding(mesh, partition_spec(spec))
