"""Shocktest run to a late time: compression against Rankine-Hugoniot, shock position and mass
flux through the shock, averaged over the second half of the run (prints JSON).

    .venv/bin/python experiments/hybrid_shock_steady.py [--set t_end=100 --set nv=24 ...]
"""

from __future__ import annotations

import argparse
import json

from faiser.cases.plots import shock_summary
from faiser.run.simulate import simulate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="output directory (plots, shock.json)")
    a = p.parse_args()
    over = {"t_end": 100.0, "diag_every": 20, **dict(s.split("=", 1) for s in a.set)}
    res = simulate("shock", over, out_dir=a.out, progress=False)
    s = shock_summary(res.case, res.snapshots)
    s.pop("times")
    s["wall_s"] = res.timing["wall_s"]
    print(json.dumps(s, indent=2))


if __name__ == "__main__":
    main()
