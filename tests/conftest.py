"""Test-wide setup: four fake CPU devices, so sharded code paths run on any machine.

XLA reads the flag when jax first initializes its backends, so it must be set before any test
module imports jax. A user's own XLA_FLAGS (e.g. on a GPU machine) are kept and extended.
"""

import os

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()
