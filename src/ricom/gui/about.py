"""Help › About: what ricom is and the versions it runs with.

Owns `about_versions` (ricom, Python, numba and its CPU target, NumPy from
`ricom.tools.environment.report`, the one ``ricom doctor`` prints; Qt, PySide6, pyqtgraph
and the Qt platform from the running GUI) and `about_box`, the dialog that shows them as
selectable text, ready to paste into a bug report.
"""
from __future__ import annotations

import html

import pyqtgraph as pg
import PySide6
from PySide6 import QtCore, QtGui, QtWidgets

from ricom.tools.environment import report

ABOUT = ("ricom: real-time integrated centre-of-mass (riCOM) imaging for 4D-STEM. "
         "For a full report of this machine (extras, detector libraries) run <code>ricom doctor</code>.")


def about_versions() -> dict[str, str]:
    """Versions of ricom and of what it runs on, by name, in display order."""
    rep = report()
    code = rep["compiled code"]
    return {
        "ricom": str(rep["ricom"]["version"]),
        "Python": str(rep["ricom"]["python"]),
        "numba": f"{code['numba']} (CPU target {code['cpu target']})",
        "NumPy": str(code["numpy"]),
        "Qt": QtCore.qVersion(),
        "PySide6": PySide6.__version__,
        "pyqtgraph": pg.__version__,
        "Qt platform": QtGui.QGuiApplication.platformName() or "none",
    }


def about_text(versions: dict[str, str]) -> str:
    """The plain-text version list (one ``name: version`` per line)."""
    return "\n".join(f"{name}: {value}" for name, value in versions.items())


def about_box(parent: QtWidgets.QWidget | None = None) -> QtWidgets.QMessageBox:
    """A non-modal About box (not yet shown) listing `about_versions`."""
    versions = about_versions()
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
                   for k, v in versions.items())
    box = QtWidgets.QMessageBox(parent)
    box.setWindowTitle("About ricom")
    box.setIcon(QtWidgets.QMessageBox.Information)
    box.setTextFormat(QtCore.Qt.RichText)
    box.setText(f"<p>{ABOUT}</p><table>{rows}</table>")
    box.setDetailedText(about_text(versions))  # plain text to copy into a bug report
    box.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
    box.setStandardButtons(QtWidgets.QMessageBox.Close)
    box.setModal(False)
    box.versions = versions
    return box
