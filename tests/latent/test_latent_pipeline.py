"""The latent solver end to end on a tiny Landau family: train, roll out a held-out case, compare with
the reference file to file; mass conservation; reproducibility; the CLI contract."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from faiser.bench.latent import compare_runs
from faiser.cli import main
from faiser.latent.data import load_trajectories
from faiser.latent.model import flat_state, load_latent_model, save_latent_model
from faiser.latent.rollout import rollout
from faiser.latent.train import LatentTrainConfig, train_latent
from faiser.run.outputs import CSV_COLUMNS
from faiser.run.simulate import simulate

BASE = {"nx": 16, "nv": 32, "dt": 0.1, "k": 0.5, "t_end": 4.0, "vmax": 6.0}
EVERY = 5  # snapshots every 5 steps: one latent step = 5 reference steps = 0.5 time units
TINY = {"hidden": 16, "cell_dim": 16, "code_dim": 16, "code_groups": 4, "prop_hidden": 16, "velocity_channels": 8,
        "ae_batch": 4, "prop_batch": 4}  # fmt: skip


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("landau_family")
    runs = {}
    for alpha in (0.05, 0.12, 0.2):
        d = root / f"alpha={alpha}"
        simulate("landau", {**BASE, "alpha": alpha}, d, progress=False, save_every=EVERY)
        runs[alpha] = d
    return root, runs


@pytest.fixture(scope="module")
def trained(family):
    root, runs = family
    data = load_trajectories([runs[0.05], runs[0.2]])
    cfg = LatentTrainConfig.of(ae_steps=250, prop_steps=200, unroll=2, **TINY)
    model = train_latent(data, cfg, progress=False)
    save_latent_model(root / "model", model)
    return root / "model", model


def test_trajectories_and_conditioning(family):
    _, runs = family
    data = load_trajectories([runs[0.05], runs[0.2]])
    assert data.f.shape[:2] == (2, 9) and data.snapshot_steps == EVERY
    assert data.varying_keys() == ["alpha"]
    norm = data.normalization()
    assert norm.cond_keys == ("alpha",)
    np.testing.assert_allclose(norm.condition({"alpha": 0.125}), [0.0], atol=1e-6)


def test_rollout_beats_persistence_on_held_out_case(family, trained, tmp_path):
    _, runs = family
    model_dir, _ = trained
    over = {**BASE, "alpha": 0.12}
    lat = rollout(model_dir, "landau", over, tmp_path / "latent", progress=False, save_every=EVERY)
    rollout(model_dir, "landau", over, tmp_path / "pers", progress=False, save_every=EVERY, propagator="persistence")
    a, b = compare_runs(runs[0.12], tmp_path / "latent"), compare_runs(runs[0.12], tmp_path / "pers")
    assert len(a["time"]) == 9 and a["l2_f"][0] == 0.0
    # errors over the held-out trajectory: the trained propagator must beat a constant latent state
    assert np.mean(a["l2_f"][1:]) < np.mean(b["l2_f"][1:])
    assert np.mean(a["density"][1:]) < np.mean(b["density"][1:])
    assert lat.timing["latent_steps"] == 8 and lat.timing["steps_per_latent"] == EVERY


def test_mass_of_decoded_rollout_equals_initial_mass(trained, tmp_path):
    model_dir, _ = trained
    res = rollout(model_dir, "landau", {**BASE, "alpha": 0.12}, tmp_path / "r", progress=False, mass="conserve")
    m = res.diagnostics["mass"].values
    assert len(m) == 9  # diag_every = 1 < D: a row after every latent step
    np.testing.assert_allclose(m, m[0], rtol=1e-6)
    assert np.all(np.asarray(res.states[-1].f[0]) >= 0)
    dec = rollout(model_dir, "landau", {**BASE, "alpha": 0.12}, None, progress=False, mass="decoded")
    assert abs(dec.timing["drift"]["mass"]) > 1e-6  # without restoration the decoder does not conserve mass


def test_rollout_outside_the_trained_range_warns_with_the_range(trained):
    from faiser.errors import ExtrapolationWarning
    from faiser.latent.model import load_latent_model
    from faiser.latent.rollout import outside_training_range

    model = load_latent_model(trained[0])
    assert outside_training_range(model, {**BASE, "alpha": 0.12}) == []  # inside [0.05, 0.2]
    (msg,) = outside_training_range(model, {**BASE, "alpha": 0.3})
    assert "alpha = 0.3" in msg and "[0.05, 0.2]" in msg and "2 runs" in msg  # 0.12 is held out
    with pytest.warns(ExtrapolationWarning, match=r"alpha = 0.01 .*\[0.05, 0.2\]"):
        rollout(model, "landau", {**BASE, "alpha": 0.01, "t_end": 1.0}, None, progress=False)


def test_training_is_reproducible(family):
    _, runs = family
    data = load_trajectories([runs[0.05], runs[0.2]])
    cfg = LatentTrainConfig.of(ae_steps=6, prop_steps=4, unroll=2, noise_std=0.1, **TINY)
    a, b = train_latent(data, cfg, progress=False), train_latent(data, cfg, progress=False)
    for mod in ("vqvae", "propagator"):
        sa, sb = flat_state(getattr(a, mod), mod), flat_state(getattr(b, mod), mod)
        assert sa.keys() == sb.keys()
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_cli_train_latent_and_rollout_contract(family, trained, tmp_path, capsys):
    root, runs = family
    model_dir, _ = trained
    out = tmp_path / "cli_model"
    rc = main(["train-latent", "--data", str(runs[0.05]), str(runs[0.2]), "--out", str(out), "--quiet",
               "--set", "ae_steps=3", "--set", "prop_steps=2", "--set", "hidden=8", "--set", "cell_dim=8",
               "--set", "code_dim=8", "--set", "prop_hidden=8"])  # fmt: skip
    assert rc == 0 and (out / "model.json").exists() and (out / "model.npz").exists()
    assert load_latent_model(out).meta["steps_per_latent"] == EVERY
    sets = [a for k, v in {**BASE, "alpha": 0.12}.items() for a in ("--set", f"{k}={v}")]
    ro = tmp_path / "ro"
    assert (
        main(["rollout", "landau", "--model", str(model_dir), *sets, "--save-every", "10", "--out", str(ro), "--quiet"])
        == 0
    )
    for name in ("config.json", "diagnostics.csv", "timing.json", "moments.nc", "diagnostics.png"):
        assert (ro / name).exists(), name
    with open(ro / "diagnostics.csv") as fh:
        header = next(csv.reader(fh))
    assert header == CSV_COLUMNS
    timing = json.loads((ro / "timing.json").read_text())
    assert {"wall_s", "compile_s", "steps", "simulated_time", "device"} <= set(timing)
    assert timing["steps"] == 40 and timing["simulated_time"] == pytest.approx(4.0)
    assert json.loads((ro / "config.json").read_text())["solver"]["kind"] == "latent"
    capsys.readouterr()
    # bad input: exit 2 and one line
    bad = [
        ["rollout", "landau", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x")],
        ["rollout", "two_stream", "--model", str(model_dir), "--out", str(tmp_path / "x")],
        ["rollout", "landau", "--model", str(model_dir), *sets, "--set", "t_end=4.2", "--out", str(tmp_path / "x")],
        ["rollout", "landau", "--model", str(model_dir), *sets, "--set", "nx=32", "--out", str(tmp_path / "x")],
        ["rollout", "landau", "--model", str(model_dir), *sets, "--save-every", "3", "--out", str(tmp_path / "x")],
        ["train-latent", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")],
        ["train-latent", "--data", str(runs[0.05]), "--out", str(tmp_path / "m"), "--set", "unroll=0"],
    ]
    for argv in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("faiser: error:"), (argv, err)
    # a tampered model is refused
    npz = model_dir.parent / "tampered"
    npz.mkdir()
    for f in ("model.json", "model.npz"):
        (npz / f).write_bytes((model_dir / f).read_bytes())
    raw = bytearray((npz / "model.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (npz / "model.npz").write_bytes(bytes(raw))
    assert main(["rollout", "landau", "--model", str(npz), *sets, "--out", str(tmp_path / "y")]) == 2
