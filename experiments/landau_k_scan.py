"""Study: Landau damping over the wavenumber k, against the roots of the dispersion relation.

One study = a list of configs with deterministic run names; runs already done are skipped.

    python experiments/landau_k_scan.py --out runs/landau_k_scan [--k 0.3,0.4,0.5,0.6]

Writes one run directory per k (the `faiser simulate` outputs) and `summary.json` / `summary.png`
comparing the fitted damping rate and frequency with linear theory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faiser.run.simulate import simulate
from faiser.vlasov.linear_theory import dispersion_root, fit_damping

BASE = {"alpha": 0.01, "nx": 64, "nv": 256, "vmax": 6.0, "dt": 0.1, "t_end": 35.0}


def study(ks):
    """The list of (run name, overrides) of the study."""
    return [(f"landau_k{k:.2f}", {**BASE, "k": k}) for k in ks]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--k", default="0.3,0.4,0.5,0.6")
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for name, cfg in study([float(k) for k in args.k.split(",")]):
        run = out / name
        if not (run / "diagnostics.csv").exists():
            simulate("landau", cfg, run)
        import pandas as pd

        df = pd.read_csv(run / "diagnostics.csv")
        gamma, omega, n = fit_damping(df["time"].values, df["electric_energy"].values, 2.0, 30.0)
        theory = dispersion_root(cfg["k"], [(1.0, 0.0, 1.0)], complex(1.0 + 1.5 * cfg["k"] ** 2, -0.1))
        rows.append({"run": name, "k": cfg["k"], "gamma": gamma, "omega": omega, "peaks": n,
                     "gamma_theory": theory.imag, "omega_theory": theory.real})  # fmt: skip
        print(json.dumps(rows[-1]))
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    ks = [r["k"] for r in rows]
    ax.plot(ks, [-r["gamma_theory"] for r in rows], "k-", label="dispersion root")
    ax.plot(ks, [-r["gamma"] for r in rows], "o", label="faiser")
    ax.set_xlabel("k (1/Debye length)")
    ax.set_ylabel("damping rate -gamma (omega_pe)")
    ax.legend()
    fig.savefig(out / "summary.png", dpi=110)


if __name__ == "__main__":
    main()
