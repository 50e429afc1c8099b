"""Sphinx configuration of the ricom documentation (``make docs`` → docs/_build/html).

Markdown pages are read by MyST (through myst-nb, which also renders the example
notebook); the API reference comes from the NumPy-style docstrings (autodoc + napoleon).
Build with warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Two pages are written by other parts of the project: ``calibration.md`` and ``gui.md``.
Until they exist, their toctree entries and links are turned into plain text (see
`_optional_pages`), so the build stays warning-free either way.
"""
from __future__ import annotations

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import ricom  # noqa: E402

sys.path.insert(0, HERE)
import architecture_diagram  # noqa: E402

architecture_diagram.write()  # the picture of architecture.md, from the import-layer contract

project = "ricom"
author = "the ricom developers"
copyright = "the ricom developers"
version = release = ricom.__version__

extensions = [
    "myst_nb",  # Markdown (MyST) pages and Jupyter notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
root_doc = "index"

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: executed at build time when they carry no outputs ("auto"); the test suite
# builds with -D nb_execution_mode=off and executes the notebook itself.
nb_execution_mode = "auto"
nb_execution_timeout = 300
nb_execution_in_temp = True
nb_execution_raise_on_error = True
# Static pages cannot show live widgets: use the PNG that LiveView puts beside them.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
default_role = "py:obj"  # `Name` in docstrings links where it can, plain code otherwise

html_theme = "alabaster"
html_title = f"ricom {release}"
html_static_path = ["_static"]
html_css_files = ["ricom.css"]  # code wraps in its box

OPTIONAL_PAGES = ("calibration", "gui")
_MISSING = [p for p in OPTIONAL_PAGES if not os.path.exists(os.path.join(HERE, f"{p}.md"))]


def _optional_pages(app, docname, source) -> None:
    """Plain text instead of toctree entries and links to optional pages not written yet."""
    text = source[0]
    for page in _MISSING:
        text = re.sub(rf"^{page}\s*$\n?", "", text, flags=re.M)
        text = re.sub(rf"\[([^\]]+)\]\((?:\.\./)*{page}\.md(#[^)]*)?\)", r"\1", text)
    source[0] = text


_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_bars(app, what, name, obj, options, lines) -> None:
    """Docstrings write |k| for an absolute value; outside literals, RST would read it as
    a substitution.  Escape such bars (table and line-block lines are left alone)."""
    for i, line in enumerate(lines):
        if "|" not in line or line.lstrip().startswith(("| ", "+-", "+=")):
            continue
        parts = _LITERAL.split(line)
        lines[i] = "".join(p if j % 2 else p.replace("|", r"\|") for j, p in enumerate(parts))


def setup(app):
    app.connect("source-read", _optional_pages)
    app.connect("autodoc-process-docstring", _escape_bars)
