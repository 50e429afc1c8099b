"""The reconstruction of one scan: the riCOM image on top of the chunk reduction.

`Reconstruction` is a `ricom.engine.reduction.ChunkReduction` — chunks in any order, the
per-pattern reduction once per chunk, the moments reducer and any further reducers —
whose riCOM image (`ricom.engine.ricom_update.RicomImage`) follows every chunk: each
scatters the kernel of every updated position into it (updates of dense scan rows may
wait for more rows; `snapshot` and `flush` bring them in), and a change of kernel,
rotation, flip, centre or calibration rebuilds it from the stored moments, so it always
shows what the current settings give for everything seen so far.  `snapshot` returns a
consistent copy from any thread.
"""
from __future__ import annotations

import time

import numpy as np

from ricom.core.errors import SettingsError
from ricom.core.params import Settings, check_com_mask, check_scan_memory, max_kernel_size, shape2
from ricom.engine import compiled as C
from ricom.engine.lookups import DetectorLookups
from ricom.engine.reduction import ChunkReduction, PreparedFrames
from ricom.engine.ricom_update import RicomImage
from ricom.engine.snapshot import Snapshot

AUTO_CENTRE_TOLERANCE_PX = 0.02
"""The live image is rebuilt when the running centre estimate moves by more than this."""


