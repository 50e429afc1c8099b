"""Attaching a recorder to a reconstruction: `attach_recorder` (a `ricom.io.recorder.FrameRecorder`
for patterns, a `ricom.io.event_recorder.EventRecorder` for single-electron events).

What it owns: what a recording learns from its reconstruction and source — the pattern
type (`source_dtype`), the attributes stored with the patterns (`recording_attrs`:
calibration, the source's description and headers) and the datasets a source offers
beside them (``recording_datasets()``, e.g. a DECTRIS pixel mask).
"""
from __future__ import annotations

import contextlib
import json

import numpy as np

from ricom.core.chunks import PackedFrames
from ricom.core.errors import SettingsError
from ricom.io.event_recorder import EventRecorder
from ricom.io.recorder import FrameRecorder


def recording_attrs(reconstruction, source=None) -> dict:
    """What a recording stores about its acquisition: the source's description and header
    text (Merlin: ``acquisition_header``, ``frame_header``) and the calibration in use."""
    s = reconstruction.settings
    cal, geo = s.calibration, s.geometry
    attrs = {"step_A": cal.step_A, "pixel_size_mrad": cal.pixel_size_mrad, "energy_keV": cal.energy_keV,
             "rotation_deg": geo.rotation_deg, "flip": bool(geo.flip),
             "center_yx": list(geo.center_yx) if geo.center_yx is not None else None,
             "kernel_size": s.kernel.size}
    if source is not None:
        with contextlib.suppress(Exception):
            attrs["source"] = json.dumps(source.describe(), default=str)
        if getattr(source, "acquisition_header", None):
            attrs["acquisition_header"] = str(source.acquisition_header)
        header = getattr(source, "frame_header", None)
        if header is not None:
            attrs["frame_header"] = header.summary() if hasattr(header, "summary") else str(header)
    return attrs


def source_dtype(source) -> np.dtype:
    """The pattern type a source delivers (unpacked): from its frame header, data or sample frames."""
    header = getattr(source, "frame_header", None)
    if header is not None and getattr(header, "out_dtype", None) is not None:
        return np.dtype(header.out_dtype)
    for owner in (source, getattr(source, "data", None)):
        if getattr(owner, "dtype", None) is not None:
            return np.dtype(owner.dtype)
    sample = source.sample_frames() if hasattr(source, "sample_frames") else None
    if sample is None:
        raise SettingsError("cannot tell the pattern type of the input; give the recording a dtype")
    return sample.unpack(slice(0, 1)).dtype if isinstance(sample, PackedFrames) else np.dtype(sample.dtype)


def attach_recorder(reconstruction, path: str, source=None, *, dtype=None, attrs: dict | None = None,
                    **options) -> FrameRecorder | EventRecorder:
    """Record every pattern ``reconstruction`` sees to ``path``; the caller closes the recorder.

    A source of single-electron events (``source.kind == "events"``) gets an
    `ricom.io.event_recorder.EventRecorder` instead: every event as received, in ricom's
    event-list layout (``/events``).

    Parameters
    ----------
    reconstruction : ChunkReduction
        Gives the scan and detector shape and the calibration stored with the patterns.
    path : str
        The ``.h5`` file (``/data``), written atomically when the recorder closes.
    source : Source, optional
        Gives the pattern type and the acquisition header (stored as attributes).
    dtype : dtype, optional
        Instead of the source's pattern type.
    attrs : dict, optional
        More attributes (they win over the ones taken from the reconstruction and source).
    **options
        ``compression``, ``max_queue_bytes``, ``datasets`` (see `FrameRecorder`); without
        ``datasets``, a source's ``recording_datasets()`` (its DECTRIS pixel mask) when it
        has one.

    Returns
    -------
    FrameRecorder or EventRecorder
        Already added with ``reconstruction.add_reducer``.
    """
    if source is not None and getattr(source, "kind", "frames") == "events":
        merged = {**recording_attrs(reconstruction, source), **(attrs or {})}
        dwell = getattr(getattr(source, "sync_options", None), "dwell_ns", None)
        if dwell:
            merged.setdefault("dwell_ns", float(dwell))
        options.pop("datasets", None)
        events = EventRecorder(path, reconstruction.scan_shape, reconstruction.detector_shape, attrs=merged,
                               **{k: v for k, v in options.items() if k in ("max_queue_bytes", "memory_bytes")})
        reconstruction.add_reducer(events)
        return events
    if dtype is None:
        if source is None:
            raise SettingsError("give the recording a source or a dtype")
        dtype = source_dtype(source)
    if source is not None and hasattr(source, "recording_datasets") and "datasets" not in options:
        options["datasets"] = source.recording_datasets()
    recorder = FrameRecorder(path, reconstruction.scan_shape, reconstruction.detector_shape, dtype,
                             attrs={**recording_attrs(reconstruction, source), **(attrs or {})}, **options)
    reconstruction.add_reducer(recorder)
    return recorder


__all__ = ["attach_recorder", "recording_attrs", "source_dtype"]
