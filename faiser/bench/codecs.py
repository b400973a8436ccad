"""``faiser bench codecs``: every codec on shock and KHI VDFs (near- and non-Maxwellian) and VLSV files.

For each VDF set and codec setting it records the stored bytes (everything but the shared file
header), the ratio against Vlasiator's sparse float32 storage of the same VDFs (payload only, and
with the model amortized over ``amortize`` VDFs), the errors of :func:`faiser.codecs.metrics.evaluate`
and encode / decode throughput in MB/s of raw float32 f (the median of ``repeats`` encodes and
decodes, with min and max; a trainable codec's fit is timed once); it writes the JSON and a
rate-distortion plot (ratio vs relative L2, one line per codec, one panel per set).

Simulation sets: the last state of a short ``shock`` and ``khi`` run (3V meshes), thresholded with
Vlasiator's block sparsity (``sparse_rel`` times the largest f of the run) so the reference is what
Vlasiator would store; split into near-Maxwellian (``eps_M < eps_split``) and non-Maxwellian VDFs.
Trainable codecs are fitted on the VDFs of the run's earlier snapshots (every ``history_every``
steps, at most ``max_train``) and every codec is measured on the last state; for a VLSV file they
are fitted on a random half of its VDFs and measured on the other half.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faiser.bench.common import BenchSettings, document, resolve, summarize, time_repeats, write_json
from faiser.bench.env import environment, finish
from faiser.codecs.container import to_bytes
from faiser.codecs.metrics import eps_m, evaluate
from faiser.codecs.moments import maxwellian, moments
from faiser.codecs.reference import sparse_nbytes
from faiser.codecs.registry import get_codec
from faiser.data.sparse_blocks import VelocityMesh, dense_to_sparse, sparse_to_dense
from faiser.errors import ConfigError, FaiserError

__all__ = ["CodecsSettings", "bench_codecs", "plot_rate_distortion", "resolve_codecs_settings"]

CASES = ("shock", "khi")
CODECS = ("sparse", "maxwellian", "zfp", "sz3", "pca", "mlp", "vqvae")


@dataclasses.dataclass(frozen=True)
class CodecsSettings(BenchSettings):
    """``--set`` keys of ``faiser bench codecs`` (and ``repeats``, ``tiny`` of :class:`BenchSettings`).

    cases: simulated VDF sets (``shock``, ``khi``), each run with the case overrides of the key of
    its name (``shock=t_end=20``: comma-separated ``KEY=VALUE`` of the case config). vlsv: VLSV
    files whose VDFs are a set each. codecs: codecs measured; zfp_tolerance, sz3_tolerance,
    pca_components, mlp_hidden, vqvae_codebook: the settings swept per codec (one row each).
    window: PCA/MLP window (capped at the mesh). max_vdfs: VDFs per set at most (a random subset).
    eps_split: the ``eps_M`` separating near- and non-Maxwellian VDFs. sparse_rel: Vlasiator's sparsity
    threshold relative to the run's largest f. amortize: VDFs a model's bytes are shared over.
    vqvae_steps, mlp_steps: training steps. history_every: steps between the training snapshots of a
    run. max_train: training VDFs at most. repeats: encodes and decodes timed per row (median, min,
    max; fits are timed once). tiny: small runs (shock nx=24, t_end=1.5; khi nx=ny=6, nv=8, t_end=2),
    at most 64 VDFs and 5 training steps.
    """

    cases: tuple[str, ...] = CASES
    vlsv: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ("maxwellian", "zfp", "sz3", "pca", "mlp", "vqvae")
    zfp_tolerance: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    sz3_tolerance: tuple[float, ...] = (3e-3, 1e-3, 3e-4)
    pca_components: tuple[int, ...] = (4, 16, 32)
    mlp_hidden: tuple[int, ...] = (8, 16)
    vqvae_codebook: tuple[int, ...] = (256,)
    window: int = 16
    max_vdfs: int = 400
    eps_split: float = 0.1
    sparse_rel: float = 1e-4
    amortize: float = 1e5
    seed: int = 0
    shock: str = "t_end=20"
    khi: str = "nx=12,ny=12,nv=24,nv_z=0,t_end=60"
    vqvae_steps: int = 600
    mlp_steps: int = 300
    history_every: int = 20
    max_train: int = 4000

    def __post_init__(self):
        super().__post_init__()
        strip = lambda items, sep=",": tuple(x.strip() for i in items for x in i.split(sep) if x.strip())  # noqa: E731
        object.__setattr__(self, "cases", strip(self.cases))
        object.__setattr__(self, "codecs", strip(self.codecs))
        object.__setattr__(self, "vlsv", strip(self.vlsv, ";"))  # ";" kept from the older syntax
        bad = [c for c in self.cases if c not in CASES]
        if bad:
            raise ConfigError(f"bench codecs cases are {' and '.join(CASES)}, not {', '.join(map(repr, bad))}")
        bad = [c for c in self.codecs if c not in CODECS]
        if bad:
            raise ConfigError(f"unknown codec(s) {', '.join(map(repr, bad))} in codecs; known: {', '.join(CODECS)}")
        self.check("window", self.window >= 4, "an integer >= 4")
        self.check("max_vdfs", self.max_vdfs >= 1, "an integer >= 1")
        self.check("amortize", self.amortize > 0, "a positive number")
        self.check("max_train", self.max_train >= 1, "an integer >= 1")
        for key in ("vqvae_steps", "mlp_steps", "history_every"):
            self.check(key, getattr(self, key) >= 0, "an integer >= 0")
        for key in ("shock", "khi"):
            _kv(getattr(self, key))  # KEY=VALUE items, checked here

    def effective(self) -> CodecsSettings:
        """The settings measured: ``tiny`` applied."""
        if not self.tiny:
            return self
        return dataclasses.replace(
            self, shock=f"{self.shock},nx=24,t_end=1.5", khi=f"{self.khi},nx=6,ny=6,nv=8,t_end=2",
            max_vdfs=min(self.max_vdfs, 64), vqvae_steps=min(self.vqvae_steps, 5), mlp_steps=min(self.mlp_steps, 5),
            max_train=min(self.max_train, 256),
        )  # fmt: skip


def resolve_codecs_settings(overrides: Mapping[str, object] | CodecsSettings | None = None) -> CodecsSettings:
    """:class:`CodecsSettings` with ``overrides``; unknown keys and bad values raise :class:`ConfigError`."""
    return resolve(CodecsSettings, overrides)


def _kv(s: str) -> dict[str, str]:
    out = {}
    for item in filter(None, str(s).replace(";", ",").split(",")):
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE in {s!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _simulated_set(case: str, overrides: dict[str, str], sparse_rel: float, history_every: int):
    """VDFs of the run's last state (the test set), its B, and the VDFs of earlier snapshots (training)."""
    import tempfile

    from faiser.data.dataset import open_dataset
    from faiser.run.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        res = simulate(case, overrides, tmp, progress=False, save_every=history_every if history_every > 0 else None)
        g = res.grid
        if min(g.nv) < 4:
            raise ConfigError(f"bench codecs needs 3V meshes; {case} has nv={g.nv} (set nv_z=0 for khi)")
        mesh = VelocityMesh(g.nv, g.v_min, g.v_max)
        f = np.asarray(res.state.f[0], dtype=np.float32).reshape(-1, *g.nv)
        B = np.broadcast_to(np.asarray(res.state.B, dtype=np.float64), (*g.nx, 3)).reshape(-1, 3)
        hist = np.zeros((0, *g.nv), np.float32)
        if history_every > 0:
            ds = open_dataset(tmp)
            if len(ds) > 1:
                hist = np.asarray(ds.f(ds.species[0].name, time=slice(0, len(ds) - 1)), np.float32).reshape(-1, *g.nv)
    top = float(f.max())
    return _vlasiator_sparsity(f, mesh, sparse_rel, top), mesh, B, _vlasiator_sparsity(hist, mesh, sparse_rel, top)


