"""Entry point of the ``ricom`` command: builds the parser and turns errors into one line
(naming parameters as options, `ricom.cli.options.error_text`).

Each command is a module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
add new ones to `COMMANDS`.  Exit codes: `EXIT_CODES` (the table in docs/conventions.md
is checked against it).  Ctrl-C at any instant gives one line and exit 130 (see
`ricom.cli.interrupts`); this module imports nothing heavy before `main` runs, so that
even Ctrl-C during start-up is handled.
"""
from __future__ import annotations

import sys

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_MISMATCH = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_DONE: "done: the whole input was reconstructed and saved",
    EXIT_FAILED: "an unexpected failure (a bug): Python's traceback is printed",
    EXIT_BAD_INPUT: "bad input or settings: one line on stderr says what to fix; nothing is written",
    EXIT_PARTIAL: "the input broke off (a damaged frame, a truncated file, a dropped stream or connection): "
                  "the partial result is saved and one line says why",
    EXIT_MISMATCH: "`ricom live` only: frames and scan shape do not add up; the result is saved",
    EXIT_INTERRUPTED: "Ctrl-C: during start-up nothing is written; later the result so far is saved "
                      "(a save under way is finished first); one line says which",
}
"""Every exit status of the ``ricom`` command and what it means (docs/conventions.md)."""

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


def build_parser():
    """The ``ricom`` argument parser with every command of `COMMANDS`."""
    import argparse
    import importlib

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
    """Run the command in ``argv`` (default: the process's arguments); returns the exit status.

    Called without ``argv`` (the ``ricom`` command, ``python -m ricom``), Ctrl-C is
    ignored once the command has returned, while the interpreter shuts down.
    """
    if argv is None:
        from ricom.cli.interrupts import take_over
        take_over()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # start-up, or any instant no command handles: nothing was written
        from ricom.cli.interrupts import end_interrupted, say
        say("ricom: interrupted")
        if argv is None:
            end_interrupted(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    finally:
        if argv is None:
            from ricom.cli.interrupts import quiet_shutdown
            quiet_shutdown()


def _main(argv: list[str] | None) -> int:
    import warnings

    from ricom.cli.interrupts import hand_back
    from ricom.cli.options import error_text
    from ricom.core.errors import RicomError

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"ricom: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    own = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    targets = ("data", "merlin", "dectris", "timepix3", "events", "-h", "--help")
    if argv[:1] == ["simulate"] and (len(argv) == 1 or argv[1] not in targets):
        argv.insert(1, "data")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if own:
            hand_back()  # commands see Python's KeyboardInterrupt (or install their own handlers)
        return int(args._run(args) or 0)
    except RicomError as exc:
        print(f"ricom: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"ricom: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `ricom info … | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DONE
