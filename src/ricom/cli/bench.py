"""ricom bench [--quick] [--json FILE] [--only KIND,…]

Measure reconstruction speed on this machine with inputs the benchmark makes itself
(in a temporary folder, page-cached before timing).  Each line gives patterns/s, GB/s of
input and the ratio to a plain memory read of the same bytes in the same run.  On a
terminal a bar counts the cases; piped, a line every 5 s names the case running; one
summary line ends the run (cases, time, the fastest case, where the records went).
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")


def run(args) -> int:
    import sys

    from ricom.core.progress import Progress
    from ricom.io.outputs import atomic_path
    from ricom.tools.bench import run_bench, selected_plan

    kinds = set(args.only.split(",")) if args.only else None
    cases = selected_plan(args.quick, kinds)
    with Progress("bench", len(cases), "cases", show=not args.no_progress) as progress:
        def emit(text: str) -> None:  # a table row; on a terminal above the bar
            if progress.bar is not None:
                progress.bar.write(text, file=sys.stdout)
            else:
                print(text, flush=True)

        emit(f"machine: {platform.processor() or platform.machine()}, {_cores()} cores, Python "
             f"{platform.python_version()}")
        emit(f"{'case':<22}{'thr':>4}{'kernel':>7}{'detector':>10}{'patterns/s':>13}{'GB/s':>7}{'×memread':>9}")
        records = run_bench(quick=args.quick, folder=args.tmp, kinds=kinds,
                            report=lambda r: (emit(_row(r)), progress.update(1)),
                            starting=lambda kind: progress.update(0, kind))
        if args.json:
            with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
                json.dump([r.as_dict() for r in records], fh, indent=1)
    print(progress.summary(_closing(records, args.json), rate=False))
    return 0


def _row(r) -> str:
    """One case as a row of the table."""
    if r.patterns_per_s is None and r.events_per_s is None:
        return f"{r.case:<22}{r.threads:>4}{r.kernel_size:>7}  {r.note}"
    det = "×".join(map(str, r.detector_shape))
    extra = f"  {r.events_per_s / 1e6:.1f} M events/s" if r.events_per_s else ""
    extra += f"  {r.note}" if r.note else ""
    return (f"{r.case:<22}{r.threads:>4}{r.kernel_size:>7}{det:>10}{r.patterns_per_s:>13,.0f}{r.gb_per_s:>7.2f}"
            f"{r.memread_ratio:>9.2f}{extra}")


def _closing(records, json_path: str | None) -> str:
    """The end of the summary line: the fastest case and where the records went."""
    from ricom.core.progress import count_text

    timed = [r for r in records if r.patterns_per_s]
    fastest = max(timed, key=lambda r: r.patterns_per_s, default=None)
    text = f"fastest {fastest.case}: {count_text(fastest.patterns_per_s)} patterns/s; " if fastest else ""
    return text + (f"wrote {json_path}" if json_path else "records not saved (--json FILE saves them)")


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
