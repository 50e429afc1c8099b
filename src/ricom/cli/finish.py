"""The end of every reconstructing command: optional auto-rotation, saving, the summary
line and the exit code (0 done, 3 the input broke off, 130 interrupted — partial
results are saved in both cases)."""
from __future__ import annotations

import sys

from ricom.cli.options import error_text


def save_result(output: str, names, result, rec, extra: dict, rotation_auto: bool,
                interrupted: bool = False) -> int:
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
        The frontend stopped the run itself (e.g. a signal handler).
    """
    from ricom.io import outputs

    snap = result.snapshot
    if rotation_auto:
        from ricom.calibration.calibrate import apply_auto_rotation
        report = apply_auto_rotation(rec)
        snap = rec.snapshot()
        snap.seconds_processing = result.seconds_processing
        extra = {**extra, **{f"auto_rotation_{k}": v for k, v in report.items() if k not in ("rotation_deg", "flip")}}
        from ricom.core.progress import yes_no  # the words of `ricom calibrate` and `ricom info`
        print(f"rotation: {report['rotation_deg']:.2f}°  flip: {yes_no(report['flip'])}  "
              f"confidence: {report['confidence']:.2f}", file=sys.stderr)
    written = outputs.save(output, snap, names, extra)
    if snap.n_invalid:
        print(f"warning: {snap.n_invalid} patterns contained NaN or infinite values and were skipped",
              file=sys.stderr)
    rate = snap.n_patterns / result.seconds_processing if result.seconds_processing > 0 else float("nan")
    print(f"{snap.n_patterns} patterns in {result.seconds_processing:.2f} s ({rate:,.0f}/s); "
          f"wrote {', '.join(written)} to {output}")
    if result.interrupted or interrupted:
        print(f"ricom: interrupted; the partial result ({snap.n_patterns} patterns) is saved in {output}",
              file=sys.stderr)
        return 130
    if result.error:
        print(f"ricom: error: {error_text(result.error)}; the partial result ({snap.n_patterns} patterns) is saved "
              f"in {output}", file=sys.stderr)
        return 3
    return 0
