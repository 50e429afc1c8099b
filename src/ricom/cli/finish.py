"""The end of every reconstructing command: optional auto-rotation, saving, the summary
line and the exit code (`ricom.cli.main.EXIT_CODES`: 0 done, 3 the input broke off or
fell short of its scan, 130 interrupted — the result is saved in both cases).

Ctrl-C during the auto-rotation and the save is held back until the file is complete
(`ricom.cli.interrupts.deferred`): the file is always whole, and the command then exits
130.
"""
from __future__ import annotations

import sys

from ricom.cli.interrupts import deferred
from ricom.cli.main import EXIT_DONE, EXIT_INTERRUPTED, EXIT_PARTIAL
from ricom.cli.options import error_text
from ricom.core.progress import count_text


def save_result(output: str, names, result, rec, extra: dict, rotation_auto: bool,
                interrupted: bool = False, command: str = "reconstruct") -> int:
    """Apply ``--rotation auto`` if asked, write ``output`` and say what happened.

    Parameters
    ----------
    output : str
        Output file (already checked writable).
    names : list of str
        Signals to write.
    result : ricom.engine.pipeline.RunResult
        How the run ended.
    rec : ricom.engine.reconstruction.Reconstruction
        The engine, for the auto-rotation rebuild.
    extra : dict
        Attributes to store beside the parameters (input name, descan, …).
    rotation_auto : bool
        Find rotation and flip from the data before saving.
    interrupted : bool
        Ctrl-C came although the run read its whole input (e.g. after its last chunk).
    command : str
        The command named in the summary line (``ricom reconstruct: 4 096 patterns in …``).

    Returns
    -------
    int
        130 after Ctrl-C (also one held back during the save), 3 if the result is
        partial for another reason, else 0.  Exactly one line on stderr says why when
        it is not 0.
    """
    with deferred() as held:
        snap, extra = _final_snapshot(result, rec, extra, rotation_auto)
        written = _write(output, snap, names, extra)
    if snap.n_invalid:
        print(f"warning: {snap.n_invalid} patterns contained NaN or infinite values and were skipped",
              file=sys.stderr)
    unvisited = int((snap.hits == 0).sum())
    if unvisited and result.reason is None:
        print(f"note: {unvisited} of {snap.hits.size} scan positions received no pattern and stay empty",
              file=sys.stderr)
    rate = snap.n_patterns / result.seconds_processing if result.seconds_processing > 0 else float("nan")
    fit = f"; {snap.metadata['tcbf_summary']}" if "tcbf_summary" in snap.metadata else ""
    print(f"ricom {command}: {count_text(snap.n_patterns)} patterns in {result.seconds_processing:.2f} s "
          f"({count_text(rate)} patterns/s); wrote {', '.join(written)} to {output}{fit}")
    kept = f"the partial result ({snap.n_patterns} patterns) is saved in {output}"
    if result.interrupted:
        print(f"ricom: interrupted; {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.reason is not None:
        print(f"ricom: error: {error_text(result.reason)}; {kept}", file=sys.stderr)
        return EXIT_PARTIAL
    if interrupted or (held.count and not held.handed_on):
        print(f"ricom: interrupted after the input was read; the complete result is saved in {output}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_DONE


def _final_snapshot(result, rec, extra: dict, rotation_auto: bool):
    """The snapshot to save (after ``--rotation auto``), marked with how the run ended."""
    snap = result.snapshot
    if rotation_auto:
        from ricom.calibration.calibrate import apply_auto_rotation
        report = apply_auto_rotation(rec)
        snap = result.stamp(rec.snapshot())
        extra = {**extra, **{f"auto_rotation_{k}": v for k, v in report.items() if k not in ("rotation_deg", "flip")}}
        from ricom.core.progress import yes_no  # the words of `ricom calibrate` and `ricom info`
        print(f"rotation: {report['rotation_deg']:.2f}°  flip: {yes_no(report['flip'])}  "
              f"confidence: {report['confidence']:.2f}", file=sys.stderr)
    return snap, extra


def _write(output: str, snap, names, extra: dict) -> list[str]:
    from ricom.io import outputs

    return outputs.save(output, snap, names, extra)
