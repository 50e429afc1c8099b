"""Draw docs/_static/architecture.svg: the data flow and the import layers of ricom.

Run by the Sphinx build (docs/conf.py) and by hand (``python docs/architecture_diagram.py``).
The layers are read from the import-linter contract in ``pyproject.toml``, so the
picture shows the layering that CI enforces; ``tests/test_docs.py`` checks that the
committed SVG is up to date.
"""
from __future__ import annotations

import html
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "_static", "architecture.svg")

FLOW = [
    ("sources", "files · live streams · simulators\nsources/merlin, sources/timepix, …"),
    ("chunk stream", "FrameChunk / EventChunk\nwith flat scan positions"),
    ("per-pattern reduction", "once per chunk, on the pipeline's\nworkers: Σ I, Σ I·x, Σ I·y, rings"),
    ("reducers", "Moments (merge) · PatternSum\nlater: tcBF, SSB, recorder"),
    ("riCOM image", "engine/ricom_update.py:\nscatter · block FFT · rebuild"),
    ("snapshot", "plain NumPy images\n+ derived signals"),
    ("frontends", "CLI · GUI · Jupyter · Dask\nshow and save; no physics"),
]
"""The data flow, left to right: (title, what it is)."""

LAYER_NOTES = {
    "ricom.cli": "command line",
    "ricom.gui | ricom.jupyter | ricom.integrations": "GUI, notebooks · LiberTEM UDFs",
    "ricom.tools": "bench, report",
    "ricom.dask | ricom.live": "Dask backend · live sessions",
    "ricom.api": "reconstruct(), settings from keywords",
    "ricom.simulators.timepix": "Timepix3 stream simulators",
    "ricom.simulators.merlin | ricom.simulators.events | ricom.simulators.dectris":
        "detector simulators, event writers",
    "ricom.io": "results on disk, contrast",
    "ricom.calibration | ricom.phase": "centre, descan, rotation · tcBF, SSB",
    "ricom.engine": "reducers, image, pipeline, compiled",
    "ricom.signals | ricom.sources": "derived images · inputs",
    "ricom.simulators.specimen": "built-in specimen",
    "ricom.core": "params, units, errors, geometry",
}
"""A few words per layer of the contract (keys must match the contract's layers)."""


def contract_layers() -> list[str]:
    """The layers of the import-linter contract in pyproject.toml, top first."""
    import tomllib

    with open(os.path.join(HERE, "..", "pyproject.toml"), "rb") as fh:
        config = tomllib.load(fh)
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return list(contract["layers"])


def _box(x, y, w, h, title, body, fill) -> str:
    lines = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="#445"/>',
             f'<text x="{x + w / 2}" y="{y + 17}" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>']
    for i, line in enumerate(body.split("\n")):
        lines.append(f'<text x="{x + w / 2}" y="{y + 34 + 14 * i}" text-anchor="middle" '
                     f'font-size="11">{html.escape(line)}</text>')
    return "\n".join(lines)


def svg(layers: list[str]) -> str:
    """The diagram as SVG text."""
    w, h, gap = 215, 66, 26
    width = len(FLOW) * (w + gap) + 20
    parts = ['<text x="10" y="22" font-size="15" font-weight="bold">Data flow (one way)</text>']
    for i, (title, body) in enumerate(FLOW):
        x = 10 + i * (w + gap)
        parts.append(_box(x, 34, w, h, title, body, "#e8f0fb" if title != "riCOM image" else "#fbeee0"))
        if i:
            parts.append(f'<line x1="{x - gap + 2}" y1="{34 + h / 2}" x2="{x - 4}" y2="{34 + h / 2}" '
                         f'stroke="#445" stroke-width="2" marker-end="url(#arrow)"/>')
    top = 34 + h + 50
    parts.append(f'<text x="10" y="{top - 10}" font-size="15" font-weight="bold">Import layers '
                 f'(a layer imports only from those below it; import-linter checks this in CI)</text>')
    lh, lw = 30, 620
    for i, layer in enumerate(layers):
        y = top + i * (lh + 6)
        parts.append(f'<rect x="10" y="{y}" width="{lw}" height="{lh}" rx="4" fill="#eef6ee" stroke="#445"/>')
        parts.append(f'<text x="20" y="{y + 20}" font-family="monospace" font-size="12">{html.escape(layer)}</text>')
        parts.append(f'<text x="{lw + 20}" y="{y + 20}" font-size="12">{html.escape(LAYER_NOTES.get(layer, ""))}</text>')
    height = top + len(layers) * (lh + 6) + 10
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#445"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        *parts, "</svg>", ""])


def write(path: str = OUT) -> str:
    """Write the SVG (only when its text changes); returns the path."""
    text = svg(contract_layers())
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if text != old:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else OUT))
