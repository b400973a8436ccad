"""Domain decomposition of the reference stepper (shard_map over 4 fake CPU devices).

A decomposed run must reproduce the single-domain run: translation with exchanged halos remaps
every cell from the same values, and the field solves run on the gathered moments. Tiny grids
and one to three steps keep the compile times low (a hybrid step compiles in ~5-10 s here);
float64 shows the agreement far below the 1e-6 asked.
"""

import json

import jax
import numpy as np
import pytest

from faiser.cases import build_case
from faiser.cli import main
from faiser.errors import DistributedError
from faiser.parallel.domain import DomainStepper, check_blocks, choose_blocks
from faiser.run.simulate import resolve_config

pytestmark = pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 (fake) devices")

TOL = 1e-6


def _compare(case: str, overrides: dict, n_steps: int = 2, **decomp):
    with jax.enable_x64(True):
        built = build_case(case, resolve_config(case, {"dtype": "float64", **overrides}))
        st, s0 = built.stepper, built.state
        ref = jax.jit(lambda s: st.multi_step(s, n_steps))(s0)
        ds = DomainStepper(st, **decomp)
        sharded = ds.shard(s0)
        assert len(sharded.f[0].sharding.device_set) == ds.num_devices
        out = jax.jit(lambda s: ds.multi_step(s, n_steps))(sharded)
        pairs = {"f": (ref.f[0], out.f[0]), "E": (ref.E, out.E), "B": (ref.B, out.B)}
        pairs.update({k: (ref.aux[k], out.aux[k]) for k in ref.aux})
        pairs["mass_lost"] = (ref.mass_lost, out.mass_lost)
        for name, (a, b) in pairs.items():
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            scale = max(float(np.max(np.abs(a))), 1e-300)
            assert np.max(np.abs(a - b)) <= TOL * scale, f"{case} {ds.blocks}: {name} differs"
        assert float(out.time) == float(ref.time) and int(out.step) == int(ref.step)
        # the run did something: f moved away from the initial state
        assert np.max(np.abs(np.asarray(out.f[0]) - np.asarray(s0.f[0]))) > 1e-6 * np.max(np.asarray(s0.f[0]))
        return ds, ref, out


def test_landau_1d_over_4_devices_matches_one_domain():
    ds, _, out = _compare("landau", {"nx": 32, "nv": 32}, n_steps=3, devices=4)
    assert ds.blocks == (4, 1, 1)
    with jax.enable_x64(True):  # the float64 state of _compare
        diag = jax.jit(ds.diagnostics)(out)  # global diagnostics on the sharded state
    assert np.isfinite(float(diag["mass"]))


def test_hybrid_shock_1d_inflow_outflow_over_4_devices():
    ds, _, out = _compare("shock", {"nx": 24, "nv": 8}, n_steps=1, devices=4)
    assert ds.blocks == (4, 1, 1)
    # the field solve ran block by block: the face B stayed split with f
    assert ds.cell_aux == ("B_face",) and not out.aux["B_face"].sharding.is_fully_replicated


def test_hybrid_shock_with_the_gathered_field_solve():
    """The alternative: every device solves the whole domain's fields on all-gathered moments."""
    ds, _, out = _compare("shock", {"nx": 24, "nv": 8}, n_steps=1, devices=4, field_solve="gathered")
    assert ds.cell_aux == () and out.aux["B_face"].sharding.is_fully_replicated
    with pytest.raises(DistributedError, match="unknown field_solve"):
        DomainStepper(ds.stepper, devices=4, field_solve="fft")


def test_hybrid_khi_2d_over_a_2x2_mesh():
    ds, _, _ = _compare("khi", {"nx": 16, "ny": 16, "nv": 8}, n_steps=1, blocks=(2, 2, 1))
    assert ds.mesh.shape == {"space_x": 2, "space_y": 2}


def test_a_wrong_halo_is_detected(monkeypatch):
    """The comparison can fail: a halo too thin for the shift changes cells near the block edges."""
    import faiser.parallel.domain as dom
    import faiser.vlasov.translate as tr

    monkeypatch.setattr(tr, "halo_width", lambda grid, axis, dt: 2)
    monkeypatch.setattr(dom, "halo_width", tr.halo_width)
    with pytest.raises(AssertionError, match="f differs"):
        _compare("landau", {"nx": 32, "nv": 32}, n_steps=2, devices=4)


def test_blocks_thinner_than_the_halo_are_refused():
    built = build_case("landau", resolve_config("landau", {"nx": 8, "nv": 16}))
    with pytest.raises(DistributedError, match="thinner than the halo"):
        check_blocks(built.stepper, (4, 1, 1))  # 2 cells per block, halo 4
    with pytest.raises(DistributedError, match="cannot decompose"):
        choose_blocks(built.stepper, 4)
    with pytest.raises(DistributedError, match="unresolved"):
        check_blocks(built.stepper, (1, 2, 1))
    with pytest.raises(DistributedError, match="only 4 exist"):
        DomainStepper(built.stepper, devices=8)


def test_cli_devices(tmp_path, capsys):
    args = ["simulate", "landau", "--set", "nx=16", "--set", "nv=16", "--set", "t_end=0.3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "two"), "--devices", "2"]) == 0
    one = np.genfromtxt(tmp_path / "one" / "diagnostics.csv", delimiter=",", names=True)
    two = np.genfromtxt(tmp_path / "two" / "diagnostics.csv", delimiter=",", names=True)
    assert one.dtype.names == two.dtype.names
    for name in ("mass", "electric_energy", "kinetic_energy", "l2_norm"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5)
    timing = json.loads((tmp_path / "two" / "timing.json").read_text())
    assert timing["devices"] == 2
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "many"), "--devices", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("faiser: error:") and "only 4 exist" in err and "\n" not in err
