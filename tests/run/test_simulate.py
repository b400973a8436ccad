"""The run driver: the step actually used is reported beside the requested one."""

from __future__ import annotations

import dataclasses
import json

import pytest

from faiser.cases import default_config
from faiser.run.simulate import simulate


def test_common_config_steps_and_effective_dt():
    cfg = default_config("landau")
    c = dataclasses.replace(cfg, dt=0.3, t_end=1.0)
    assert c.n_steps == 4
    assert c.effective_dt == pytest.approx(0.25)
    assert c.dt_shortened
    exact = dataclasses.replace(cfg, dt=0.25, t_end=1.0)
    assert exact.n_steps == 4 and not exact.dt_shortened


def test_shortened_dt_is_reported_in_config_and_timing(tmp_path):
    res = simulate("landau", {"nx": 8, "nv": 16, "t_end": 1.0, "dt": 0.3}, tmp_path / "run", progress=False)
    stepper = json.loads((tmp_path / "run" / "config.json").read_text())["stepper"]
    assert stepper["dt"] == pytest.approx(0.25)
    assert stepper["dt_requested"] == pytest.approx(0.3)
    assert stepper["dt_shortened_to_end_at_t_end"] is True
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert timing["dt"] == pytest.approx(0.25) and timing["dt_requested"] == pytest.approx(0.3)
    assert res.timing["steps"] == 4
