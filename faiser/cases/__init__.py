"""The case catalog: named physics problems built into (stepper, initial state).

``build_case(name, config)`` and ``default_config(name)`` (see :mod:`faiser.cases.registry`); the
configs live beside their builders (:mod:`~faiser.cases.electrostatic`,
:mod:`~faiser.cases.gyration`, :mod:`~faiser.cases.hybrid`), case plots in :mod:`~faiser.cases.plots`.
"""

from faiser.cases.base import Case, CommonConfig
from faiser.cases.registry import CASES, build_case, default_config

__all__ = ["CASES", "Case", "CommonConfig", "build_case", "default_config"]
