"""The Python API in one call: open an input, build settings, run, return a snapshot.

`reconstruct` is what the command line's ``ricom reconstruct`` does, minus the file
writing; `make_settings` turns flat keyword arguments (as a user types them) into the
`Settings` objects of `ricom.core.params`.

The result policy, the same for every frontend: a run that ends early (Ctrl-C, a broken
or truncated input, a dropped stream) keeps its partial result *and* says so.  Here
`reconstruct` raises `PartialResult` carrying the snapshot, or with ``strict=False``
returns it with ``snapshot.complete`` False and ``snapshot.reason`` set;
`reconstruct_run` (for frontends) returns the `RunResult` and leaves the decision to
its caller.

Phase contrast beside riCOM: ``signals=["tcbf", "ssb"]`` (or ``tcbf=TcbfSettings(…)``,
``ssb=SsbOptions(…)``) with the flat options of `ricom.phase.methods.phase_methods`
(``convergence_mrad``, ``defocus_A``, ``tcbf_fit`` …) puts those reducers on the same
chunk stream — one pass — and the snapshot carries ``snap.tcbf``, ``snap.ssb`` and the
tcBF fit in ``snap.metadata``.
"""
from __future__ import annotations

import math

from ricom.core.errors import Message, Param, RicomError, SettingsError
from ricom.core.params import Calibration, DetectorGeometry, KernelSettings, Settings, VirtualDetector, max_kernel_size
from ricom.engine.pipeline import RunResult, run
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.snapshot import Snapshot
from ricom.phase.methods import KEYWORDS as PHASE_KEYWORDS
from ricom.phase.methods import PhaseMethods, attach_methods, phase_methods
from ricom.sources import Source, open_input


class PartialResult(RicomError):
    """The run ended early; the partial result is kept in ``snapshot``.

    Raised by `reconstruct` (and `ricom.dask.client.reconstruct_distributed`) unless
    ``strict=False``.

    Attributes
    ----------
    snapshot : Snapshot
        What was reconstructed before the run ended (``snapshot.complete`` is False).
    reason : str
        Why the run ended early (also ``snapshot.reason``).
    """

    def __init__(self, snapshot: Snapshot, reason: str) -> None:
        # only the Python API raises it (other frontends save or show the partial result), so
        # ``strict`` is named as its keyword and not as a Param for other frontends to phrase
        super().__init__(f"the result is partial ({snapshot.n_patterns} patterns): ", Message(reason),
                         "; it is in the exception's .snapshot, or pass strict=False to have it returned")
        self.snapshot, self.reason = snapshot, reason

    def __reduce__(self):
        return type(self), (self.snapshot, self.reason)


def finished(snapshot: Snapshot, strict: bool) -> Snapshot:
    """``snapshot`` if it is complete or ``strict`` is False; else raise `PartialResult`."""
    if strict and not snapshot.complete:
        raise PartialResult(snapshot, snapshot.reason or "the run ended early")
    return snapshot


DEFAULT_VIRTUAL_DETECTORS = (
    VirtualDetector("vbf", 0.0, 1.0, "bf"),
    VirtualDetector("vabf", 0.5, 1.0, "bf"),
    VirtualDetector("vadf", 1.2, math.inf, "bf"),
)
"""Bright field (disc), annular bright field (outer half of the disc) and annular dark
field (everything beyond 1.2 disc radii), relative to the bright-field disc radius
estimated from the first chunk."""


def virtual_detectors_from_annulus(annulus, unit: str = "px") -> tuple[VirtualDetector, ...]:
    """``vadf`` = the annulus [r_in, r_out), ``vbf`` = the disc inside it, ``vabf`` its outer half."""
    if annulus is None:
        return DEFAULT_VIRTUAL_DETECTORS
    r_in, r_out = (float(v) for v in annulus)
    return (VirtualDetector("vbf", 0.0, r_in, unit), VirtualDetector("vabf", r_in / 2, r_in, unit),
            VirtualDetector("vadf", r_in, r_out, unit))


DEFAULT_KERNEL_SIZE = 21


def default_kernel_size(scan_shape) -> int:
    """21, or the largest useful odd size for a scan smaller than that (`max_kernel_size`)."""
    return min(DEFAULT_KERNEL_SIZE, max_kernel_size(scan_shape))


