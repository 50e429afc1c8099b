"""ricom simulate [data|merlin|dectris|events] …

``ricom simulate -o FILE.npy`` (or ``simulate data``) writes a simulated 4D-STEM dataset
of the built-in SrTiO3 specimen, with its calibration in ``FILE.npy.ricom.json`` beside it
(``ricom reconstruct FILE.npy`` picks that up).  ``.h5`` output stores the data as
dataset ``/data`` with the calibration as attributes.  Other targets serve or write
detector data (see ``ricom simulate merlin --help``).
"""
from __future__ import annotations

import importlib
import json
import os

DATA_DOC = """ricom simulate data -o FILE.npy|FILE.h5 [options]

Write a simulated 4D-STEM dataset (scan_y, scan_x, det_y, det_x) of the built-in SrTiO3
specimen: float32 fractions of the beam without --dose, Poisson counts with it.  The
calibration (scan step, detector pixel size in mrad, beam energy, pattern centre) goes
into FILE.npy.ricom.json (FILE.h5.ricom.json) beside it, and for .h5 also into the
attributes of /data, so that 'ricom reconstruct FILE.npy' (or FILE.h5:/data) gives riCOM
in V·Å.  The projected potential (the ground truth) is stored as /potential in .h5.  On
a terminal a progress bar shows; piped, a line every 5 s; it ends with one summary line.

Example: ricom simulate data -o scan.npy --scan-shape 32 32 --dose 1000 --defocus 50
"""

HELP = "simulate data: a 4D-STEM dataset, Merlin and DECTRIS detector servers, event files"

TARGETS = {
    "data": ("ricom.cli.simulate", "a 4D-STEM dataset of the built-in specimen (.npy or .h5)"),
    "merlin": ("ricom.cli.simulate_merlin", "a Merlin detector server over TCP"),
    "dectris": ("ricom.cli.simulate_dectris", "a DECTRIS detector: SIMPLON REST API and ZeroMQ stream V1/V2"),
    "timepix3": ("ricom.cli.simulate_timepix3", "a Timepix3 camera server's raw packet stream over TCP"),
    "events": ("ricom.cli.simulate_events", "an event file (.tpx3, .t3p, .h5) of the built-in specimen"),
}


def available_targets() -> dict:
    out = {}
    for name, (module, text) in TARGETS.items():
        try:
            out[name] = (importlib.import_module(module), text)
        except ImportError:
            continue
    return out


def add_arguments(p) -> None:
    from ricom.cli.options import HelpFormatter

    sub = p.add_subparsers(dest="target", metavar="TARGET")
    for name, (module, text) in available_targets().items():
        sp = sub.add_parser(name, help=text, description=module.__doc__ if name != "data" else DATA_DOC,
                            formatter_class=HelpFormatter)
        (add_data_arguments if name == "data" else module.add_arguments)(sp)
        sp.set_defaults(_run=run_data if name == "data" else module.run)


def add_server_arguments(p, file_help: str, file_metavar: str = "FILE"):
    """``--from FILE | --demo`` and ``--host`` of a detector simulator; returns the "server" group."""
    from ricom.cli.options import use_help_formatter

    use_help_formatter(p)  # keep the layout of the description; show the defaults
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="from_file", metavar=file_metavar, help=file_help)
    src.add_argument("--demo", action="store_true", help="serve the built-in simulated specimen")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", metavar="IP",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    return s


