"""ricom kernel --size N [--filter KMIN KMAX] [--plot FILE.png] [--json FILE.json] [--save FILE.npy]

Show the riCOM kernel and its frequency response: the radially averaged response on an
N×N map next to the line-integration approximation (N/2πk)·[1 − cos(((n−1)/2)·2πk/N)].
Frequencies are in cycles per scan pixel (0.5 = Nyquist).
"""
from __future__ import annotations

import json

HELP = "riCOM kernel and its frequency response (numbers and plot)"


def add_arguments(p) -> None:
    from ricom.cli.options import use_help_formatter

    use_help_formatter(p)
    p.add_argument("--size", type=int, default=21, metavar="N", help="odd kernel size n (the kernel is n×n)")
    p.add_argument("--filter", nargs=2, type=float, metavar=("KMIN", "KMAX"),
                   help="band-pass in cycles per scan pixel, 0.5 = Nyquist (default: none)")
    p.add_argument("--map-size", type=int, metavar="N",
                   help="size of the response map in scan pixels (default max(256, 4n+1))")
    p.add_argument("--plot", metavar="FILE.png", help="plot the kernel and its response")
    p.add_argument("--json", metavar="FILE.json", help="write k, response, approximation as JSON")
    p.add_argument("--save", metavar="FILE.npy", help="save the kernel (2, n, n): K_x, K_y")


def run(args) -> int:
    import numpy as np

    from ricom.core.params import KernelSettings
    from ricom.engine.kernels import filtered_kernel, frequency_response
    from ricom.io.outputs import atomic_path, check_output_path

    settings = KernelSettings(args.size, tuple(args.filter) if args.filter else None)
    if args.map_size is not None and args.map_size < args.size:
        from ricom.core.errors import SettingsError
        raise SettingsError(f"--map-size {args.map_size} must be at least the kernel size {args.size}")
    if args.plot:
        check_output_path(args.plot)
    spec = frequency_response(settings, args.map_size)
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump(spec, fh, indent=1)
    if args.save:
        with atomic_path(args.save) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.stack(filtered_kernel(settings)))
    if args.plot:
        with atomic_path(args.plot) as tmp:
            plot_spectrum(tmp, settings, spec)
    k = np.asarray(spec["k"])
    resp = np.asarray(spec["response"])
    print(f"kernel {settings.size}×{settings.size}, band-pass "
          f"{settings.band_pass if settings.band_pass else 'none'}: response peaks at "
          f"k = {k[np.argmax(resp)]:.4f} cycles/scan px")
    for path in (args.json, args.plot, args.save):
        if path:
            print(f"wrote {path}")
    return 0


def plot_spectrum(path: str, settings, spec: dict) -> None:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ricom.engine.kernels import filtered_kernel

    kx, _ = filtered_kernel(settings)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.8]})
    lim = float(abs(kx).max()) or 1.0
    a0.imshow(kx, cmap="RdBu_r", vmin=-lim, vmax=lim)
    a0.set_title(f"K_x, {settings.size}×{settings.size}", fontsize=9)
    a0.set_xticks([])
    a0.set_yticks([])
    a1.plot(spec["k"], spec["response"], label="kernel (radial average)")
    a1.plot(spec["k"], spec["approximation"], "--", label="line-integration approximation", alpha=0.8)
    a1.set_xlabel("k [cycles per scan pixel]")
    a1.set_ylabel("response")
    if settings.band_pass:
        for v in settings.band_pass:
            a1.axvline(v, color="grey", lw=0.8, ls=":")
    a1.legend(fontsize=8)
    a1.set_xlim(0, 0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
