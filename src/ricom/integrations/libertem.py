"""riCOM and the centre of mass as LiberTEM UDFs (`RiCOMUDF`, `ComUDF`), run by ricom's engine.

This module owns the glue between LiberTEM's UDF interface and ricom's engine; it
computes no physics of its own.  A run goes:

1. **Per partition** (on any LiberTEM executor: inline, Dask, a LiberTEM-live
   acquisition), `process_partition` reduces the partition's patterns with ricom's
   compiled per-pattern reduction (`ricom.engine.reduction.ChunkReduction.prepare_frames`)
   to their moments — total, Σ I·x, Σ I·y and the virtual-detector ring sums — and writes
   them into a ``kind="nav"`` buffer, with a flag that the position was seen.
2. **Merge** is LiberTEM's own default for nav buffers: the partitions' slices are
   copied into the full buffers.
3. **get_results** hands the moments of every pattern seen so far to a ricom
   `ricom.engine.reconstruction.Reconstruction` (``process_moments``), which builds riCOM,
   COM, the virtual detectors and any derived signal exactly as `ricom.reconstruct`
   does.  LiberTEM calls it after every partition while results stream in, so its live
   plots (``run_udf(..., plots=True)``) and ``run_udf_iter`` show the images growing.

The detector look-ups behind virtual detectors and a COM mask (centre, ring of every
pixel) must be the same on every partition.  They are built from the settings when the
centre and the radii are given in pixels or mrad; detectors relative to the bright-field
disc, or an automatic centre, are measured on the first patterns as ricom does:
`RiCOMUDF.for_dataset` reads them through LiberTEM once, `detector_lookups` takes
patterns you have (for a live acquisition, those of a previous scan).
"""
from __future__ import annotations

import numpy as np

try:
    from libertem.udf.base import UDF
except ImportError as exc:  # the optional extra is missing
    raise ImportError("ricom.integrations.libertem needs LiberTEM: pip install 'ricom[libertem]'") from exc

from ricom.api import default_kernel_size, make_settings
from ricom.core.errors import InputError, Param, SettingsError
from ricom.core.params import KernelSettings, Settings
from ricom.engine.lookups import NO_LOOKUPS, DetectorLookups, build_lookups
from ricom.engine.reconstruction import Reconstruction
from ricom.engine.reduction import ChunkReduction
from ricom.engine.snapshot import Snapshot, expand_signals

FIRST_CHUNK = 512
"""Patterns the look-ups are measured on, as the first chunk of `ricom.reconstruct`."""