def _vlasiator_sparsity(f: np.ndarray, mesh: VelocityMesh, sparse_rel: float, top: float) -> np.ndarray:
    """What Vlasiator stores: blocks with a cell >= ``sparse_rel * top`` plus neighbours; the rest is 0."""
    if sparse_rel <= 0 or len(f) == 0:
        return np.maximum(f, 0)
    sb = dense_to_sparse(np.maximum(f, 0), mesh, sparse_rel * top, dtype=np.float32)
    return sparse_to_dense(sb, dtype=np.float32)


def _vlsv_set(path: str) -> tuple[np.ndarray, VelocityMesh, np.ndarray | None]:
    from faiser.data.vlsv_reader import open_vlsv

    with open_vlsv(path) as vf:
        pop = vf.populations[0]
        cells = vf.cells_with_vdf(pop)
        f = vf.read_vdf(pop, cells, dtype=np.float32)
        B = vf.read_variable("vg_b_vol", cells) if "vg_b_vol" in vf.variables else None
        return f, vf.velocity_mesh(pop), B


def _configs(s: CodecsSettings, nv: int) -> list[tuple[str, str, dict[str, Any]]]:
    w = int(min(s.window, max(4, nv)))
    out: list[tuple[str, str, dict[str, Any]]] = []
    for name in s.codecs:
        if name == "maxwellian":
            out.append(("maxwellian", "maxwellian", {}))
        elif name in ("zfp", "sz3"):
            for t in getattr(s, f"{name}_tolerance"):
                out.append((f"{name} tol={t:g}", name, {"tolerance": t}))
        elif name == "pca":
            for k in s.pca_components:
                out.append((f"pca k={k}", "pca", {"components": k, "window": w}))
        elif name == "mlp":
            for h in s.mlp_hidden:
                out.append((f"mlp h={h}", "mlp", {"hidden": h, "window": w, "steps": s.mlp_steps}))
        elif name == "vqvae":
            vw = 32 if w > 16 else 16
            for k in s.vqvae_codebook:
                out.append((f"vqvae K={k}", "vqvae", {"codebook_size": k, "window": vw, "steps": s.vqvae_steps}))
    return out


