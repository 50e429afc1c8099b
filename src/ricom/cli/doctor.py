"""ricom doctor [--json]

Report this machine's environment for a bug report: ricom and Python versions, numba and
the CPU it compiles for (SIMD features), the Qt platform the GUI would use and whether
its system libraries are present (with the packages to install if not), and which
optional extras and detector libraries are installed.
"""
from __future__ import annotations

HELP = "report the environment (versions, CPU target, Qt platform, extras) for bug reports"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    import json

    from ricom.tools.environment import format_report, report

    rep = report()
    print(json.dumps(rep, indent=2, default=str) if args.json else format_report(rep))
    return 0
