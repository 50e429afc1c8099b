"""ricom simulate [data|merlin|dectris|events] …

``ricom simulate -o FILE.npy`` (or ``simulate data``) writes a simulated 4D-STEM dataset
of the built-in SrTiO3 specimen, with its calibration in ``FILE.ricom.json`` beside it
(``ricom reconstruct FILE.npy`` picks that up).  ``.h5`` output stores the data as
dataset ``/data`` with the calibration as attributes.  Other targets serve or write
detector data (see ``ricom simulate merlin --help``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

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
    sub = p.add_subparsers(dest="target", metavar="TARGET")
    for name, (module, text) in available_targets().items():
        sp = sub.add_parser(name, help=text, description=module.__doc__ if name != "data" else __doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        (add_data_arguments if name == "data" else module.add_arguments)(sp)
        sp.set_defaults(_run=run_data if name == "data" else module.run)


def add_server_arguments(p, file_help: str, file_metavar: str = "FILE"):
    """``--from FILE | --demo`` and ``--host`` of a detector simulator; returns the "server" group."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the layout of the description
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="from_file", metavar=file_metavar, help=file_help)
    src.add_argument("--demo", action="store_true", help="serve the built-in simulated specimen")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    return s


def add_specimen_arguments(p) -> None:
    """Options of the simulated specimen and microscope (shared with other targets)."""
    g = p.add_argument_group("specimen and microscope")
    g.add_argument("--scan-shape", nargs=2, type=int, default=(64, 64), metavar=("SY", "SX"))
    g.add_argument("--detector-shape", nargs=2, type=int, default=(64, 64), metavar=("DY", "DX"))
    g.add_argument("--step", type=float, default=0.2, metavar="ANGSTROM", help="scan step in Å")
    g.add_argument("--energy-kev", type=float, default=300.0)
    g.add_argument("--convergence-mrad", type=float, default=20.0)
    g.add_argument("--defocus", type=float, default=0.0, metavar="ANGSTROM")
    g.add_argument("--astigmatism", type=float, default=0.0, metavar="ANGSTROM")
    g.add_argument("--astigmatism-angle", type=float, default=0.0, metavar="DEG")
    g.add_argument("--thickness", type=float, default=39.05, metavar="ANGSTROM")
    g.add_argument("--pore-radius", type=float, default=0.0, metavar="ANGSTROM",
                   help="vacuum pore at the scan centre (0 = none)")
    g.add_argument("--dose", type=float, metavar="E_PER_PROBE",
                   help="electrons per probe position (Poisson counts); default noiseless")
    g.add_argument("--rotation", type=float, default=0.0, metavar="DEG",
                   help="rotate the patterns so that --rotation DEG undoes it")
    g.add_argument("--flip", action="store_true", help="mirror the patterns so that --flip undoes it")
    g.add_argument("--seed", type=int, default=0)


def simulation_params(args):
    from ricom.simulators.specimen import SimulationParams
    return SimulationParams(
        scan_shape=tuple(args.scan_shape), detector_shape=tuple(args.detector_shape), step_A=args.step,
        energy_keV=args.energy_kev, convergence_mrad=args.convergence_mrad, defocus_A=args.defocus,
        astigmatism_A=args.astigmatism, astigmatism_angle_deg=args.astigmatism_angle,
        thickness_A=args.thickness, pore_radius_A=args.pore_radius, dose_e_per_probe=args.dose,
        rotation_deg=args.rotation, flip=args.flip, seed=args.seed)


def simulator_data(args):
    """What a detector simulator serves: ``--from FILE``, else the specimen (64×64 scan by default)."""
    if args.from_file:
        return args.from_file
    if args.scan_shape is None:
        args.scan_shape = (64, 64)
    return simulation_params(args)


def add_data_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".npy or .h5")
    add_specimen_arguments(p)


def sidecar_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".ricom.json"


def run_data(args) -> int:
    import numpy as np

    from ricom.core.errors import SettingsError
    from ricom.io.outputs import atomic_path
    from ricom.simulators.specimen import simulate

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in (".npy", ".h5", ".hdf5"):
        raise SettingsError(f"simulate writes .npy or .h5, not {args.output!r}")
    sim = simulate(simulation_params(args), progress=sys.stderr.isatty())
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
                f.create_dataset("data", data=sim.data, chunks=(1, 1, *sim.data.shape[2:]))
                f.create_dataset("potential", data=sim.potential)
                for k, v in _flat(meta).items():
                    f.attrs[k] = v
    with atomic_path(sidecar_path(args.output)) as tmp, open(tmp, "w") as fh:
        json.dump(meta, fh, indent=1, default=str)
    print(f"wrote {args.output} {sim.data.shape} {sim.data.dtype} and {sidecar_path(args.output)}")
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