def detector_lookups(frames: np.ndarray, settings: Settings) -> DetectorLookups:
    """The detector look-ups ricom builds from its first chunk, built from ``frames``.

    Parameters
    ----------
    frames : ndarray
        ``(k, det_y, det_x)`` patterns (ricom uses the first 512 of a scan).
    settings : Settings
        The settings the UDF will run with (centre, virtual detectors, COM mask).

    Returns
    -------
    DetectorLookups
        Give it to `RiCOMUDF` or `ComUDF` as ``lookups``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise InputError(f"detector look-ups need a stack of patterns (k, det_y, det_x), got shape {frames.shape}")
    first = ChunkReduction((1, frames.shape[0]), frames.shape[1:], settings)
    first.process_frames(frames, start=0)
    return first.lookups


def _needs_lookups(settings: Settings) -> bool:
    return bool(settings.virtual_detectors) or settings.com_mask_px is not None


def _lookups_from_settings(settings: Settings) -> bool:
    """True when the look-ups follow from the settings alone (centre given, no disc-relative radii)."""
    return settings.geometry.center_yx is not None and all(vd.unit != "bf" for vd in settings.virtual_detectors)


def _settings_from(settings: Settings | None, setting_args: dict) -> tuple[Settings, bool]:
    """The settings given, or those of `ricom.make_settings`; and whether the kernel size is
    left to the scan (`ricom.api.default_kernel_size`)."""
    if settings is None:
        auto = setting_args.get("kernel_size") is None
        if setting_args.get("virtual_detector") is None:
            setting_args = {"virtual_names": (), **setting_args}
        return make_settings(**setting_args), auto
    if setting_args:
        raise SettingsError("give either settings= or individual setting arguments, not both")
    if not isinstance(settings, Settings):
        raise SettingsError(f"settings must be a ricom Settings, got {type(settings).__name__}")
    return settings, False


def _scan_shape(meta) -> tuple[tuple[int, int], tuple[int, int]]:
    nav, sig = tuple(meta.dataset_shape.nav), tuple(meta.dataset_shape.sig)
    if len(nav) != 2 or len(sig) != 2:
        raise InputError(f"riCOM needs a 2D scan of 2D patterns, and this dataset is nav {nav} × sig {sig}; "
                         f"load it with nav_shape=(SY, SX)")  # LiberTEM's keyword, not ricom's
    return nav, sig


class ComUDF(UDF):
    """COM maps, total counts and virtual detectors of a LiberTEM dataset, made by ricom.

    Results (``kind="nav"``, float64): ``com_x``, ``com_y`` (calibrated, scan frame),
    ``counts``, one image per virtual detector of the settings, and the derived
    ``signals`` asked for.  They equal `ricom.reconstruct`'s to float rounding.

    Parameters
    ----------
    settings : Settings, optional
        ricom's settings (centre, rotation, flip, calibration, virtual detectors, COM
        mask).  Without it, the keyword arguments of `ricom.make_settings` (``center_yx``,
        ``rotation_deg``, ``flip``, ``step_A``, ``pixel_size_mrad``, ``energy_keV``,
        ``virtual_detector``, ``com_mask_px`` …) make it; virtual detectors are then only
        those of ``virtual_detector`` (an annulus in px or mrad).
    lookups : DetectorLookups, optional
        Detector look-ups measured on the data (`detector_lookups`, `for_dataset`); needed
        when virtual detectors or the COM mask depend on the data.
    signals : sequence of str
        Further images from ricom's `ricom.engine.snapshot.SIGNALS` (``icom``,
        ``divergence``, ``curl``, ``efield_magnitude``, ``efield_direction``, ``hits``).
    auto_kernel : bool, optional
        Leave the kernel size to the scan (`ricom.api.default_kernel_size`); by default
        true when neither ``settings`` nor ``kernel_size`` is given.
    **setting_args
        Keyword arguments of `ricom.make_settings`, instead of ``settings``.
    """

    IMAGES: tuple[str, ...] = ("com_x", "com_y", "counts")
    """The images this UDF always gives."""
    MAKES_RICOM = False
    """False: the engine's riCOM image is built with the smallest kernel (it is not a result)."""

    def __init__(self, settings: Settings | None = None, *, lookups: DetectorLookups | None = None,
                 signals=(), auto_kernel: bool | None = None, **setting_args) -> None:
        settings, auto = _settings_from(settings, setting_args)
        if _needs_lookups(settings) and not _lookups_from_settings(settings) and \
                (lookups is None or lookups.missing(settings)):
            raise SettingsError("virtual detectors relative to the bright-field disc, or with an automatic "
                                "centre, are measured on the data: make the UDF with for_dataset(ctx, "
                                "dataset, ...), or give lookups=detector_lookups(frames, settings), or ",
                                Param("center_yx", form=True), " with radii in px")
        signals = tuple(signals)
        if not self.MAKES_RICOM and "ricom" in signals:
            raise SettingsError(f"{type(self).__name__} makes no riCOM image; use RiCOMUDF for it")
        self._images(settings, signals)  # checks the names
        super().__init__(settings=settings, lookups=lookups, signals=signals,
                         auto_kernel=auto if auto_kernel is None else bool(auto_kernel))

    # ------------------------------------------------------------------ set-up

    @property
    def images(self) -> tuple[str, ...]:
        """Names of the result images, in order."""
        return self._images(self.params.settings, self.params.signals)

    def _images(self, settings: Settings, signals) -> tuple[str, ...]:
        names = [vd.name for vd in settings.virtual_detectors]
        bad = [n for n in names if not n.isidentifier()]
        if bad:
            raise SettingsError(f"virtual detector names become LiberTEM buffer names and must be Python "
                                f"identifiers, got {bad}")
        return tuple(dict.fromkeys([*self.IMAGES, *names, *expand_signals(signals, names)]))

    @classmethod
    def for_dataset(cls, ctx, dataset, settings: Settings | None = None, *, first_frames: int = FIRST_CHUNK,
                    signals=(), **setting_args):
        """The UDF, with its detector look-ups measured on the first patterns of ``dataset``.

        When the settings need them, the first ``first_frames`` patterns are read through
        ``ctx`` once (ricom measures the centre and the bright-field radius on its first
        chunk); the other arguments are those of the class.
        """
        settings, auto = _settings_from(settings, setting_args)
        lookups = None
        if _needs_lookups(settings) and not _lookups_from_settings(settings):
            from libertem.udf.raw import PickUDF

            nav = tuple(dataset.shape.nav)
            roi = np.zeros(int(np.prod(nav)), bool)
            roi[:max(1, int(first_frames))] = True
            frames = ctx.run_udf(dataset=dataset, udf=PickUDF(), roi=roi.reshape(nav))["intensity"].data
            lookups = detector_lookups(frames, settings)
        return cls(settings, lookups=lookups, signals=signals, auto_kernel=auto)

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE  # ricom reduces integer patterns exactly, without a float copy

    def get_backends(self):
        return (self.BACKEND_NUMPY,)

    def _lookups(self, detector_shape) -> DetectorLookups:
        """The look-ups given, or built from the settings (the same on every partition)."""
        settings, given = self.params.settings, self.params.lookups
        if given is not None and given is not NO_LOOKUPS and not given.missing(settings):
            return given
        if not _needs_lookups(settings):
            return NO_LOOKUPS
        return build_lookups(settings, detector_shape, settings.geometry.center_yx, lambda: 1.0)

    def get_result_buffers(self):
        _, sig = _scan_shape(self.meta)
        n_rows = self._lookups(sig).n_rows
        buffers = {
            "moments": self.buffer(kind="nav", extra_shape=(n_rows,), dtype=np.float64, use="private"),
            "seen": self.buffer(kind="nav", dtype=bool, use="private"),
        }
        for name in self.images:
            buffers[name] = self.buffer(kind="nav", dtype=np.float64, use="result_only")
        return buffers

    # ------------------------------------------------------------------ per partition

    def process_partition(self, partition) -> None:
        """ricom's per-pattern reduction of the partition's patterns, into the nav buffers."""
        _, sig = _scan_shape(self.meta)
        frames = np.asarray(partition).reshape((-1, *sig))
        reduction = ChunkReduction((1, frames.shape[0]), sig, self.params.settings, lookups=self._lookups(sig))
        prepared = reduction.prepare_frames(frames, start=0)
        self.results.moments[:] = prepared.chunk.moments.T
        self.results.seen[:] = True

    # ------------------------------------------------------------------ results

    def _settings_for(self, scan_shape) -> Settings:
        settings = self.params.settings
        if not self.MAKES_RICOM:
            return settings.with_(kernel=KernelSettings(3))
        if self.params.auto_kernel:
            kernel = KernelSettings(default_kernel_size(scan_shape), settings.kernel.band_pass)
            settings = settings.with_(kernel=kernel)
        return settings

    def snapshot(self) -> Snapshot:
        """ricom's `Snapshot` of everything merged so far (call it where `get_results` may be called)."""
        nav, sig = _scan_shape(self.meta)
        lookups = self._lookups(sig)
        rec = Reconstruction(nav, sig, self._settings_for(nav))
        if lookups is not NO_LOOKUPS:  # the look-ups every partition used
            rec.lookups = lookups
            rec.moments.set_rings(lookups.n_rings)
        seen = np.asarray(self.results.seen).reshape(-1)
        moments = np.asarray(self.results.moments).reshape(seen.shape[0], -1)
        roi = self.meta.roi  # with a ROI the buffers hold its positions only, in order
        where = np.flatnonzero(np.asarray(roi).reshape(-1)) if roi is not None else np.arange(seen.shape[0])
        rec.process_moments(where[seen], np.ascontiguousarray(moments[seen].T))
        rec.finalize()
        return rec.snapshot()

    def get_results(self):
        snap = self.snapshot()
        return {name: np.asarray(snap.signal(name), np.float64) for name in self.images}


