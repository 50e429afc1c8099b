"""ricom report [demo|INPUT] -o DIR [options]

Reproduce the riCOM paper's analyses (Yu et al., Microscopy and Microanalysis 2022) and
write PNG figures, report.json (every number behind them) and report.md (an index with
captions) into DIR:

  kernel_spectra.png   frequency response vs kernel size and band-pass, with the
                       line-integration approximation (paper Fig. 2)
  images.png           riCOM (several kernels, with and without band-pass), iCOM,
                       vADF and vBF at several doses
  power_spectra.png    their radially averaged power spectra
  correlation.png      correlation with the simulator's projected potential, and noise
  methods_0A.png       ADF, SSB, tcBF, riCOM-21, riCOM-61 and riCOM-61 + band-pass at
                       full, 1/10 and 1/100 dose, the dose lowered by the acceptance time
                       of event data, with their Fourier transforms (Fig. 6); in focus
  methods_100A.png     the same at 100 Å defocus, where tcBF works
  methods_dose.png     their correlation with the projected potential and noise vs dose
  pore_profile.png     a line profile through a vacuum pore, small vs large kernel and
                       the other methods (Fig. 7)

With 'demo' (the default) everything is simulated; with a file of your own, the
images and spectra of that file are shown (no dose series or pore; the correlation with
the ground truth only for files written by 'ricom simulate', from their .ricom.json).
"""
from __future__ import annotations

from ricom.cli.options import add_flip_option, add_source_options, parse_center, source_options

HELP = "reproduce the paper's figures (kernel spectra, dose series, vacuum pore) as PNG + JSON"


def add_arguments(p) -> None:
    p.add_argument("input", nargs="?", default="demo", metavar="INPUT",
                   help="'demo' (default: the built-in specimen) or a data file")
    p.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="folder for the figures and JSON")
    p.add_argument("--quick", action="store_true", help="a reduced report (32² scan, two doses)")
    p.add_argument("--doses", metavar="LIST",
                   help="comma list of electrons per probe, 0 = noiseless (default 1e2,1e3,1e4,1e5,0)")
    p.add_argument("--pore-radius", type=float, metavar="ANGSTROM", help="vacuum pore radius in Å (default 3)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="noise seed of the simulator")
    c = p.add_argument_group("calibration of an INPUT (the demo knows its own)")
    c.add_argument("--center", nargs="+", metavar="CY CX|auto",
                   help="pattern centre in detector pixels (row column), or 'auto' "
                        "(default: from the input, else auto)")
    c.add_argument("--rotation", type=float, default=0.0, metavar="DEG",
                   help="scan-detector rotation in degrees, from detector +x towards +y (find it with ricom calibrate)")
    add_flip_option(c, "mirror detector x (columns) before the rotation: yes or no; --flip alone = yes")
    c.add_argument("--step", type=float, metavar="ANGSTROM", help="scan step in Å (default: from the input, if any)")
    c.add_argument("--pixel-size-mrad", type=float, metavar="MRAD",
                   help="detector pixel size in mrad (default: from the input, if any)")
    c.add_argument("--energy-kev", type=float, metavar="KEV",
                   help="beam energy in keV (default: from the input, if any)")
    add_source_options(p)  # with 'demo', --scan-shape sets the dose series' scan (default 48 48)


def parse_doses(text: str) -> tuple:
    """``"1e2,1e3,0"`` → ``(100.0, 1000.0, None)`` (0 = noiseless)."""
    from ricom.core.errors import SettingsError
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SettingsError(f"--doses takes a comma list of numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise SettingsError("--doses needs at least one dose ≥ 0 (0 = noiseless)")
    return tuple(v if v > 0 else None for v in values)


def run(args) -> int:
    import dataclasses
    import os

    from ricom.core.errors import SettingsError
    from ricom.core.progress import Progress, yes_no
    from ricom.tools.report import ReportConfig, make_report

    cfg = ReportConfig.quick() if args.quick else ReportConfig()
    changes = {}
    if args.input == "demo" and args.scan_shape:
        if min(args.scan_shape) < 8:
            raise SettingsError("--scan-shape of the demo's dose series must be at least 8 8")
        changes["scan_shape"] = tuple(args.scan_shape)
    if args.doses:
        changes["doses"] = parse_doses(args.doses)
    if args.pore_radius is not None:
        if not args.pore_radius > 0:
            raise SettingsError("--pore-radius must be positive")
        changes["pore_radius_A"] = args.pore_radius
    cfg = dataclasses.replace(cfg, seed=args.seed, **changes)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise SettingsError(f"output {args.output_dir!r} is a file; give a folder")
    setting_args = {}
    if args.input != "demo":
        setting_args = {"center_yx": parse_center(args.center), "rotation_deg": args.rotation,
                        "flip": args.flip == "yes",
                        "step_A": args.step, "pixel_size_mrad": args.pixel_size_mrad, "energy_keV": args.energy_kev}
    steps = cfg.steps(args.input == "demo")  # spectra, doses, methods, pore, figures
    with Progress("report", steps, "steps") as progress:
        rep = make_report(args.input, args.output_dir, cfg, source_options=source_options(args), progress=progress,
                          **setting_args)
        progress.update(1, "done")
    print(f"report on {rep.input}:")
    for key, value in rep.findings.items():
        print(f"  {key.replace('_', ' ')}: {yes_no(value)}")
    print(progress.summary(f"wrote {len(rep.figures)} figures, report.json and report.md to {args.output_dir}",
                           rate=False))
    return 0
