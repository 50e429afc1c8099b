"""How GUI messages name parameters: the settings fields that set them.

Library errors name the parameters to change by their Python keyword (see
`ricom.core.errors`); `FIELDS` says which field of the window sets each, as
"group › label" of `ricom.gui.settings_column`, and `GUI` phrases a message with them,
e.g. "give the detector pixel size (Calibration › pixel size)" where Python reads
"(pixel_size_mrad)".  Parameters no field sets keep their Python name.  No Qt here.

Examples
--------
>>> from ricom.core.errors import Param, SettingsError, render
>>> render(SettingsError("a band-pass in 1/Å needs the scan step (", Param("step_A"), ")"), GUI)
'a band-pass in 1/Å needs the scan step (Calibration › step)'
"""
from __future__ import annotations

from ricom.core.errors import PYTHON, Phrasebook, Wording

FIELDS = {
    "kernel_size": Wording("Kernel › size"),
    "band_pass": Wording("Kernel › band-pass", "k min / max"),
    "rotation_deg": Wording("Geometry › rotation"),
    "flip": Wording("Geometry › flip", switch=True),
    "center_yx": Wording("Geometry › centre", "manual, row / col"),
    "center": Wording("Geometry › centre", "manual, row / col"),
    "reference": Wording("Geometry › Reference scan…"),
    "virtual_detector": Wording("Virtual detectors › r in / out"),
    "scan_shape": Wording("Scan › rows × cols"),
    "step_A": Wording("Calibration › step"),
    "pixel_size_mrad": Wording("Calibration › pixel size"),
    "energy_keV": Wording("Calibration › energy"),
}
"""The field that sets each library parameter ("group › label" in the settings column)."""


def _field_value(value) -> str:
    if isinstance(value, (tuple, list)):
        return " / ".join(_field_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


GUI = Phrasebook(FIELDS, assign=": ", show=_field_value, fallback=PYTHON)
"""Names parameters as fields: ``Param("center_yx", "auto")`` → ``Geometry › centre: auto``."""
