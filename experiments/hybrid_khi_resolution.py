"""KHI resolution study: growth rate of the seeded mode at several grids (prints JSON).

    .venv/bin/python experiments/hybrid_khi_resolution.py [--sizes 12,16,24] [--nv 12] [--out khi_res.json]

Each run is ``faiser simulate khi`` with the case defaults except ``nx = ny = size``; the rate is
fitted over the exponential phase (:func:`faiser.vlasov.hybrid_diagnostics.linear_phase_window`).
"""

from __future__ import annotations

import argparse
import json
import time

from faiser.run.simulate import simulate
from faiser.vlasov import hybrid_diagnostics as hd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="12,16,24")
    p.add_argument("--nv", type=int, default=12)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    extra = dict(s.split("=", 1) for s in a.set)
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        t0 = time.perf_counter()
        res = simulate("khi", {"nx": n, "ny": n, "nv": a.nv, **extra}, progress=False)
        ds = res.diagnostics
        t, amp = ds["time"].values, ds["khi_amplitude"].values
        w = hd.linear_phase_window(t, amp)
        d = res.config.describe()
        gamma = hd.fit_growth_rate(t, amp, *w)
        rows.append({
            "nx": n, "ny": n, "nv": a.nv, "growth_rate": gamma, "fit_window": list(w),
            "growth_rate_width_over_V0": gamma * d["width"] / d["V0"],
            "michalke_incompressible_width_over_V0": hd.MICHALKE_MAX_GROWTH,
            "k_width": d["k_width"], "fast_mach_V0": d["fast_mach_V0"], "sonic_mach_V0": d["sonic_mach_V0"],
            "max_div_b_rel": float(ds["div_b_rel"].values.max()), "wall_s": time.perf_counter() - t0,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