def add_specimen_arguments(p, from_file: bool = True) -> None:
    """Options of the simulated specimen and microscope (shared with other targets);
    ``from_file``: the target also takes ``--from FILE`` (whose scan shape then applies)."""
    from ricom.cli.options import add_flip_option

    g = p.add_argument_group("specimen and microscope (the built-in SrTiO3 [001] specimen)")
    with_from = "; with --from: the file's" if from_file else ""
    g.add_argument("--scan-shape", nargs=2, type=int, default=(64, 64), metavar=("SY", "SX"),
                   help=f"rows and columns of probe positions (default: 64 64{with_from})")
    g.add_argument("--detector-shape", nargs=2, type=int, default=(64, 64), metavar=("DY", "DX"),
                   help="rows and columns of detector pixels per pattern")
    g.add_argument("--step", type=float, default=0.2, metavar="ANGSTROM", help="scan step in Å")
    g.add_argument("--energy-kev", type=float, default=300.0, metavar="KEV", help="beam energy in keV")
    g.add_argument("--convergence-mrad", type=float, default=20.0, metavar="MRAD",
                   help="probe convergence semi-angle in mrad")
    g.add_argument("--defocus", type=float, default=0.0, metavar="ANGSTROM",
                   help="defocus in Å; positive = underfocus (Kirkland's Δf, C1 = −Δf)")
    g.add_argument("--astigmatism", type=float, default=0.0, metavar="ANGSTROM",
                   help="two-fold astigmatism |A1| in Å")
    g.add_argument("--astigmatism-angle", type=float, default=0.0, metavar="DEG",
                   help="axis of the astigmatism in degrees, from scan +x towards scan +y")
    g.add_argument("--thickness", type=float, default=39.05, metavar="ANGSTROM",
                   help="specimen thickness in Å (the projected potential scales with it)")
    g.add_argument("--pore-radius", type=float, default=0.0, metavar="ANGSTROM",
                   help="radius in Å of a vacuum pore at the scan centre (0 = none)")
    g.add_argument("--dose", type=float, metavar="E_PER_PROBE",
                   help="electrons per probe position (Poisson counts); default: noiseless")
    g.add_argument("--rotation", type=float, default=0.0, metavar="DEG",
                   help="rotate the patterns so that 'ricom reconstruct --rotation DEG' undoes it")
    add_flip_option(g, "mirror the patterns so that 'ricom reconstruct --flip yes' undoes it; --flip alone = yes")
    g.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the Poisson noise")


def simulation_params(args):
    from ricom.simulators.specimen import SimulationParams
    return SimulationParams(
        scan_shape=tuple(args.scan_shape), detector_shape=tuple(args.detector_shape), step_A=args.step,
        energy_keV=args.energy_kev, convergence_mrad=args.convergence_mrad, defocus_A=args.defocus,
        astigmatism_A=args.astigmatism, astigmatism_angle_deg=args.astigmatism_angle,
        thickness_A=args.thickness, pore_radius_A=args.pore_radius, dose_e_per_probe=args.dose,
        rotation_deg=args.rotation, flip=args.flip == "yes", seed=args.seed)


def simulator_data(args):
    """What a detector simulator serves: ``--from FILE``, else the specimen (64×64 scan by default)."""
    if args.from_file:
        return args.from_file
    if args.scan_shape is None:
        args.scan_shape = (64, 64)
    return simulation_params(args)


def add_data_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help=".npy (with FILE.npy.ricom.json) or .h5 (dataset /data with the calibration as attributes)")
    add_specimen_arguments(p, from_file=False)


def sidecar_path(path: str) -> str:
    from ricom.core.sidecar import sidecar_path as named

    return named(path)


def run_data(args) -> int:
    import numpy as np

    from ricom.core.errors import SettingsError
    from ricom.core.progress import Progress
    from ricom.io.outputs import atomic_path
    from ricom.simulators.specimen import simulate

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in (".npy", ".h5", ".hdf5"):
        raise SettingsError(f"simulate writes .npy or .h5, not {args.output!r}")
    params = simulation_params(args)
    with Progress("simulate", params.scan_shape[0] * params.scan_shape[1]) as progress:
        sim = simulate(params, progress=progress)
    meta = {"calibration": {"step_A": sim.params.step_A, "pixel_size_mrad": sim.pixel_size_mrad,
                            "energy_keV": sim.params.energy_keV, "center_yx": list(sim.center_yx)},
            "simulation": sim.to_dict()}
    with atomic_path(args.output) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, sim.data)
        else:
            import h5py
            with h5py.File(tmp, "w") as f:
                data = f.create_dataset("data", data=sim.data, chunks=(1, 1, *sim.data.shape[2:]))
                data.attrs.update(meta["calibration"])  # where `ricom reconstruct FILE.h5:/data` reads it
                f.create_dataset("potential", data=sim.potential)
                for k, v in _flat(meta).items():
                    f.attrs[k] = v
    with atomic_path(sidecar_path(args.output)) as tmp, open(tmp, "w") as fh:
        json.dump(meta, fh, indent=1, default=str)
    shape = "×".join(map(str, sim.data.shape))
    print(progress.summary(f"wrote {args.output} ({shape} {sim.data.dtype}) and {sidecar_path(args.output)}"))
    return 0


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif v is None:
            out[prefix + k] = "none"
        else:
            out[prefix + k] = v
    return out


def run(args) -> int:  # `ricom simulate` without a target means `simulate data`
    return run_data(args)
