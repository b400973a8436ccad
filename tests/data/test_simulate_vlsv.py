"""`faiser simulate --vlsv-every`: Vlasiator-style files in SI units that hold the run's state."""

import json

import numpy as np
import pytest

from faiser.cli import main
from faiser.data.vlsv import open_vlsv
from faiser.run.outputs import output_plan
from faiser.run.simulate import simulate


def test_vlsv_files_hold_the_state_in_si(tmp_path):
    res = simulate("larmor", {"t_end": 1.0}, tmp_path, progress=False, vlsv_every=2)
    files = sorted((tmp_path / "vlsv").glob("bulk.*.vlsv"))
    plan = output_plan(res.case.n_steps, 1, None, 2)
    assert [p.name for p in files] == [f"bulk.{i:07d}.vlsv" for i in range(len(plan["vlsv"]))]
    u = res.case.units
    with open_vlsv(files[-1]) as v:  # the last state is always written
        assert v.time == pytest.approx(float(res.state.time) * u.time, rel=1e-6)
        assert v.timestep == res.case.n_steps
        assert v.populations == ["proton"]
        mesh = v.velocity_mesh("proton")
        assert tuple(mesh.nv) == res.grid.nv
        np.testing.assert_allclose(mesh.vmax, np.asarray(res.grid.v_max) * u.velocity, rtol=1e-6)
        f_si = v.read_vdf("proton")[0]
        np.testing.assert_allclose(f_si / u.f, np.asarray(res.state.f[0])[0, 0, 0], rtol=1e-6, atol=1e-12)
        rho = v.read_variable("proton/vg_rho")[0]
        assert rho == pytest.approx(u.n0, rel=1e-5)  # unit density
        V = v.read_variable("proton/vg_v")[0]
        expected = [res.diagnostics[f"bulk_velocity_{c}"].values[-1] for c in "xyz"]
        np.testing.assert_allclose(V / u.velocity, expected, atol=1e-5)
        np.testing.assert_allclose(v.read_variable("vg_b_vol")[0], np.asarray(res.state.B)[0, 0, 0] * u.magnetic_field)


def test_cli_vlsv_every_and_inspect(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "exb", "--set", "t_end=0.5", "--quiet", "--out", str(out), "--vlsv-every", "1"]) == 0
    capsys.readouterr()
    last = sorted((out / "vlsv").glob("*.vlsv"))[-1]
    assert main(["inspect", str(last), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cell = info["populations"]["proton"]["cells"][0]
    assert cell["cellid"] == 1 and cell["density"] > 0
    assert main(["simulate", "exb", "--out", str(tmp_path / "x"), "--vlsv-every", "-1"]) == 2