def _run_one(label, name, settings, train, test, mesh, B, fm, sparse_per_vdf, s: CodecsSettings) -> dict[str, Any]:
    codec = get_codec(name, settings)
    t_fit = 0.0
    if codec.trainable:
        t0 = time.perf_counter()
        codec.fit(train, mesh)
        t_fit = time.perf_counter() - t0
    last: dict[str, Any] = {}
    t_enc = summarize(time_repeats(lambda: last.update(enc=codec.encode(test, mesh)), s.repeats))
    enc = last["enc"]
    t_dec = summarize(time_repeats(lambda: last.update(rec=codec.decode(enc)), s.repeats))
    rec = last["rec"]
    data, counts = to_bytes({}, [enc.section()])
    stored = counts["payload"] + counts["side"]  # the file header is shared by a whole file: left out
    n = len(test)
    per = stored / n
    model = codec.model_bytes()
    raw_mb = test.size * 4 / 1e6
    row = {
        "label": label, "codec": name, "settings": codec.settings_json, "n_vdfs": n,
        "bytes_per_vdf": per, "payload_bytes": counts["payload"], "side_bytes": counts["side"], "model_bytes": model,
        "ratio_vs_sparse": sparse_per_vdf / per if per else None,
        "ratio_vs_sparse_with_model": sparse_per_vdf / (per + model / s.amortize) if per else None,
        "ratio_vs_dense": test[0].size * 4 / per if per else None,
        "encode_MBps": raw_mb / max(t_enc["median_s"], 1e-9), "decode_MBps": raw_mb / max(t_dec["median_s"], 1e-9),
        "encode_s": t_enc, "decode_s": t_dec, "fit_s": t_fit,
    }  # fmt: skip
    if "fallback" in enc.streams:
        row["fallback_fraction"] = float(np.unpackbits(enc.streams["fallback"].data, count=n).mean())
    row.update(evaluate(test, rec, mesh, B, fm))
    return row


