"""What `ricom report` measures on an image: correlation with the ground truth, relative
noise, radially averaged power spectra, spectrum peaks and the levels of a vacuum pore;
and `images_for`, one pass over a source giving riCOM with several kernels and the
snapshot's other signals (further reducers attached with ``before_run``).

Every image is made by the library (`ricom.api.reconstruct_run`, `ricom.phase`); this
module only measures them.

Examples
--------
>>> import numpy as np
>>> from ricom.tools.report_measures import pore_metrics
>>> yy, xx = np.indices((21, 21))
>>> flat = np.where(np.hypot(yy - 10, xx - 10) < 6, 0.0, 1.0)   # a dark pore, no phantom
>>> round(pore_metrics(flat, (10, 10), 6.0)["phantom"], 3)
0.0
"""
from __future__ import annotations

import math

import numpy as np

from ricom.api import reconstruct_run
from ricom.core.params import KernelSettings

Kernel = tuple[int, "tuple[float, float] | None"]


def method_name(size: int, band_pass=None) -> str:
    """Key of a riCOM image: ``ricom_21``, ``ricom_61_bp``.

    >>> method_name(61, (0.05, 0.25))
    'ricom_61_bp'
    """
    return f"ricom_{size}" + ("_bp" if band_pass else "")


def peak_frequency(spectrum: dict) -> float:
    """Frequency (cycles per scan pixel) where a `frequency_response` result peaks."""
    return float(spectrum["k"][int(np.argmax(spectrum["response"]))])


def band_pass_suppression(plain: dict, filtered: dict, band: tuple[float, float]) -> dict:
    """Mean response of the filtered kernel over that of the plain one, per band.

    ``low`` averages over 0 < k < 0.8·k_min, ``pass`` over k_min·1.2 < k < k_max·0.8,
    ``high`` over k > 1.2·k_max (the filter edge is softened by cropping the kernel).
    """
    k = np.asarray(plain["k"])
    a, b = np.asarray(plain["response"]), np.asarray(filtered["response"])
    lo, hi = band
    bands = {"low": (k > 0) & (k < 0.8 * lo), "pass": (k > 1.2 * lo) & (k < 0.8 * hi), "high": k > 1.2 * hi}
    return {name: float(b[m].mean() / a[m].mean()) if m.any() else float("nan") for name, m in bands.items()}


def radial_power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a Hann-windowed, mean-free image.

    Returns the bin frequencies (cycles per scan pixel, bins 1/N wide for the shorter
    side N, up to 0.5) and the power per bin, normalised to sum 1 over k > 0.

    >>> k, p = radial_power_spectrum(np.cos(2 * np.pi * 0.25 * np.arange(32))[None, :] * np.ones((32, 1)))
    >>> float(k[np.argmax(p)])
    0.25
    """
    img = np.asarray(image, np.float64)
    img = img - img.mean()
    window = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fft2(img * window)) ** 2
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    n = min(img.shape)
    bins = np.rint(np.hypot(kx, ky) * n).astype(int)
    nb = n // 2 + 1
    sel = bins < nb
    sums = np.bincount(bins[sel], power[sel], minlength=nb)[1:]
    counts = np.bincount(bins[sel], minlength=nb)[1:]
    spec = sums / np.maximum(counts, 1)
    total = spec.sum()
    return np.arange(1, nb) / n, spec / total if total > 0 else spec


def correlation(image: np.ndarray, truth: np.ndarray, margin: int = 0) -> float:
    """Pearson correlation of two images, optionally without a border of ``margin`` pixels."""
    if margin:
        image, truth = image[margin:-margin, margin:-margin], truth[margin:-margin, margin:-margin]
    a, b = np.ravel(image), np.ravel(truth)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def relative_noise(image: np.ndarray, reference: np.ndarray) -> float:
    """rms of ``image − s·reference`` over the rms of ``s·reference`` (both mean-free).

    ``s`` is the least-squares scale, so counts compare with fractions of the beam.

    >>> ref = np.arange(16.0).reshape(4, 4)
    >>> relative_noise(3 * ref + 7, ref)
    0.0
    """
    a = np.asarray(image, np.float64) - np.mean(image)
    b = np.asarray(reference, np.float64) - np.mean(reference)
    bb = float((b * b).sum())
    if bb == 0:
        return float("nan")
    s = float((a * b).sum()) / bb
    return float(np.linalg.norm(a - s * b) / (abs(s) * math.sqrt(bb))) if s else float("inf")


def pore_metrics(image: np.ndarray, centre_yx, radius_px: float, margin_px: float = 2.0) -> dict:
    """Levels of an image inside and around a circular pore.

    ``centre`` is the mean over r < 0.4 R, ``rim`` over 0.7 R ≤ r < R (inside the pore,
    next to its edge), ``outside`` over r ≥ R + ``margin_px``.  ``phantom`` =
    (centre − rim) / (outside − rim): 0 when the pore is flat (or darkest at its
    centre, < 0), 1 when its centre is as bright as the specimen around it.
    """
    yy, xx = np.indices(image.shape)
    r = np.hypot(yy - centre_yx[0], xx - centre_yx[1])
    centre = float(image[r < 0.4 * radius_px].mean())
    rim = float(image[(r >= 0.7 * radius_px) & (r < radius_px)].mean())
    outside = float(image[r >= radius_px + margin_px].mean())
    span = outside - rim
    return {"centre": centre, "rim": rim, "outside": outside,
            "phantom": (centre - rim) / span if span != 0 else float("nan")}


def images_for(source, kernels, first_kernel: Kernel | None = None, **setting_args) -> tuple[dict, object]:
    """riCOM for every kernel, iCOM, vADF and vBF of one source (one pass over the data).

    The first kernel is reconstructed live; the others by `Reconstruction.update_settings`,
    which rebuilds the image from the stored per-position moments.
    """
    size, bp = first_kernel or kernels[0]
    _, rec, _ = reconstruct_run(source, kernel_size=size, band_pass=bp, **setting_args)
    images = {}
    for size, bp in kernels:
        rec.update_settings(rec.settings.with_(kernel=KernelSettings(size, tuple(bp) if bp else None)))
        images[method_name(size, bp)] = rec.snapshot().ricom
    snap = rec.snapshot()
    for name in ("icom", "vadf", "vbf"):
        images[name] = snap.signal(name)
    return images, snap


def image_row(label: str, images: dict, truth: np.ndarray | None, dose=None) -> dict:
    """One row of the image figure: images, their spectra and (with a truth) correlations."""
    spectra = {m: radial_power_spectrum(img) for m, img in images.items()}
    k = next(iter(spectra.values()))[0]
    margin = max(1, min(truth.shape) // 8) if truth is not None else 0
    corr = None if truth is None else {
        m: {"r": correlation(img, truth), "r_interior": correlation(img, truth, margin)} for m, img in images.items()}
    return {"label": label, "dose": dose, "images": images, "correlation": corr, "interior_margin_px": margin,
            "power_spectra": {"k": k.tolist(), **{m: s[1].tolist() for m, s in spectra.items()}}}