def make_settings(*, kernel_size: int | None = None, band_pass=None, band_pass_unit: str = "cycles_per_pixel",
                  rotation_deg: float = 0.0, flip: bool = False, center_yx=None, step_A=None,
                  pixel_size_mrad=None, energy_keV=None, virtual_detector=None,
                  virtual_detector_unit: str = "px", com_mask_px=None, hints: dict | None = None,
                  virtual_names=None) -> Settings:
    """Settings from flat arguments; ``hints`` (from the input) fill what is not given.

    ``band_pass_unit`` is ``"cycles_per_pixel"`` (Nyquist 0.5) or ``"inv_A"`` (needs the
    step).  ``virtual_detector`` is an annulus ``(r_in, r_out)`` in
    ``virtual_detector_unit`` (``"px"`` or ``"mrad"``), see
    `virtual_detectors_from_annulus`; None gives `DEFAULT_VIRTUAL_DETECTORS`.
    ``virtual_names`` keeps only the virtual detectors of these names (None: all), so
    that no time goes into detectors nobody asked for.
    """
    hints = hints or {}
    kernel_size = kernel_size if kernel_size is not None else DEFAULT_KERNEL_SIZE
    calibration = Calibration(step_A, pixel_size_mrad, energy_keV).filled_from(hints)
    if band_pass is not None and band_pass_unit == "inv_A":
        if calibration.step_A is None:
            raise SettingsError("a band-pass in 1/Å needs the scan step (", Param("step_A"), ")")
        kernel = KernelSettings.from_inverse_angstrom(int(kernel_size), *band_pass, calibration.step_A)
    elif band_pass_unit in ("cycles_per_pixel", "inv_A"):
        kernel = KernelSettings(int(kernel_size), tuple(band_pass) if band_pass is not None else None)
    else:
        raise SettingsError(f"band-pass unit must be 'cycles_per_pixel' or 'inv_A', got {band_pass_unit!r}")
    if center_yx is None:
        center_yx = hints.get("center_yx")
    elif isinstance(center_yx, str) and center_yx == "auto":
        center_yx = None
    geometry = DetectorGeometry(center_yx, float(rotation_deg), bool(flip))
    vds = virtual_detectors_from_annulus(virtual_detector, virtual_detector_unit)
    if virtual_names is not None:
        vds = tuple(v for v in vds if v.name in set(virtual_names))
    return Settings(kernel=kernel, geometry=geometry, calibration=calibration, virtual_detectors=vds,
                    com_mask_px=tuple(com_mask_px) if com_mask_px is not None else None)


def reference_center(reference, **source_options) -> tuple[float, float]:
    """Pattern centre from a vacuum reference scan: its mean COM (detector pixels).

    The same as `ricom.calibration.centre.center_from_reference` with ``method="com"``.
    """
    from ricom.calibration.centre import center_from_reference  # only when asked: not at start-up

    return center_from_reference(reference, "com", **source_options)


def open_with_settings(data, settings: Settings | None = None, source_options: dict | None = None,
                       **setting_args) -> tuple[Source, Settings]:
    """Open the input and settle its settings: given ``settings``, or `make_settings` of
    ``setting_args`` completed by the input's own calibration (`Source.hints`) and a
    kernel size that suits the scan.  Every frontend starts here."""
    source = open_input(data, **(source_options or {}))
    if source.scan_shape is None:
        raise SettingsError("the input does not carry its scan shape; give ", Param("scan_shape", form=True))
    if settings is None:
        if setting_args.get("kernel_size") is None:
            setting_args["kernel_size"] = default_kernel_size(source.scan_shape)
        settings = make_settings(hints=source.hints(), **setting_args)
    elif setting_args:
        raise SettingsError("give either settings= or individual setting arguments, not both")
    return source, settings


def reconstruct_run(data, *, settings: Settings | None = None, reference=None, descan: str | None = None,
                    descan_reference=None, progress=False, chunk_size: int = 512, stop=None,
                    source_options: dict | None = None, threads: int = 1, before_run=None,
                    full_scan: bool | None = None, methods: PhaseMethods | None = None,
                    refresh_s: float | None = None,
                    **setting_args) -> tuple[RunResult, Reconstruction, Source]:
    """Like `reconstruct` but returns the full `RunResult`, the engine and the source.

    A run that ends early is not an exception here: ``result.complete`` is False,
    ``result.reason`` (and the snapshot's ``reason``) says why.
    ``before_run(reconstruction, source)``, if given, is called once the engine exists and
    before the first chunk: attach further reducers (a recorder, …) there.
    ``full_scan``: an input that leaves scan positions empty is partial (see
    `ricom.engine.pipeline.run`); default: True unless ``source_options`` ask to ``pad``.
    ``methods`` (or the keywords of `ricom.phase.methods.phase_methods` among
    ``setting_args``: ``signals``, ``tcbf``, ``ssb``, ``convergence_mrad`` …): tcBF and SSB
    beside riCOM in the same pass, attached before ``before_run``; ``refresh_s``: a live
    display remakes their images between chunks at most this often.
    """
    methods = _methods(methods, setting_args)
    source, settings = open_with_settings(data, settings, source_options, **setting_args)
    ref_c = reference_center(reference) if reference is not None else None
    rec = Reconstruction(source.scan_shape, source.detector_shape, settings, reference_center_yx=ref_c,
                         threads=threads)
    if descan is not None:
        from ricom.calibration.calibrate import apply_descan  # only when asked: not at start-up
    if descan == "reference":
        if descan_reference is None:
            raise SettingsError("descan 'reference' needs a vacuum scan of the same scan: give ",
                                Param("descan_reference"))
        apply_descan(rec, "reference", descan_reference, **(source_options or {}))
    attach_methods(rec, methods, source, refresh_s)
    if before_run is not None:
        before_run(rec, source)
    if full_scan is None:
        full_scan = not (source_options or {}).get("pad", False)
    result = run(source, rec, chunk_size=chunk_size, progress=progress, stop=stop, full_scan=full_scan)
    if descan in ("plane", "quadratic"):
        apply_descan(rec, descan)  # fitted to all the data; rebuilds the image
        result.snapshot = result.stamp(rec.snapshot())
    return result, rec, source