def bench_codecs(
    out: str | os.PathLike, overrides: Mapping[str, object] | CodecsSettings | None = None, progress: bool = True
) -> dict:
    """Run the codec benchmark; writes ``out`` (JSON) and ``<out stem>_rd.png``; returns the JSON object.

    ``overrides``: ``--set`` keys of :class:`CodecsSettings` (or the settings themselves). The JSON:
    ``settings``, ``environment`` (machine, load average at start and end), ``machine`` (short
    form), ``sets`` (per VDF set: sizes, ``eps_M``, Vlasiator's sparse bytes per VDF) and ``results``
    (a row per set and codec setting: bytes, ratios, errors, ``encode_MBps`` / ``decode_MBps`` from
    the median of ``repeats`` timings, ``encode_s`` / ``decode_s`` with median, min and max).
    """
    s = resolve_codecs_settings(overrides).effective()
    env = environment()
    rng = np.random.default_rng(s.seed)
    sets: dict[str, tuple] = {}
    for case in s.cases:
        f, mesh, B, hist = _simulated_set(case, _kv(getattr(s, case)), s.sparse_rel, s.history_every)
        keep = f.reshape(len(f), -1).sum(axis=1) > 0
        f, B = f[keep], B[keep]
        hist = hist[hist.reshape(len(hist), -1).sum(axis=1) > 0]
        if len(hist) > s.max_train:
            hist = hist[np.sort(rng.choice(len(hist), s.max_train, replace=False))]
        e = eps_m(f, mesh)
        for tag, sel in (("near_maxwellian", e < s.eps_split), ("non_maxwellian", e >= s.eps_split)):
            if sel.sum() >= 4:
                sets[f"{case}/{tag}"] = (f[sel], mesh, B[sel], e[sel], hist if len(hist) >= 8 else None)
    for p in s.vlsv:
        f, mesh, B = _vlsv_set(p)
        sets[f"vlsv:{Path(p).name}"] = (f, mesh, B, eps_m(f, mesh), None)
    if not sets:
        raise ConfigError("no VDF set to benchmark (check cases, vlsv and eps_split)")
    results, info = [], {}
    it = list(sets.items())
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="bench codecs", unit="set")
    for set_name, (f, mesh, B, e, hist) in it:
        if len(f) > s.max_vdfs:
            idx = np.sort(rng.choice(len(f), s.max_vdfs, replace=False))
            f, B, e = f[idx], None if B is None else B[idx], e[idx]
        if hist is not None:  # train on the run's earlier snapshots, test on its last state
            train, test, Bt = hist, f, B
        else:  # a VLSV file: train on a random half, test on the other
            perm = rng.permutation(len(f))
            half = max(1, len(f) // 2)
            train, test = f[perm[:half]], f[perm[half:]] if len(f) > 1 else f
            Bt = None if B is None else B[perm[half:]]
            e = e[perm[half:]] if len(f) > 1 else e
        sparse_per_vdf = sparse_nbytes(test, mesh) / len(test)
        fm = maxwellian(moments(test, mesh), mesh, dtype=np.float64)
        info[set_name] = {
            "n_vdfs": int(len(f)), "n_test": int(len(test)), "n_train": int(len(train)), "mesh": mesh.to_json(),
            "eps_m_mean": float(e.mean()), "eps_m_min": float(e.min()), "eps_m_max": float(e.max()),
            "sparse_bytes_per_vdf": sparse_per_vdf, "dense_float32_bytes_per_vdf": test[0].size * 4,
        }  # fmt: skip
        for label, name, settings in _configs(s, min(mesh.nv)):
            try:
                row = _run_one(label, name, settings, train, test, mesh, Bt, fm, sparse_per_vdf, s)
            except (ImportError, FaiserError) as exc:  # an optional extra missing, or a set too small to train on
                row = {"label": label, "codec": name, "skipped": str(exc)}
            row["set"] = set_name
            results.append(row)
    env = finish(env)
    machine = {"platform": env["platform"], "processor": env["cpu_model"], "cpus": env["cpu_count"]}
    doc = document("codecs", s, env, machine=machine, sets=info, results=results)
    out = Path(out)
    write_json(out, doc)
    plot_rate_distortion(doc, out.with_name(out.stem + "_rd.png"))
    return doc


def plot_rate_distortion(doc: dict, path: str | os.PathLike) -> Path:
    """Ratio against sparse vs relative L2, one line per codec, one panel per VDF set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(doc["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 4.0), squeeze=False)
    for ax, name in zip(axes[0], sets):
        rows = [r for r in doc["results"] if r.get("set") == name and "rel_l2" in r]
        for codec in dict.fromkeys(r["codec"] for r in rows):
            pts = sorted((r["rel_l2"], r["ratio_vs_sparse"]) for r in rows if r["codec"] == codec)
            ax.loglog(*zip(*pts), "o-", label=codec)
        ax.set_title(f"{name} (eps_M {doc['sets'][name]['eps_m_mean']:.2f})", fontsize=9)
        ax.set_xlabel("relative L2 error")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ratio vs Vlasiator sparse float32")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
