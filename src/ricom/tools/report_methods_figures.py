"""Figures and tables of the methods comparison (`ricom.tools.report_methods`): the paper's
Fig. 6 complete, one PNG per scan, and correlation and noise against dose.

Drawn with matplotlib's object API like `ricom.tools.report_figures` (whose helpers it uses).
"""
from __future__ import annotations

import numpy as np

from ricom.tools.report_figures import _save, _show, label


def _grid(rows: int, cols: int):
    """A figure of rows × cols image panels, laid out by hand (much faster than a
    constrained layout for this many panels)."""
    from matplotlib.figure import Figure
    w, h = 1.55 * cols + 0.5, 1.62 * rows + 0.2
    fig = Figure(figsize=(w, h))
    ax = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.5 / w, right=1 - 0.05 / w, bottom=0.05 / h, top=1 - 0.4 / h, wspace=0.06,
                        hspace=0.22)
    return fig, ax

LABELS = {"vadf": "ADF (virtual)", "ssb": "SSB", "tcbf": "tcBF"}


def method_label(method: str) -> str:
    """``vadf`` → ``ADF (virtual)``, ``ricom_61_bp`` → ``riCOM 61 + band-pass``."""
    return LABELS.get(method, label(method))


def log_spectrum(image: np.ndarray) -> np.ndarray:
    """log10 |FFT|² of the Hann-windowed, mean-free image, zero frequency in the middle."""
    img = np.asarray(image, np.float64)
    img = (img - img.mean()) * np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    return np.log10(power + power.max() * 1e-9 + 1e-300)


def _spectrum_panel(ax, scan: dict, method: str, rows: list) -> None:
    """Fourier transform of the full-dose image, with the radially integrated power of
    every dose drawn over its lower right quarter (log scale, shared by the doses)."""
    spec = log_spectrum(rows[0]["images"][method])
    lo, hi = np.percentile(spec, [5, 99.9])
    ax.imshow(spec, cmap="magma", vmin=lo, vmax=hi, extent=(-0.5, 0.5, -0.5, 0.5), origin="lower")
    curves = [np.log10(np.maximum(np.asarray(r["power_spectra"][method]), 1e-12)) for r in rows]
    bottom, top = min(c.min() for c in curves), max(c.max() for c in curves)
    k = np.asarray(rows[0]["power_spectra"]["k"])
    for row, c, colour in zip(rows, curves, ("w", "c", "y"), strict=False):
        ax.plot(k, -0.5 + 0.48 * (c - bottom) / ((top - bottom) or 1.0), color=colour, lw=0.8,
                label=row["label"])
    ax.set(xlim=(-0.5, 0.5), ylim=(-0.5, 0.5), xticks=[], yticks=[])


def methods_figure(scan: dict, path: str) -> str:
    """One row per dose, one column per method, and a row of Fourier transforms."""
    rows = [r for r in scan["rows"] if r["fraction"] is not None]
    methods = scan["methods"]
    fig, ax = _grid(len(rows) + 1, len(methods))
    for i, row in enumerate(rows):
        for j, m in enumerate(methods):
            r = row["correlation"][m]["r_interior"]
            _show(ax[i, j], row["images"][m], (method_label(m) + "\n" if i == 0 else "") + f"r = {r:.2f}")
        ax[i, 0].set_ylabel(f"{row['label']}\n{row['e_per_probe']:.0f} e/probe", fontsize=8)
    for j, m in enumerate(methods):
        _spectrum_panel(ax[-1, j], scan, m, rows)
    ax[-1, 0].set_ylabel("FFT (full dose)\n+ radial power", fontsize=8)
    ax[-1, -1].legend(fontsize=5, loc="upper right", framealpha=0.5)
    _save(fig, path)
    fit = scan["tcbf_fit"]
    sy, sx = scan["scan_shape"]
    return (f"The built-in SrTiO₃ specimen at {scan['defocus_A']:g} Å defocus ({sy}×{sx} scan, "
            f"{scan['step_A']:g} Å step), written as {scan['n_events']:,} single-electron events "
            f"arriving within a {scan['dwell_ns']:g} ns dwell; each row keeps only the electrons that arrived "
            f"within the acceptance time (the full dwell, 1/10 and 1/100 of it), as the paper lowered the dose. "
            f"r: Pearson correlation with the projected potential (without a border). SSB is given the nominal "
            f"defocus; tcBF's shifts are fitted on the full-dose scan (defocus {fit['defocus_A']:.1f} ± "
            f"{fit['defocus_A_sigma']:.1f} Å, true {fit['true_defocus_A']:g} Å) and used at every dose. "
            f"Bottom: the Fourier transform of each full-dose image, with the radially integrated power of each "
            f"dose drawn over its lower half (log scale): at low dose the noise floor rises at high frequency.")


def methods_dose_figure(methods: dict, path: str) -> str:
    """Correlation and relative noise against dose, one row per scan."""
    scans = methods["scans"]
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 3.2 * len(scans)))
    ax = fig.subplots(len(scans), 2, squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.55 / (3.2 * len(scans)), top=1 - 0.35 / (3.2 * len(scans)),
                        wspace=0.25, hspace=0.45)
    for i, scan in enumerate(scans):
        rows = [r for r in scan["rows"] if r["fraction"] is not None]
        dose = [r["e_per_probe"] for r in rows]
        for m in scan["methods"]:
            ax[i, 0].semilogx(dose, [r["correlation"][m]["r_interior"] for r in rows], "o-", ms=3,
                              label=method_label(m))
            ax[i, 1].loglog(dose, [r["relative_noise"][m] for r in rows], "o-", ms=3, label=method_label(m))
        ax[i, 0].set(xlabel="dose [e/probe]", ylabel="Pearson r with the potential",
                     title=f"correlation, {scan['defocus_A']:g} Å defocus")
        ax[i, 1].set(xlabel="dose [e/probe]", ylabel="rms(image − noiseless) / rms(noiseless)",
                     title=f"relative noise, {scan['defocus_A']:g} Å defocus")
    ax[0, 1].legend(fontsize=7)
    _save(fig, path)
    return ("Left: correlation of each method's image with the projected potential against the dose kept by the "
            "acceptance time. Right: the rms difference from the same method on noiseless patterns of the same "
            "specimen (after a least-squares scale), relative to that image.")


def methods_markdown(methods: dict) -> list[str]:
    """``report.md`` lines: per scan, correlation and relative noise of every method at every dose."""
    out = []
    for scan in methods["scans"]:
        names = scan["methods"]
        fit = scan["tcbf_fit"]
        out += ["", f"## Methods at {scan['defocus_A']:g} Å defocus", "",
                f"tcBF fitted defocus {fit['defocus_A']:.1f} ± {fit['defocus_A_sigma']:.1f} Å "
                f"(true {fit['true_defocus_A']:g} Å). Pearson r with the projected potential (interior) / "
                f"relative noise:", "",
                "| dose | e/probe | " + " | ".join(method_label(m) for m in names) + " |",
                "|---" * (len(names) + 2) + "|"]
        for r in scan["rows"]:
            cells = [f"{r['correlation'][m]['r_interior']:.3f}" +
                     (f" / {r['relative_noise'][m]:.3f}" if r["relative_noise"] else "") for m in names]
            e = "—" if r["e_per_probe"] is None else f"{r['e_per_probe']:.1f}"
            out.append(f"| {r['label']} | {e} | " + " | ".join(cells) + " |")
    return out
