"""`faiser train-codec --resume`: a VQ-VAE training killed with SIGKILL ends with the same model."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from codec_data import make_vdfs

from faiser.cli import main
from faiser.data.vlsv_writer import Population, write_vlsv

pytest.importorskip("flax")

SETS = ["window=16", "base_channels=4", "max_channels=8", "code_dim=4", "codebook_size=16", "batch_size=8",
        "steps=60", "seed=2"]


def _args(data, out):
    a = ["train-codec", "--codec", "vqvae", "--data", str(data), "--out", str(out), "--quiet"]
    a += ["--checkpoint-every", "5"]
    for s in SETS:
        a += ["--set", s]
    return a


def _arrays(d):
    with np.load(d / "model.npz") as z:
        return {k: z[k] for k in z.files}


def test_killed_training_resumes_to_the_same_model(tmp_path, capsys, jax_cache_env):
    f, mesh = make_vdfs(40, nv=16, seed=21)
    data = tmp_path / "train.vlsv"
    cells = np.arange(1, 41, dtype=np.uint64)
    write_vlsv(data, spatial={"nx": 40, "ny": 1, "nz": 1, "xmin": 0, "xmax": 1, "ymin": 0, "ymax": 1, "zmin": 0,
                              "zmax": 1}, cellids=cells, populations={"proton": Population(mesh, f)})
    # GPUs reduce in a nondeterministic order unless told otherwise: all runs here are subprocesses with
    # deterministic ops (the flag is ignored on CPU, where runs are bit-reproducible anyway)
    env = dict(os.environ, **jax_cache_env)  # the three runs compile the same programs once
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
    cli = [sys.executable, "-m", "faiser.cli"]
    ref = tmp_path / "ref"
    subprocess.run([*cli, *_args(data, ref)], check=True, env=env, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *_args(data, out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        ck = out / "checkpoints"
        if ck.is_dir() and any(p.name.isdigit() for p in ck.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(random.Random(os.environ.get("FAISER_KILL_SEED")).uniform(0.0, 1.0))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # a fresh run into a directory with checkpoints is refused; --resume continues
    capsys.readouterr()
    assert main(_args(data, out)) == 2
    assert "--resume" in capsys.readouterr().err
    subprocess.run([*cli, *_args(data, out), "--resume"], check=True, env=env, capture_output=True, timeout=600)
    a, b = _arrays(ref), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # --resume with nothing to resume from
    capsys.readouterr()
    assert main([*_args(data, tmp_path / "fresh"), "--resume"]) == 2