class Reconstruction(ChunkReduction):
    """Incremental riCOM reconstruction of one scan.

    Parameters
    ----------
    scan_shape : (int, int)
        (scan_y, scan_x).
    detector_shape : (int, int)
        (det_y, det_x) of the patterns.
    settings : Settings, optional
        Kernel, geometry, calibration and virtual detectors.
    reference_center_yx : (float, float), optional
        Centre measured on a vacuum reference scan; used when the geometry's centre is
        auto (``None``) instead of the running mean COM.
    repeats : {"sum", "replace"}
        What a later scan pass does at a position already seen: ``"sum"`` adds its
        counts (averaging repeated scans), ``"replace"`` shows the newest pass only (live
        viewing while the operator tunes focus).  Passes are told by ``scan_pass``.
    threads : int
        Worker threads for the per-pattern sums (compiled code releases the GIL); the
        kernel scatter stays in one thread.

    Examples
    --------
    >>> import numpy as np
    >>> from ricom import Reconstruction, Settings, KernelSettings, DetectorGeometry
    >>> data = np.random.default_rng(0).poisson(5.0, (8, 8, 16, 16))
    >>> rec = Reconstruction((8, 8), (16, 16), Settings(kernel=KernelSettings(5),
    ...                      geometry=DetectorGeometry(center_yx=(7.5, 7.5))))
    >>> rec.process_frames(data.reshape(-1, 16, 16), positions=np.arange(64))
    >>> rec.snapshot().ricom.shape
    (8, 8)
    """

    def __init__(self, scan_shape, detector_shape, settings: Settings | None = None,
                 reference_center_yx: tuple[float, float] | None = None, repeats: str = "sum",
                 threads: int = 1) -> None:
        sy, sx = shape2("scan shape", scan_shape)
        check_scan_memory(sy * sx, f"scan shape {sy}×{sx}")  # before anything is allocated
        super().__init__(scan_shape, detector_shape, settings, reference_center_yx, repeats, threads)
        self.image = RicomImage(self.scan_shape, self._settings.kernel, self._settings.calibration.step)
        self._descan = np.zeros((2, self.moments.n_positions))
        self._centre_used: tuple[float, float] | None = None
        self._frame_key: tuple | None = None

    # ------------------------------------------------------------------ settings

    def _check_settings(self, s: Settings) -> None:
        n = s.kernel.size
        limit = max_kernel_size(self.scan_shape)
        if n > limit:
            raise SettingsError(f"kernel size {n} is larger than needed for a {self.scan_shape[0]}×"
                                f"{self.scan_shape[1]} scan; use at most {limit}")
        check_com_mask(s.com_mask_px, self.detector_shape, s.geometry.center_yx)
        super()._check_settings(s)

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings; the image is rebuilt from everything seen so far.

        Virtual detectors and the COM mask act on patterns as they arrive, so new ones
        apply from the next chunk on (their images restart at zero).
        """
        self._check_settings(settings)
        with self._lock:
            old = self._settings
            self._settings = settings
            if settings.virtual_detectors != old.virtual_detectors or settings.com_mask_px != old.com_mask_px:
                self.lookups = DetectorLookups(centre_yx_px=self.lookups.centre_yx_px,
                                               bf_radius_px=self.lookups.bf_radius_px)
                self.moments.set_rings(0)
            if settings.kernel != old.kernel or settings.calibration.step != old.calibration.step:
                self.image.set_kernel(settings.kernel, settings.calibration.step)
            self._rebuild()

    # ------------------------------------------------------------------ geometry

    def com_frame(self) -> C.ComFrame:
        """How the moments become calibrated scan-frame COM now (`ricom.engine.compiled.ComFrame`);
        made again only when the centre, the descan or the settings changed."""
        key = self._frame_key
        if key is not None and key[0] == self._centre_used and key[1] is self._descan and key[2] is self._settings:
            return key[3]
        cy, cx = self._centre_used if self._centre_used is not None else (0.0, 0.0)
        frame = C.ComFrame(float(cy), float(cx), self._descan, float(self._settings.calibration.com_scale),
                           *(float(v) for v in self._settings.geometry.matrix()))
        self._frame_key = (self._centre_used, self._descan, self._settings, frame)
        return frame

    def set_descan(self, offset_y: np.ndarray | None, offset_x: np.ndarray | None = None) -> None:
        """Per-position shift of the pattern centre (detector pixels), e.g. a fitted plane
        or a vacuum reference's COM map minus its mean; ``None`` clears it.  Rebuilds."""
        with self._lock:
            if offset_y is None:
                self._descan = np.zeros_like(self._descan)
            else:
                oy = np.broadcast_to(np.asarray(offset_y, np.float64), self.scan_shape)
                ox = np.broadcast_to(np.asarray(offset_x, np.float64), self.scan_shape)
                self._descan = np.ascontiguousarray(np.stack([oy.ravel(), ox.ravel()]))
            self._rebuild()

    # ------------------------------------------------------------------ image

    def _after_add(self, n_t: int) -> None:
        """Follow the centre estimate and scatter the ``n_t`` touched positions."""
        centre = self.center_yx()
        if centre is None:  # nothing but empty patterns so far
            centre = ((self.detector_shape[0] - 1) / 2, (self.detector_shape[1] - 1) / 2)
        if self._centre_used is None or self._replaying:  # a replay rebuilds the image once at its end
            self._centre_used = centre
        elif max(abs(centre[0] - self._centre_used[0]), abs(centre[1] - self._centre_used[1])) \
                > AUTO_CENTRE_TOLERANCE_PX:
            self._centre_used = centre
            self._rebuild()
            n_t = 0
        if not self._replaying:
            self.image.update(self.moments.state, self.moments.touched, n_t, self.com_frame())
        super()._after_add(n_t)

    def flush(self) -> None:
        """Bring the image up to date now (updates of dense scan rows wait for more rows,
        see `RicomImage.update`; `snapshot` does this itself) and count it as processing time."""
        with self._lock:
            if self.image.n_pending and self._t_first is not None:
                self.image.flush()
                self.seconds_processing = time.perf_counter() - self._t_first

    def _after_replay(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        """Recompute COM maps and the whole image from the stored moments."""
        if self._centre_used is None:
            return
        self._centre_used = self.center_yx() or self._centre_used
        self.image.rebuild(self.moments.state, self.com_frame())

    def warm_up(self, frames) -> None:
        """Run a few patterns like those to come through a throwaway copy of this engine, so
        that the compiled kernels are loaded before the first real chunk: a live
        acquisition's first chunk would otherwise wait ~0.2 s for them."""
        side = max(len(frames), self._settings.kernel.size)
        twin = Reconstruction((side, side), self.detector_shape, self._settings, self._reference_center, self.repeats)
        twin.process_frames(frames, start=0)
        twin.image.warm_up(twin.moments.state, twin.com_frame())
        twin.snapshot()

    def finalize(self) -> None:
        """Settle the auto centre on its final estimate (rebuilds if it moved at all).

        Events still held back for the detector look-ups are processed first.
        """
        with self._lock:
            super().finalize()
            centre = self.center_yx()
            if centre is not None and centre != self._centre_used:
                self._centre_used = centre
                self._rebuild()

    def snapshot(self, fresh: bool = True) -> Snapshot:
        """A consistent copy of all images, safe to take from any thread.

        Further reducers add their images (`ricom.engine.reducer.Reducer.snapshot_part`:
        tcBF, SSB); with ``fresh`` False, those whose images are costly hand out the
        ones made last (a display's refresh), else they are made from everything seen.
        """
        snap = self._snapshot()
        for reducer in list(self.reducers):  # outside the engine's lock: chunks go on meanwhile
            part = reducer.snapshot_part(fresh)
            if part is not None:
                snap.extra.update(part.images)
                snap.extra_units.update(part.units)
                snap.metadata.update(part.attrs)
        return snap

    def _snapshot(self) -> Snapshot:
        with self._lock:
            cal = self._settings.calibration
            state, shape = self.moments.state, self.scan_shape
            vds = {name: state[C.FIRST_RING + rings].sum(axis=0).reshape(shape)
                   for name, rings in self.lookups.detector_rings.items()}
            for vd in self._settings.virtual_detectors:
                vds.setdefault(vd.name, np.zeros(shape))
            c = self.moments.counters
            return Snapshot(
                ricom=self.image.image * cal.potential_scale,
                com_x=self.image.com_x.reshape(shape).copy(),
                com_y=self.image.com_y.reshape(shape).copy(),
                counts=state[C.TOTAL].reshape(shape).copy(),
                hits=self.moments.hits.reshape(shape).copy(),
                virtual=vds,
                settings=self._settings,
                center_yx=self._centre_used,
                n_patterns=c.n_patterns, n_empty=c.n_empty, n_invalid=c.n_invalid,
                n_outside=c.n_outside, seconds_processing=self.seconds_processing,
                virtual_radii_px=self.ring_boundaries_px(),
            )


__all__ = ["AUTO_CENTRE_TOLERANCE_PX", "PreparedFrames", "Reconstruction"]
