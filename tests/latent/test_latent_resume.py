"""`faiser train-latent --resume`: a training run killed with SIGKILL ends with the same model (issue #7)."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

from faiser.cli import main
from faiser.run.simulate import simulate

SETS = [
    "ae_steps=10", "prop_steps=8", "checkpoint_every=2", "unroll=2", "hidden=8", "cell_dim=8", "code_dim=8",
    "code_groups=2", "prop_hidden=8", "velocity_channels=4", "ae_batch=2", "prop_batch=2", "noise_std=0.1",
]  # fmt: skip


def _args(data, out):
    a = ["train-latent", "--data", *map(str, data), "--out", str(out), "--quiet"]
    for s in SETS:
        a += ["--set", s]
    return a


def _arrays(d):
    with np.load(d / "model.npz") as z:
        return {k: z[k] for k in z.files}


# Killed in stage 2 (after stage 1's first checkpoints): the resumed run restores stage 1's final state
# and continues stage 2 from its newest checkpoint. FAISER_KILL_STAGE=vqvae kills in stage 1 instead.
def test_killed_training_resumes_to_the_same_model(tmp_path, capsys, jax_cache_env):
    kill_in = os.environ.get("FAISER_KILL_STAGE", "propagator")
    data = []
    for alpha in (0.05, 0.2):
        d = tmp_path / f"a{alpha}"
        over = {"nx": 8, "nv": 16, "dt": 0.1, "t_end": 2.0, "alpha": alpha}
        simulate("landau", over, d, progress=False, save_every=5)
        data.append(d)
    env = dict(os.environ, **jax_cache_env)  # the three runs compile the same programs once
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
    cli = [sys.executable, "-m", "faiser.cli"]
    ref = tmp_path / "ref"
    subprocess.run([*cli, *_args(data, ref)], check=True, env=env, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *_args(data, out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        ck = out / "checkpoints" / kill_in
        if ck.is_dir() and any(p.name.isdigit() for p in ck.iterdir()):
            break
        time.sleep(0.02)
    time.sleep(random.Random(os.environ.get("FAISER_KILL_SEED")).uniform(0.0, 0.3))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    capsys.readouterr()
    assert main(_args(data, out)) == 2  # a fresh run into a directory with checkpoints is refused
    assert "--resume" in capsys.readouterr().err
    subprocess.run([*cli, *_args(data, out), "--resume"], check=True, env=env, capture_output=True, timeout=600)
    a, b = _arrays(ref), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert main([*_args(data, tmp_path / "fresh"), "--resume"]) == 2  # nothing to resume from