class RiCOMUDF(ComUDF):
    """riCOM of a LiberTEM dataset, made by ricom's engine; with COM, counts and virtual detectors.

    Results (``kind="nav"``, float64): ``ricom`` and everything `ComUDF` gives; they
    equal `ricom.reconstruct`'s to float rounding.  The kernel is ``kernel_size`` (or the
    settings'), by default the one `ricom.reconstruct` chooses for the scan.

    Examples
    --------
    >>> import libertem.api as lt
    >>> data = np.random.default_rng(0).poisson(4.0, (8, 8, 16, 16)).astype(np.uint16)
    >>> with lt.Context.make_with("inline") as ctx:
    ...     ds = ctx.load("memory", data=data, num_partitions=2)
    ...     res = ctx.run_udf(dataset=ds, udf=RiCOMUDF(kernel_size=5, center_yx=(7.5, 7.5)))
    >>> import ricom
    >>> ref = ricom.reconstruct(data, kernel_size=5, center_yx=(7.5, 7.5))
    >>> bool(np.allclose(res["ricom"].data, ref.ricom, rtol=1e-12, atol=1e-12))
    True
    """

    IMAGES = ("ricom", "com_x", "com_y", "counts")
    MAKES_RICOM = True


__all__ = ["FIRST_CHUNK", "ComUDF", "RiCOMUDF", "detector_lookups"]
