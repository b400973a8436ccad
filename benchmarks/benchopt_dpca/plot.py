"""Plots and a Markdown table of a benchopt result of the distributed-PCA benchmark.

    python benchmarks/benchopt_dpca/plot.py [RESULT.parquet|.csv] [--out-dir DIR] [--table] \
        [--dataset simulation] [--case shock] [--k 16] [--ranks 8] [--split spatial]

RESULT defaults to the newest file in ``benchmarks/benchopt_dpca/outputs/``. One PNG per
(dataset, case, k) found, written atomically, with four panels:

- excess unexplained variance (``value - 1``) against bytes per rank (the busiest rank), one curve per
  strategy (iterative strategies: one point per iteration count), non-i.i.d. split solid, i.i.d. dashed;
- the same against communication rounds;
- the final ``value`` of every strategy, i.i.d. against non-i.i.d. split;
- the final ``value`` against the number of ranks (non-i.i.d. split).

``--table`` prints, for the selection given by ``--dataset/--case/--k/--ranks/--split``, every
strategy's final ``value``, bytes per rank, rounds and per-rank budget ratio, and the cheapest point
of each curve within 1.01x and 1.05x of the centralized unexplained variance.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NONIID = {"non-iid", "spatial"}
FLOOR = 1e-12  # value - 1 below this (exact methods: rounding) is drawn at the floor


def read(path: Path) -> pd.DataFrame:
    """A benchopt result (parquet or csv) with the columns the plots use added: ``strategy``
    (solver name without parameters), ``dataset`` (without parameters), ``case``, ``k``, ``ranks``,
    ``noniid``."""
    try:
        from benchopt.results import read_results

        df = read_results(path)
    except ImportError:
        df = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
    df = df.copy()
    df["strategy"] = df["solver_name"].str.split("[", n=1).str[0]
    df["dataset"] = df["dataset_name"].str.split("[", n=1).str[0]
    df["case"] = df["p_dataset_case"].fillna("") if "p_dataset_case" in df else ""
    df["k"] = df["p_obj_k"].astype(int)
    df["ranks"] = df["p_dataset_ranks"].astype(int)
    df["split"] = df["p_dataset_split"].astype(str)
    df["noniid"] = df["split"].isin(NONIID)
    df["excess"] = np.maximum(df["objective_value"] - 1.0, FLOOR)
    return df


def newest_result() -> Path:
    files = sorted((HERE / "outputs").glob("*.parquet"), key=lambda p: p.stat().st_mtime)
    if not files:
        sys.exit(f"no result file in {HERE / 'outputs'}; run benchopt first or give one")
    return files[-1]


def final_points(df: pd.DataFrame) -> pd.DataFrame:
    """The last point (largest stop_val) of every solver curve, averaged over repetitions."""
    keys = ["dataset", "case", "k", "ranks", "split", "noniid", "solver_name", "strategy"]
    last = df[df["stop_val"] == df.groupby(keys + ["idx_rep"])["stop_val"].transform("max")]
    return last.groupby(keys, as_index=False).mean(numeric_only=True)


def _curves(ax, sub: pd.DataFrame, x: str, colours: dict) -> None:
    for (solver, noniid), g in sub.groupby(["solver_name", "noniid"]):
        g = g.groupby("stop_val", as_index=False).mean(numeric_only=True).sort_values("stop_val")
        ax.plot(g[x], g["excess"], ls="-" if noniid else "--", marker="o" if noniid else "s", ms=4,
                mfc=colours[solver] if noniid else "none", color=colours[solver])  # fmt: skip
    for level, style in ((0.01, ":"), (0.05, "-.")):
        ax.axhline(level, color="grey", ls=style, lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("value - 1 (excess unexplained variance)")


def plot_group(df: pd.DataFrame, title: str, path: Path, ranks: int | None = None) -> Path:
    """The four panels for one (dataset, case, k) group, saved atomically as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    solvers = sorted(df["solver_name"].unique())
    cmap = matplotlib.colormaps["tab20"]  # the ten dark colours first, then their light twins
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    colours = {s: cmap(order[i % 20]) for i, s in enumerate(solvers)}
    if ranks is None:
        ranks = int(8 if (df["ranks"] == 8).any() else df["ranks"].max())
    at = df[df["ranks"] == ranks]
    fig = Figure(figsize=(13, 10), layout="constrained")
    axes = fig.subplots(2, 2)
    fig.suptitle(f"{title}: solid non-i.i.d. (spatial) split, dashed i.i.d. (random); {ranks} ranks in (a)-(c)")

    ax = axes[0, 0]
    _curves(ax, at, "objective_bytes_per_rank_max", colours)
    ax.set_xscale("log")
    ax.set_xlabel("bytes sent by the busiest rank")
    ax.set_title("(a) error against bytes per rank")

    ax = axes[0, 1]
    _curves(ax, at, "objective_rounds", colours)
    ax.set_xscale("log")
    ax.set_xlabel("communication rounds")
    ax.set_title("(b) error against rounds")

    ax = axes[1, 0]
    fin = final_points(at)
    width = 0.4
    for j, noniid in enumerate((False, True)):
        vals = [fin[(fin["solver_name"] == s) & (fin["noniid"] == noniid)]["objective_value"].min() for s in solvers]
        ax.bar(np.arange(len(solvers)) + (j - 0.5) * width, np.nan_to_num(vals, nan=0.0), width,
               label="non-i.i.d." if noniid else "i.i.d.", color="C3" if noniid else "C0")  # fmt: skip
    ax.set_xticks(np.arange(len(solvers)), solvers, rotation=30, ha="right", fontsize=8)
    top = float(np.nanmax(fin["objective_value"])) if len(fin) else 1.0
    if top > 2:
        ax.set_yscale("log")
    else:  # all close to the optimum: a linear axis from just below 1
        ax.set_ylim(min(0.999, float(np.nanmin(fin["objective_value"]))), top + 0.1 * (top - 1) + 1e-4)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("value (final point)")
    ax.set_title("(c) i.i.d. against non-i.i.d. split")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    fin = final_points(df[df["noniid"]])
    for s in solvers:
        g = fin[fin["solver_name"] == s].groupby("ranks", as_index=False)["excess"].min()
        if len(g):
            ax.plot(g["ranks"], g["excess"], "o-", color=colours[s])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ranks P")
    ax.set_ylabel("value - 1 (final point)")
    ax.set_title("(d) error against the number of ranks (non-i.i.d.)")
    handles = [Line2D([], [], color=colours[s], marker="o", label=s) for s in solvers]
    handles += [Line2D([], [], color="grey", ls=":", label="1.01x centralized"),
                Line2D([], [], color="grey", ls="-.", label="1.05x centralized")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize=8)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def select(df: pd.DataFrame, args) -> pd.DataFrame:
    for col in ("dataset", "case", "k", "ranks", "split"):
        want = getattr(args, col)
        if want is not None:
            df = df[df[col].astype(str) == str(want)]
    return df


