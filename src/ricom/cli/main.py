"""Entry point of the ``ricom`` command: builds the parser and turns errors into one line
(naming parameters as options, `ricom.cli.options.error_text`).

Each command is a module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
add new ones to `COMMANDS`.  Exit codes: 0 done, 2 bad input or settings (one-line
reason on stderr), 3 the input broke off (partial result saved), 130 interrupted
(partial result saved).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "reconstruct": "ricom.cli.reconstruct",
    "demo": "ricom.cli.demo",
    "simulate": "ricom.cli.simulate",
    "kernel": "ricom.cli.kernel",
    "calibrate": "ricom.cli.calibrate",
    "convert": "ricom.cli.convert",
    "info": "ricom.cli.info",
    "bench": "ricom.cli.bench",
    "report": "ricom.cli.report",
    "gui": "ricom.cli.gui",
    "live": "ricom.cli.live",
    "doctor": "ricom.cli.doctor",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ricom", description="Real-time integrated centre-of-mass (riCOM) imaging for 4D-STEM.")
    from ricom import __version__
    parser.add_argument("--version", action="version", version=f"ricom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, path in COMMANDS.items():
        try:
            module = importlib.import_module(path)
        except ImportError as exc:  # an optional extra is not installed
            p = sub.add_parser(name, help=f"(unavailable: {exc})", add_help=False)
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(_run=_unavailable(name, exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _unavailable(name: str, exc: ImportError):
    def run(_args) -> int:
        from ricom.core.errors import RicomError
        hint = " (install the extra: pip install 'ricom[gui]')" if name == "gui" else ""
        raise RicomError(f"'ricom {name}' is unavailable: {exc}{hint}")
    return run


def main(argv: list[str] | None = None) -> int:
    import warnings

    from ricom.cli.options import error_text
    from ricom.core.errors import RicomError

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"ricom: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    targets = ("data", "merlin", "dectris", "timepix3", "events", "-h", "--help")
    if argv[:1] == ["simulate"] and (len(argv) == 1 or argv[1] not in targets):
        argv.insert(1, "data")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except RicomError as exc:
        print(f"ricom: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"ricom: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ricom: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ricom info … | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
