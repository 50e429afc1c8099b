"""Figures, captions, the ``report.md`` index and ``report.json`` of a `ricom.tools.report.Report`.

Drawn with matplotlib's object API (`matplotlib.figure.Figure`, Agg), so writing a
report neither needs nor changes a pyplot backend — it works in scripts, threads and
notebooks alike.  Every file appears under its name only when complete
(`ricom.io.outputs.atomic_path`).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ricom.io.contrast import percentile_levels
from ricom.io.outputs import atomic_path

LABELS = {"icom": "iCOM", "vadf": "vADF", "vbf": "vBF", "truth": "ground truth", "ssb": "SSB", "tcbf": "tcBF"}


def label(method: str) -> str:
    """Display name of an image key: ``ricom_61_bp`` → ``riCOM 61 + band-pass``."""
    if method.startswith("ricom_"):
        parts = method.split("_")
        return f"riCOM {parts[1]}" + (" + band-pass" if len(parts) > 2 else "")
    return LABELS.get(method, method)


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def _figure(w: float, h: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _show(ax, img, title: str = "") -> None:
    lo, hi = percentile_levels(img)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def spectra_figure(spectra: dict, path: str) -> str:
    """Kernel frequency responses (normalised) and the band-pass comparison."""
    fig, ax = _figure(10, 3.6, 1, 2)
    a, b = ax[0]
    for c in spectra["curves"]:
        r, ap = np.asarray(c["response"]), np.asarray(c["approximation"])
        line, = a.plot(c["k"], r / r.max(), label=f"{c['kernel_size']}×{c['kernel_size']}")
        a.plot(c["k"], ap / r.max(), "--", color=line.get_color(), lw=0.8)
        a.axvline(c["peak_k"], color=line.get_color(), lw=0.6, ls=":")
    a.set(xlim=(0, 0.5), xlabel="k [cycles per scan pixel]", ylabel="response / its maximum",
          title="kernel size (dashed: line-integration approximation)")
    a.legend(fontsize=8)
    bp = spectra["band_pass"]
    for key, name in (("plain", "no filter"), ("filtered", f"band-pass {bp['band'][0]:g}–{bp['band'][1]:g}")):
        b.semilogy(bp[key]["k"][1:], np.maximum(bp[key]["response"][1:], 1e-4), label=name)
    b.axvspan(*bp["band"], color="0.9")
    b.set(xlim=(0, 0.5), xlabel="k [cycles per scan pixel]", ylabel="response",
          title=f"{bp['kernel_size']}×{bp['kernel_size']} kernel with and without band-pass")
    b.legend(fontsize=8)
    _save(fig, path)
    peaks = ", ".join(f"n = {n}: {k:.3f}" for n, k in spectra["peak_k"].items())
    r = bp["ratio_to_plain"]
    return (f"Radially averaged frequency response of the riCOM kernel. The peak moves to higher frequency "
            f"as the kernel shrinks (peak in cycles/scan px: {peaks}); the line-integration approximation "
            f"(dashed) follows the computed response. Folding the band-pass {bp['band'][0]:g}–{bp['band'][1]:g} "
            f"into the {bp['kernel_size']}×{bp['kernel_size']} kernel keeps {r['pass']:.2f}× the pass band and "
            f"leaves {r['low']:.3f}× (low) and {r['high']:.3f}× (high) of the unfiltered response at both ends.")


def images_figure(series: dict, path: str) -> str:
    """Grid of images: one row per dose (or the input), one column per method."""
    rows = series["rows"]
    methods = list(rows[0]["images"])
    fig, ax = _figure(1.55 * len(methods) + 0.4, 1.6 * len(rows) + 0.3, len(rows), len(methods))
    for i, row in enumerate(rows):
        for j, m in enumerate(methods):
            _show(ax[i, j], row["images"][m], label(m) if i == 0 else "")
        ax[i, 0].set_ylabel(row["label"], fontsize=8)
    _save(fig, path)
    return ("riCOM with several kernels (with and without band-pass), iCOM and the virtual ADF and BF images, "
            "one row per dose" if len(rows) > 1 else "riCOM with several kernels, iCOM, vADF and vBF of the input") + \
        f"; {series['scan_shape'][0]}×{series['scan_shape'][1]} scan, 0.5–99.5 % contrast per image."


def power_figure(series: dict, path: str) -> str:
    """Radially averaged power spectra of every image, one panel per dose."""
    rows = series["rows"]
    fig, ax = _figure(3.2 * len(rows), 3.0, 1, len(rows))
    for j, row in enumerate(rows):
        ps = row["power_spectra"]
        for m in row["images"]:
            ax[0, j].semilogy(ps["k"], np.maximum(ps[m], 1e-12), label=label(m), lw=1)
        ax[0, j].set(title=row["label"], xlabel="k [cycles per scan pixel]", xlim=(0, 0.5), ylim=(1e-8, 1))
    ax[0, 0].set_ylabel("power (sum 1)")
    ax[0, -1].legend(fontsize=6)
    _save(fig, path)
    return ("Radially averaged power spectra (Hann window, normalised to sum 1) of the images above. Small kernels "
            "move power to high frequencies; at low dose the noise floor rises at high k.")


def correlation_figure(series: dict, path: str) -> str:
    """Correlation with the projected potential and relative noise against dose, per method."""
    rows = [r for r in series["rows"] if r["correlation"]]
    noisy = [r for r in rows if r.get("relative_noise") and r["dose"] is not None]
    fig, ax = _figure(11, 3.4, 1, 2 if noisy else 1)
    a = ax[0, 0]
    x = np.arange(len(rows))
    for m in rows[0]["correlation"]:
        a.plot(x, [abs(r["correlation"][m]["r_interior"]) for r in rows], "o-", label=label(m), ms=3)
    a.set_xticks(x, [r["label"] for r in rows], fontsize=7)
    a.set(ylabel="|Pearson r| with projected potential", title="correlation (interior of the scan)")
    a.legend(fontsize=7)
    text = ("Left: Pearson correlation of each image with the simulator's projected potential, without a border "
            f"of {rows[0]['interior_margin_px']} px (vBF is anti-correlated: its magnitude is shown).")
    if noisy:
        b = ax[0, 1]
        for m in noisy[0]["relative_noise"]:
            b.loglog([r["dose"] for r in noisy], [r["relative_noise"][m] for r in noisy], "o-", label=label(m), ms=3)
        b.set(xlabel="dose [e/probe]", ylabel="rms(image − noiseless) / rms(noiseless)", title="relative noise")
        text += (" Right: the rms difference from the noiseless image of the same method (after a least-squares "
                 "scale), relative to that image; it falls as dose^−1/2 for every method.")
    _save(fig, path)
    return text


def pore_figure(pore: dict, path: str) -> str:
    """Images of the pore and line profiles through it, normalised by the rim and specimen levels."""
    small, large = f"ricom_{min(pore['kernels'])}", f"ricom_{max(pore['kernels'])}"
    others = [m for m in pore["images"] if not m.startswith("ricom_") and m != "truth"]
    shown = ["truth", small, large, *others]
    fig = _figure(max(11, 1.9 * len(shown)), 6.4)[0]
    fig.clear()
    grid = fig.add_gridspec(2, len(shown), height_ratios=[1, 1.4])
    sy, sx = pore["scan_shape"]
    r_px = pore["radius_A"] / pore["step_A"]
    t = np.linspace(0, 2 * np.pi, 100)
    for j, m in enumerate(shown):
        a = fig.add_subplot(grid[0, j])
        _show(a, pore["images"][m], label(m))
        a.plot((sx - 1) / 2 + r_px * np.cos(t), (sy - 1) / 2 + r_px * np.sin(t), "c-", lw=0.6)
        a.axhline((sy - 1) / 2, color="y", lw=0.6)
    b = fig.add_subplot(grid[1, :])
    for m in shown:
        met = pore["metrics"][m]
        span = (met["outside"] - met["rim"]) or 1.0
        b.plot(pore["x_A"], (np.asarray(pore["profiles"][m]) - met["rim"]) / span,
               label=f"{label(m)} (phantom {met['phantom']:.2f})", lw=1.6 if m in (small, large) else 0.9,
               ls="-" if m.startswith("ricom_") or m == "truth" else "--")
    for s in (-1, 1):
        b.axvline(s * pore["radius_A"], color="0.5", ls=":", lw=0.8)
    b.axhline(0, color="0.7", lw=0.5)
    b.axhline(1, color="0.7", lw=0.5)
    b.set(xlabel="x from the pore centre [Å]", ylabel="(profile − rim) / (specimen − rim)",
          title="line profile through the pore centre")
    b.legend(fontsize=7, loc="upper right", ncol=2)
    _save(fig, path)
    ms, ml = pore["metrics"][small], pore["metrics"][large]
    hs, hl = pore["kernel_half_width_A"][small], pore["kernel_half_width_A"][large]
    rest = ", ".join(f"{label(m)} {pore['metrics'][m]['phantom']:.2f}" for m in others)
    return (f"A vacuum pore of radius {pore['radius_A']:g} Å. With the small {small[6:]}×{small[6:]} kernel the pore "
            f"centre rises back to the specimen's mean level (phantom {ms['phantom']:.2f}: 0 = as dark as the rim, 1 = "
            f"as bright as the specimen); with the large {large[6:]}×{large[6:]} kernel it stays dark "
            f"(phantom {ml['phantom']:.2f}). The ground truth is 0 in the pore. A kernel shows the pore's level "
            f"only when it reaches across it: half-widths {hs:g} Å and {hl:g} Å against the radius "
            f"{pore['radius_A']:g} Å. The other methods of the same scan (dashed; phantom {rest}): SSB is given "
            f"defocus 0, tcBF fits its shifts on the whole scan (in focus it is close to a bright-field image).")


def write_report(rep, out_dir: str) -> None:
    """Write the figures and ``report.md`` of ``rep`` into ``out_dir``; fills ``rep.figures``."""
    os.makedirs(out_dir, exist_ok=True)
    jobs = [("kernel_spectra.png", "Kernel spectra", spectra_figure, rep.spectra),
            ("images.png", "riCOM, iCOM and virtual detectors", images_figure, rep.series),
            ("power_spectra.png", "Power spectra", power_figure, rep.series)]
    if any(r["correlation"] for r in rep.series["rows"]):
        jobs.append(("correlation.png", "Correlation with the ground truth and noise", correlation_figure, rep.series))
    if getattr(rep, "methods", None) is not None:
        from ricom.tools.report_methods_figures import methods_dose_figure, methods_figure
        for scan in rep.methods["scans"]:
            jobs.append((f"methods_{scan['defocus_A']:g}A.png", f"ADF, SSB, tcBF and riCOM at {scan['defocus_A']:g} Å "
                         "defocus, full to 1/100 dose", methods_figure, scan))
        jobs.append(("methods_dose.png", "The methods against dose", methods_dose_figure, rep.methods))
    if rep.pore is not None:
        jobs.append(("pore_profile.png", "Phantom intensity in a vacuum pore", pore_figure, rep.pore))
    rep.figures = []
    for name, title, draw, data in jobs:
        caption = draw(data, os.path.join(out_dir, name))
        rep.figures.append({"file": name, "title": title, "caption": caption})
    with atomic_path(os.path.join(out_dir, "report.md")) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(markdown(rep))


def _method_table(title: str, first: str, rows: list, key: str, value) -> list[str]:
    """Markdown lines of a table: one row per series row, one column per method (the keys
    of ``rows[0][key]``), cells ``value(row, method)``; nothing for no rows."""
    if not rows:
        return []
    methods = list(rows[0][key])
    return ["", f"## {title}", "", f"| {first} | " + " | ".join(label(m) for m in methods) + " |",
            "|---" * (len(methods) + 1) + "|"] + \
        [f"| {r['label']} | " + " | ".join(f"{value(r, m):.3f}" for m in methods) + " |" for r in rows]


def markdown(rep) -> str:
    """The ``report.md`` index: figures with captions, findings and tables."""
    out = [f"# riCOM report: {rep.input}", "",
           "Numbers behind every figure are in `report.json`. Frequencies in cycles per scan pixel (0.5 = Nyquist).",
           "", "## Findings", ""]
    out += [f"- {k.replace('_', ' ')}: **{'yes' if v else 'no'}**" for k, v in rep.findings.items()]
    for f in rep.figures:
        out += ["", f"## {f['title']}", "", f"![{f['title']}]({f['file']})", "", f["caption"]]
    out += ["", "## Spectrum peaks", "", "| kernel | peak k |", "|---|---|"]
    out += [f"| {n}×{n} | {k:.4f} |" for n, k in rep.spectra["peak_k"].items()]
    table = [r for r in rep.series["rows"] if r["correlation"]]
    out += _method_table("Correlation with the projected potential (interior)", "data", table, "correlation",
                         lambda r, m: r["correlation"][m]["r_interior"])
    noisy = [r for r in table if r.get("relative_noise") and r["dose"] is not None]
    out += _method_table("Relative noise (rms difference from the noiseless image)", "dose", noisy, "relative_noise",
                         lambda r, m: r["relative_noise"][m])
    if getattr(rep, "methods", None) is not None:
        from ricom.tools.report_methods_figures import methods_markdown
        out += methods_markdown(rep.methods)
    if rep.pore is not None:
        out += ["", "## Pore levels", "", "| image | centre | rim | specimen | phantom |", "|---|---|---|---|---|"]
        out += [f"| {label(m)} | {v['centre']:.1f} | {v['rim']:.1f} | {v['outside']:.1f} | {v['phantom']:.2f} |"
                for m, v in rep.pore["metrics"].items()]
    return "\n".join(out) + "\n"


def write_json(rep, out_dir: str) -> None:
    """``report.json``: every number of ``rep`` (NaN written as null)."""
    with atomic_path(os.path.join(out_dir, "report.json")) as tmp, open(tmp, "w") as fh:
        json.dump(_finite(rep.to_json()), fh, indent=1, default=_json_default, allow_nan=False)


def _finite(obj):
    """NaN and ±inf → None, recursively (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
