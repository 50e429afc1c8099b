"""ricom info INPUT [options]

Show what ricom detects in an input without reading its patterns: format, detector
shape, pixel type, counter depth and chip layout (Merlin), frame count, the scan shape
and where it came from (given, the file, an .hdr), skips and flyback, and calibration
the file carries.  The same source options as ``reconstruct`` apply, so ``info`` also
checks that a scan shape fits the frame count.

Event files (.tpx3, .t3p, event-list .h5) are shown as events: the events are read once
(with progress; --quick skips it) for their count, the dwell time (measured from the
line triggers, given, or from FILE.ricom.json), the scan's duration, the trigger edges
and the chip layout, chip by chip.
"""
from __future__ import annotations

import json
import warnings

from ricom.cli.info_events import describe_events
from ricom.cli.options import add_source_options, source_options
from ricom.core.progress import yes_no

HELP = "show what ricom detects in an input (shapes, dtype, depth, frames, scan shape)"


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="data file (.mib, file.h5:/dataset, .zarr, .npy, …) or 'demo'")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument("--quick", action="store_true",
                   help="event files: do not read the events (no count, measured dwell or trigger count)")
    add_source_options(p)


def _value(v) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return yes_no(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "×".join(str(x) for x in v)
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) if v else "none"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items()) if v else "none"
    return str(v)


def format_description(d: dict) -> str:
    """``key: value`` lines, keys aligned, in the source's order."""
    width = max(len(k) for k in d) + 1
    return "\n".join(f"{(k.replace('_', ' ') + ':').ljust(width + 1)} {_value(v)}" for k, v in d.items())


def run(args) -> int:
    from ricom.sources import open_source

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        source = open_source(args.input, **source_options(args))
    read_events = not args.quick  # event files only: count the events, measure the dwell
    try:
        if source.kind == "events":
            shown, raw = describe_events(source, args.input, read=read_events, dwell_ns=args.dwell_ns)
            d = {"input": args.input, **(raw if args.json else shown)}
        else:
            d = {"input": args.input, **source.describe()}
        hints = source.hints()
        if hints:
            d["calibration_in_file"] = hints
    finally:
        source.close()
    print(json.dumps(d, indent=2, default=str) if args.json else format_description(d))
    return 0