def table(df: pd.DataFrame) -> str:
    """Markdown table of one selection: final point, and the cheapest point within 1.01x / 1.05x."""

    def cheapest(g, level):
        ok = g[g["objective_value"] <= level]
        if not len(ok):
            return "not reached"
        best = ok.sort_values("objective_bytes_per_rank_max").iloc[0]
        return f"{best['objective_bytes_per_rank_max']:.0f} B, {best['objective_rounds']:.0f} rounds"

    lines = [
        "| strategy | value (final) | value, worst rank | bytes/rank max | bytes/rank mean | rounds | budget ratio "
        "| cheapest within 1.01x | cheapest within 1.05x |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for solver, g in df.groupby("solver_name"):
        g = g.groupby("stop_val", as_index=False).mean(numeric_only=True).sort_values("stop_val")
        last = g.iloc[-1]
        it = f" ({last['objective_iterations']:.0f} it.)" if len(g) > 1 else ""
        lines.append(
            f"| {solver}{it} | {last['objective_value']:.6f} | {last['objective_value_worst_rank']:.6f} "
            f"| {last['objective_bytes_per_rank_max']:.0f} | {last['objective_bytes_per_rank_mean']:.0f} "
            f"| {last['objective_rounds']:.0f} | {last['objective_budget_ratio']:.2f} "
            f"| {cheapest(g, 1.01)} | {cheapest(g, 1.05)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", nargs="?", type=Path, help="benchopt result (.parquet or .csv); default: newest")
    p.add_argument("--out-dir", type=Path, help="where the PNGs go (default: beside the result)")
    p.add_argument("--table", action="store_true", help="print the Markdown table of the selection")
    p.add_argument("--dataset")
    p.add_argument("--case")
    p.add_argument("--k", type=int)
    p.add_argument("--ranks", type=int, help="ranks of panels (a)-(c) and of the table (default 8)")
    p.add_argument("--split")
    args = p.parse_args(argv)
    path = args.result or newest_result()
    df = read(path)
    out_dir = args.out_dir or path.parent
    groups = select(df, argparse.Namespace(dataset=args.dataset, case=args.case, k=args.k, ranks=None, split=None))
    for (dataset, case, k), g in groups.groupby(["dataset", "case", "k"]):
        name = "_".join(x for x in (path.stem, dataset, case, f"k{k}") if x)
        title = f"{dataset}{'/' + case if case else ''}, k={k}"
        print(plot_group(g, title, out_dir / f"{name}.png", args.ranks))
    if args.table:
        sel = select(df, args)
        if args.ranks is None:
            sel = sel[sel["ranks"] == (8 if (sel["ranks"] == 8).any() else sel["ranks"].max())]
        for (dataset, case, k, ranks, split), g in sel.groupby(["dataset", "case", "k", "ranks", "split"]):
            print(f"\n{dataset}{'/' + case if case else ''}, k={k}, {ranks} ranks, {split} split\n")
            print(table(g))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