def _methods(methods: PhaseMethods | None, setting_args: dict) -> PhaseMethods:
    """``methods``, or those the phase keywords among ``setting_args`` ask for (taken out of them)."""
    given = {k: setting_args.pop(k) for k in PHASE_KEYWORDS if k in setting_args}
    if methods is not None:
        if given:
            raise SettingsError("give either methods= or the phase-contrast keywords (", Param("signals"),
                                ", tcbf, ssb …), not both")
        return methods
    return phase_methods(**given)


def reconstruct(data, *, scan_shape=None, scan_positions=None, settings: Settings | None = None, reference=None,
                descan: str | None = None, descan_reference=None, progress: bool = False,
                chunk_size: int = 512, threads: int = 1, strict: bool = True, **setting_args) -> Snapshot:
    """Reconstruct a whole dataset and return its images.

    Parameters
    ----------
    data : ndarray, str or Source
        A 4D array ``(scan_y, scan_x, det_y, det_x)``, a 3D stack with ``scan_shape``, a
        file name (``.npy`` …), ``"demo"``, or a `Source`.
    scan_shape : (int, int), optional
        Where the input does not carry it.
    scan_positions : str, array or ScanPositions, optional
        The scan order: the position of every scan point in acquisition order, as flat
        indices ``iy * scan_x + ix`` or ``(row, col)`` pairs (``-1``: none), or a CSV/.npy
        file of them (`ricom.core.scan_positions`).  Repeats are summed; positions never
        visited stay empty (``snapshot.hits == 0``).  Default: a raster.
    settings : Settings, optional
        Full settings; otherwise keyword arguments of `make_settings`
        (``kernel_size``, ``band_pass``, ``rotation_deg``, ``center_yx``, ``step_A``,
        ``pixel_size_mrad``, ``energy_keV`` …).
    reference : array or str, optional
        Vacuum reference scan for the pattern centre.
    threads : int
        Threads for the per-pattern sums (the kernel scatter uses one).
    descan : {"plane", "quadratic", "reference"}, optional
        Descan correction (see `ricom.calibration.calibrate.apply_descan`); ``"reference"`` uses
        ``descan_reference`` (a vacuum scan of the same scan).
    strict : bool
        True (default): a run that ends early (Ctrl-C, a broken frame, a truncated file)
        raises `PartialResult`, which carries the partial snapshot.  False: return it,
        with ``complete`` False and ``reason`` set.
    signals, tcbf, ssb, convergence_mrad, defocus_A, tcbf_fit, … : optional
        Phase contrast in the same pass (`ricom.phase.methods.phase_methods`):
        ``signals=["tcbf", "ssb"]`` with ``convergence_mrad`` (SSB needs it) and
        ``defocus_A`` (positive = underfocus), or ``tcbf=TcbfSettings(…)``,
        ``ssb=SsbOptions(…)``.

    Returns
    -------
    Snapshot
        ``.ricom``, ``.com_x``, ``.com_y``, ``.signal("icom")`` … and ``.complete``; with
        phase contrast ``.tcbf``, ``.ssb`` and the tcBF fit in ``.metadata``
        (``tcbf_defocus_A``, ``tcbf_defocus_A_sigma`` …).

    Raises
    ------
    PartialResult
        With ``strict``, when the input ended before the scan was complete; its
        ``.snapshot`` holds what was reconstructed, ``.reason`` why it ended.

    Examples
    --------
    >>> import numpy as np, ricom
    >>> data = np.random.default_rng(0).poisson(3.0, (6, 6, 8, 8)).astype(np.uint16)
    >>> snap = ricom.reconstruct(data, kernel_size=5, center_yx=(3.5, 3.5))
    >>> snap.ricom.shape, snap.n_patterns, snap.complete
    ((6, 6), 36, True)

    A damaged or truncated file still gives what came before the damage:

    >>> try:  # doctest: +SKIP
    ...     snap = ricom.reconstruct("scan.mib")
    ... except ricom.PartialResult as exc:
    ...     snap = exc.snapshot  # snap.complete is False, snap.reason says why
    """
    options = {"scan_shape": scan_shape} if scan_shape is not None else {}
    if scan_positions is not None:
        options["scan_positions"] = scan_positions
    result, _, _ = reconstruct_run(data, settings=settings, reference=reference, descan=descan,
                                   descan_reference=descan_reference, progress=progress, threads=threads,
                                   chunk_size=chunk_size, source_options=options, **setting_args)
    return finished(result.snapshot, strict)
