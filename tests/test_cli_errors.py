"""The CLI boundary never leaks a traceback: each failure a new user runs into ends in exit status 2
and one line on stderr (or works, for a resumed run's summary)."""

import os
import subprocess
import sys
import warnings

import pytest

from faiser import cli
from faiser.cli import main
from faiser.errors import ConfigError, DataError, ResourceError, is_out_of_memory
from faiser.run.outputs import prepare_output_file, prepare_run_dir, run_dir_lock

TINY = ["--set", "nx=8", "--set", "nv=16", "--quiet"]


def _exit2(args, capsys, needle=None) -> str:
    """Run ``main(args)`` in process; assert exit 2 and one stderr line (containing ``needle``)."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (args, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("faiser: error:"), err
    assert "Traceback" not in err
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def _subprocess(args, cwd, env=None):
    p = subprocess.run([sys.executable, "-m", "faiser", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=300, env=env)  # fmt: skip
    return p.returncode, p.stdout, p.stderr


# ---- 1. output paths -----------------------------------------------------------------------------------
def _bad_outs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "an existing file": (str(afile), "not a directory"),
        "under /proc": ("/proc/faiser-test/run", "cannot create"),
        "/proc itself": ("/proc", "cannot be written"),
        "under /sys": ("/sys/faiser-test", "cannot create"),
        "a 5000-character name": ("a" * 5000, "too long"),
        "an empty name": ("", "empty"),
        "a blank name": ("  ", "empty"),
    }


@pytest.mark.parametrize(
    "what", ["an existing file", "under /proc", "/proc itself", "under /sys", "a 5000-character name", "an empty name",
             "a blank name"],
)  # fmt: skip
def test_simulate_refuses_an_output_directory_that_cannot_be_written(what, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out, needle = _bad_outs(tmp_path)[what]
    _exit2(["simulate", "landau", *TINY, "--out", out], capsys, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written into the cwd


def test_every_command_checks_its_output_path(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    vlsv = tmp_path / "missing.vlsv"
    sweep = tmp_path / "s.json"
    sweep.write_text('{"case": "landau", "save_every": 1, "base": {"t_end": 0}}')
    cases = [
        (["sweep", str(sweep), "--out", str(afile)], "not a directory"),
        (["train-codec", "--codec", "pca", "--data", str(vlsv), "--out", str(afile)], "not a directory"),
        (["train-latent", "--data", str(vlsv), "--out", "/proc/faiser-test"], "cannot create"),
        (["rollout", "landau", "--model", str(tmp_path), "--out", str(afile)], "not a directory"),
        (["compress", str(vlsv), "--codec", "zfp", "--out", "/proc/faiser-test/x.fz"], "cannot create"),
        (["compress", str(vlsv), "--codec", "zfp", "--out", str(afile / "x.fz")], "not a directory"),
        (["compress", str(vlsv), "--codec", "zfp", "--out", ""], "empty"),
        (["decompress", str(vlsv), "--out", str(tmp_path)], "is a directory"),
        (["bench", "stepper", "--out", "/proc/faiser-test.json"], "cannot be written"),
        (["report", str(tmp_path / "nowhere")], "no such directory"),
    ]
    for args, needle in cases:
        _exit2(args, capsys, needle)


def test_prepare_helpers(tmp_path):
    d = prepare_run_dir(tmp_path / "a" / "b")
    assert d.is_dir() and not list(d.iterdir())  # the write probe leaves nothing behind
    f = prepare_output_file(tmp_path / "c" / "x.fz")
    assert f.parent.is_dir() and not f.exists()
    with pytest.raises(ConfigError):
        prepare_run_dir("")
    with pytest.raises(DataError, match="too long"):
        prepare_output_file(tmp_path / ("x" * 300))


# ---- 2. two runs into one directory ------------------------------------------------------------------
def test_a_second_run_into_a_locked_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with run_dir_lock(out):
        line = _exit2(["simulate", "landau", *TINY, "--set", "t_end=0", "--out", str(out)], capsys, "in use")
        assert str(out) in line and f"process {os.getpid()}" in line
        with pytest.raises(DataError, match="in use"), run_dir_lock(out):
            pass
    with run_dir_lock(out):  # released on exit: it can be taken again
        pass
    assert main(["simulate", "landau", *TINY, "--set", "t_end=0", "--out", str(out)]) == 0
    assert (out / ".lock").exists() and (out / "config.json").exists()


def test_lock_conflict_end_to_end(tmp_path):
    """The lock holds across processes: a faiser started while another holds DIR/.lock exits 2."""
    out = tmp_path / "run"
    out.mkdir()
    with run_dir_lock(out):
        code, _, err = _subprocess(["simulate", "landau", *TINY, "--set", "t_end=0", "--out", str(out)], tmp_path)
    assert code == 2 and "in use by another faiser run" in err and err.count("\n") == 1, err
    assert "Traceback" not in err


# ---- 3. memory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["larmor", "--set", "nv=4096"], ["landau", "--set", "nx=100000", "--set", "nv=4096"],
     ["khi", "--set", "nx=4096", "--set", "ny=4096", "--set", "nv=64"]],
)  # fmt: skip
def test_a_run_that_does_not_fit_in_memory_is_refused_before_allocating(args, tmp_path, capsys):
    line = _exit2(["simulate", *args, "--quiet", "--out", str(tmp_path / "r")], capsys, "memory")
    assert "needs about" in line and "available" in line
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_too_many_steps_are_refused(tmp_path, capsys):
    _exit2(["simulate", "landau", *TINY, "--set", "t_end=1e12", "--out", str(tmp_path / "r")], capsys, "steps")
    # a step count that fits the counter but whose diagnostics rows would not fit in memory
    _exit2(["simulate", "landau", *TINY, "--set", "t_end=1e8", "--set", "dt=0.1", "--out", str(tmp_path / "r")],
           capsys, "memory")  # fmt: skip


def test_a_failed_allocation_becomes_one_line(tmp_path, capsys, monkeypatch):
    import jax

    import faiser.run.simulate as sim

    oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")
    assert is_out_of_memory(oom) and is_out_of_memory(MemoryError()) and not is_out_of_memory(RuntimeError("x"))

    def boom(*a, **k):
        raise oom

    monkeypatch.setattr(sim, "_run", boom)
    with pytest.raises(ResourceError, match="ran out of memory"):
        sim.simulate("landau", {"nx": 8, "nv": 16}, tmp_path / "lib", progress=False)
    _exit2(["simulate", "landau", *TINY, "--out", str(tmp_path / "r")], capsys, "ran out of memory")

    def numpy_oom(args):
        raise MemoryError("Unable to allocate 3.00 GiB for an array")

    monkeypatch.setitem(cli.COMMANDS, "report", cli.Command("x", cli._report_args, numpy_oom))
    _exit2(["report", str(tmp_path)], capsys, "out of memory")


def test_memory_estimate_scales_with_the_grid():
    from faiser.run.memory import DEVICE_COPIES, estimate_run_bytes
    from faiser.run.simulate import resolve_config

    small = estimate_run_bytes(resolve_config("shock", {"nx": 10, "nv": 8}), 100)
    assert small["f"] == 10 * 8**3 * 4 and small["device"] == DEVICE_COPIES * small["f"]
    big = estimate_run_bytes(resolve_config("alfven", {"nx": 10, "nv": 8, "alpha_density": 0.1, "dtype": "float64"}), 1)
    assert big["f"] == 2 * 10 * 8**3 * 8  # two species in float64
    assert estimate_run_bytes(resolve_config("khi", {"nx": 4, "ny": 5, "nv": 6, "nv_z": 0}), 1)["f"] == 4 * 5 * 6**3 * 4


# ---- 6. f_min ----------------------------------------------------------------------------------------
def test_an_f_min_that_removes_the_distribution_is_refused(tmp_path, capsys):
    line = _exit2(["simulate", "landau", *TINY, "--set", "f_min=10", "--out", str(tmp_path / "r")], capsys, "f_min")
    assert "100% of the initial electron mass" in line


def test_a_small_f_min_passes_the_check():
    from faiser.cases import build_case
    from faiser.cases.base import check_f_min
    from faiser.run.simulate import resolve_config

    check_f_min(build_case("larmor", resolve_config("larmor", {"nv": 16, "f_min": 1e-9})))
    check_f_min(build_case("larmor", resolve_config("larmor", {"nv": 16, "f_min": 0.05})))  # blocks kept by dilation
    with pytest.raises(ConfigError, match=r"f_min=0\.06 removes 100%"):  # above the Maxwellian's peak
        check_f_min(build_case("larmor", resolve_config("larmor", {"nv": 16, "f_min": 0.06})))


# ---- 7. scales that overflow, and no warning text ----------------------------------------------------------
@pytest.mark.parametrize("k", ["1e-30", "1e30"])
def test_a_k_that_overflows_the_dtype_is_refused_naming_k(k, tmp_path, capsys):
    _exit2(["simulate", "landau", *TINY, "--set", f"k={k}", "--out", str(tmp_path / "r")], capsys, f"k={float(k):g}")


def test_bad_k_end_to_end_prints_no_warning(tmp_path):
    code, _, err = _subprocess(["simulate", "landau", "--set", "k=1e-30", "--out", "r"], tmp_path)
    assert code == 2 and err.count("\n") == 1 and "k=1e-30" in err, err
    assert "Warning" not in err and "Traceback" not in err


def test_warnings_are_held_back_on_failure_and_shown_on_success(tmp_path, capsys, monkeypatch):
    def failing(args):
        warnings.warn("numpy says overflow", RuntimeWarning, stacklevel=1)
        raise ConfigError("bad k")

    def working(args):
        warnings.warn("something to know", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "report", cli.Command("x", cli._report_args, failing))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _exit2(["report", str(tmp_path)], capsys, "bad k")
    assert not seen
    monkeypatch.setitem(cli.COMMANDS, "report", cli.Command("x", cli._report_args, working))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["report", str(tmp_path)]) == 0
    assert [str(w.message) for w in seen] == ["something to know"]


# ---- 9. the summary line -------------------------------------------------------------------------------
def test_summary_says_resumed_and_the_shortened_dt(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["simulate", "landau", *TINY, "--set", "t_end=1", "--set", "dt=0.3", "--checkpoint-every", "2"]
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "4 steps to t=1" in line and "dt=0.25 (dt=0.3 shortened to end at t_end)" in line, line
    assert "(resumed at" not in line
    assert main([*args, "--out", str(out), "--resume"]) == 0
    line = capsys.readouterr().out
    assert "(resumed at step 2)" in line and "dt=0.25" in line, line


# ---- 10. --set carries config keys only --------------------------------------------------------------
def test_set_of_a_named_flag_points_to_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vlsv = str(tmp_path / "x.vlsv")
    cases = [
        (["compress", vlsv, "--codec", "zfp", "--set", "snapshot=0", "--out", "x.fz"], "use faiser compress --snap"),
        (["compress", vlsv, "--codec", "zfp", "--set", "population=proton", "--out", "x.fz"], "--population"),
        (["train-codec", "--codec", "pca", "--data", vlsv, "--set", "max_vdfs=5", "--out", "m"], "--max-vdfs"),
        (["train-codec", "--codec", "pca", "--data", vlsv, "--set", "seed=5", "--out", "m"], "--seed"),
        (["train-codec", "--codec", "pca", "--data", vlsv, "--set", "checkpoint_every=5", "--out", "m"],
         "--checkpoint-every"),
        (["rollout", "landau", "--model", "m", "--set", "mass=conserve", "--out", "r"], "--mass"),
        (["rollout", "landau", "--model", "m", "--set", "propagator=persistence", "--out", "r"], "--propagator"),
        (["simulate", "landau", "--set", "save_every=5", "--out", "r"], "--save-every"),
        (["rollout", "landau", "--model", "m", "--mass", "sometimes", "--out", "r"], "invalid choice"),
        (["train-codec", "--codec", "pca", "--data", vlsv, "--max-vdfs", "-3", "--out", "m"], ">= 0"),
    ]  # fmt: skip
    for args, needle in cases:
        _exit2(args, capsys, needle)


def test_report_command(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (tmp_path / "report.md").read_text()
    assert "# faiser demo report" in text and "_not run" in text
    (tmp_path / "landau").mkdir()
    (tmp_path / "landau" / "diagnostics.png").write_bytes(b"png")
    (tmp_path / "landau" / "timing.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 0  # an unreadable section is a note, not a traceback
    assert "unreadable" in (tmp_path / "report.md").read_text()


def test_cli_is_one_table():
    p = cli._parser()
    sub = next(a for a in p._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.COMMANDS)
    assert {"simulate", "compress", "rollout", "report"} <= set(cli.COMMANDS)


# ---- end to end: a traceback-free abort where XLA used to SIGABRT ------------------------------------------
def test_huge_velocity_grid_end_to_end(tmp_path):
    code, out, err = _subprocess(["simulate", "larmor", "--set", "nv=4096", "--out", "r"], tmp_path)
    assert code == 2 and err.count("\n") == 1 and "needs about" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()
