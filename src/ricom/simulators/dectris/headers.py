"""The per-series messages of the DECTRIS simulator: header, end, and the leftover images of a fault.

`series_messages` fills a `ricom.simulators.dectris.sender.Series` from the simulator's
configuration: stream V1 — the ``dheader`` message (with the detector-config JSON for
``header_detail`` basic/all, without ``bit_depth_image`` under the ``omit_bit_depth``
fault; the flatfield, pixel mask and count-rate table for ``all``) and ``dseries_end``;
stream V2 — the ``start`` message (``pixel_mask`` and ``flatfield`` only with ``all``,
as DECTRIS's README says) and ``end``.  The ``no_header`` fault leaves the header out;
``leftover_images`` puts image messages of the previous series id before it.
"""
from __future__ import annotations

import datetime

import numpy as np

from ricom.simulators.dectris import encode


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def v1_config(sim) -> dict:
    """The detector-config JSON of a V1 header (the REST configuration, as a DCU sends it)."""
    config = {k: v for k, v in sim.config["detector"].items()}
    config["data_collection_date"] = _now()
    config["eiger_fw_version"] = "ricom-simulator"
    if sim.faults.omit_bit_depth:
        config.pop("bit_depth_image", None)
    return config


def v2_start_fields(sim, series_id: int, unique_id: str, frames: int) -> dict:
    """The fields of a V2 ``start`` message (``type`` excluded)."""
    det, stream = sim.config["detector"], sim.config["stream"]
    h, w = sim.image_shape
    fields = {"series_id": series_id, "series_unique_id": unique_id, "arm_date": _now(),
              "beam_center_x": float(det["beam_center_x"]), "beam_center_y": float(det["beam_center_y"]),
              "channels": [encode.CHANNEL], "count_time": float(det["count_time"]),
              "countrate_correction_enabled": bool(det["countrate_correction_applied"]),
              "detector_description": det["description"], "detector_serial_number": det["detector_number"],
              "detector_translation": [0.0, 0.0, float(det["detector_distance"])],
              "flatfield_enabled": bool(det["flatfield_correction_applied"]), "frame_time": float(det["frame_time"]),
              "goniometer": {}, "image_dtype": sim.dtype().name, "image_size_x": w, "image_size_y": h,
              "incident_energy": float(det["photon_energy"]), "incident_wavelength": 0.0197,
              "number_of_images": frames, "pixel_mask_enabled": bool(det["pixel_mask_applied"]),
              "pixel_size_x": float(det["x_pixel_size"]), "pixel_size_y": float(det["y_pixel_size"]),
              "saturation_value": sim.saturation_value, "sensor_material": det["sensor_material"],
              "sensor_thickness": float(det["sensor_thickness"]),
              "threshold_energy": {encode.CHANNEL: float(det["threshold_energy"])},
              "virtual_pixel_interpolation_enabled": bool(det["virtual_pixel_correction_applied"])}
    if stream["header_detail"] == "all":
        compression = det["compression"]
        fields["pixel_mask"] = {encode.CHANNEL: encode.v2_array(sim.image_mask().astype("<u4"), compression)}
        fields["flatfield"] = {encode.CHANNEL: encode.v2_array(np.ones((h, w), "<f4"), "none")}
    if stream["header_appendix"]:
        fields["user_data"] = stream["header_appendix"]
    return {k: fields[k] for k in sorted(fields)}


def series_messages(sim, series) -> None:
    """Fill ``series.header``, ``.end``, ``.leftovers`` (and ``.v2``) for the simulator's settings."""
    sid, faults = series.series_id, sim.faults
    uid = sim.unique_id(sid)
    stream = sim.config["stream"]
    k = min(faults.leftover_images, len(series.encoded))
    if series.stream == "v1":
        if not faults.no_header:
            series.header = encode.v1_header(sid, stream["header_detail"], v1_config(sim), sim.image_mask(),
                                             split=sim.split_header)
        series.end = encode.v1_end(sid)
        series.leftovers = [encode.v1_image_parts(sid - 1, i, *series.encoded[i], i * series.frame_ns,
                                                  series.count_ns) for i in range(k)]
        return
    if not faults.no_header:
        series.header = [encode.v2_start(v2_start_fields(sim, sid, uid, series.frames))]
    series.end = encode.v2_end(sid, uid)
    appendix = stream["image_appendix"] or None
    series.v2 = encode.V2Images(sid, uid, _now(), appendix)
    old = encode.V2Images(sid - 1, sim.unique_id(sid - 1), _now(), appendix)
    series.leftovers = [old.message(i, series.encoded[i], i * series.frame_ns, series.count_ns) for i in range(k)]
