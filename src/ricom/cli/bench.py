"""ricom bench [--quick] [--json FILE] [--only KIND,…]

Measure reconstruction speed on this machine with inputs the benchmark makes itself
(in a temporary folder, page-cached before timing).  Each line gives patterns/s, GB/s of
input and the ratio to a plain memory read of the same bytes in the same run.
"""
from __future__ import annotations

import json
import platform

HELP = "measure reconstruction speed on this machine"


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="a small subset (under a minute)")
    p.add_argument("--json", metavar="FILE", help="write the records as a JSON list")
    p.add_argument("--only", metavar="KINDS",
                   help="comma list of case kinds: memory, npy, h5, mib, fresh, live, live+record, events, largescan, "
                        "dask")
    p.add_argument("--tmp", metavar="DIR", help="folder for the generated inputs (default: system temp)")


def run(args) -> int:
    from ricom.io.outputs import atomic_path
    from ricom.tools.bench import run_bench

    print(f"machine: {platform.processor() or platform.machine()}, {_cores()} cores, Python "
          f"{platform.python_version()}")
    print(f"{'case':<22}{'thr':>4}{'kernel':>7}{'detector':>10}{'patterns/s':>13}{'GB/s':>7}{'×memread':>9}")

    def show(r):
        if r.patterns_per_s is None and r.events_per_s is None:
            print(f"{r.case:<22}{r.threads:>4}{r.kernel_size:>7}  {r.note}")
            return
        det = "×".join(map(str, r.detector_shape))
        extra = f"  {r.events_per_s / 1e6:.1f} M events/s" if r.events_per_s else ""
        extra += f"  {r.note}" if r.note else ""
        print(f"{r.case:<22}{r.threads:>4}{r.kernel_size:>7}{det:>10}{r.patterns_per_s:>13,.0f}{r.gb_per_s:>7.2f}"
              f"{r.memread_ratio:>9.2f}{extra}", flush=True)

    kinds = set(args.only.split(",")) if args.only else None
    records = run_bench(quick=args.quick, folder=args.tmp, report=show, kinds=kinds)
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump([r.as_dict() for r in records], fh, indent=1)
        print(f"wrote {args.json}")
    return 0


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
