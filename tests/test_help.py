"""Help texts: every option of every command says what it does, its default and unit;
each subcommand shows its own description and only the options that apply to it."""
from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from ricom.cli.main import build_parser, main


def walk(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) of the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


PARSERS = dict(walk(build_parser()))
OWN_ACTIONS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def options(parser) -> dict:
    """Option string (the long one) → action, for every option of ``parser``."""
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings and not isinstance(a, OWN_ACTIONS)}


def rendered_help(parser, action) -> str:
    """The help text of ``action`` exactly as ``--help`` prints it (defaults expanded)."""
    return parser._get_formatter()._expand_help(action)


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_every_option_has_help_with_its_default(path):
    parser = PARSERS[path]
    for action in parser._actions:
        if isinstance(action, OWN_ACTIONS):
            continue
        name = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"ricom {' '.join(path)} {name}: no help"
        default = action.default
        if action.option_strings and default not in (None, False, argparse.SUPPRESS):
            text = rendered_help(parser, action)
            assert "default" in text.lower(), f"ricom {' '.join(path)} {name}: the default is not shown ({text!r})"
    parser.format_help()  # renders without a formatting error


@pytest.mark.parametrize("path", [p for p in PARSERS if len(p) > 1], ids=" ".join)
def test_subcommands_show_their_own_description(path):
    own, parent = PARSERS[path].description, PARSERS[path[:-1]].description
    assert own and own != parent
    assert path[-1] in own.splitlines()[0]  # "ricom simulate data …", "ricom live merlin …"


def test_defaults_and_units_are_spelled_out():
    spec = options(PARSERS[("simulate", "data")])
    assert "default: 64 64" in rendered_help(PARSERS[("simulate", "data")], spec["--scan-shape"])
    assert "underfocus" in spec["--defocus"].help  # the sign of the defocus
    assert spec["--energy-kev"].metavar == "KEV" and spec["--convergence-mrad"].metavar == "MRAD"
    recon = options(PARSERS[("reconstruct",)])
    assert "default: px" in rendered_help(PARSERS[("reconstruct",)], recon["--virtual-detector-unit"])
    assert "mrad" in recon["--virtual-detector-unit"].help
    demo = options(PARSERS[("demo",)])
    assert "default: 21" in rendered_help(PARSERS[("demo",)], demo["--kernel-size"])


EVENT_OPTIONS = {"--dwell-ns", "--acceptance-ns", "--sync", "--skip-lines", "--chip-layout"}


@pytest.mark.parametrize("path, absent", [
    (("live", "merlin"), EVENT_OPTIONS),
    (("live", "dectris"), EVENT_OPTIONS),
    (("convert",), EVENT_OPTIONS),  # event data has no patterns to convert
    (("gui",), {"--signals", "--chunk-size", "--descan", "--threads"}),
    (("live", "merlin"), {"--threads", "--cluster"}),
])
def test_options_that_do_not_apply_are_not_listed(path, absent):
    assert not absent & set(options(PARSERS[path]))


def test_gui_rotation_help_does_not_offer_auto():
    rotation = options(PARSERS[("gui",)])["--rotation"]
    assert "auto" not in rotation.help and "auto" not in rotation.metavar


def test_event_options_are_listed_where_events_are_read():
    for path in [("reconstruct",), ("info",), ("calibrate",), ("live", "timepix3"), ("gui",)]:
        assert EVENT_OPTIONS <= set(options(PARSERS[path])), path


class Recording(argparse.Namespace):
    """Records which options a command reads after parsing."""

    def __getattribute__(self, name):
        if not name.startswith("_") and name != "__dict__":
            object.__getattribute__(self, "__dict__").setdefault("_read", set()).add(name)
        return object.__getattribute__(self, name)


def options_read(argv) -> set[str]:
    args = build_parser().parse_args(argv, namespace=Recording())
    args.__dict__["_read"] = set()
    assert args._run(args) == 0
    return args.__dict__["_read"]


@pytest.mark.parametrize("make_argv", [
    lambda d: ["info", str(d / "x.npy")],
    lambda d: ["convert", str(d / "x.npy"), "-o", str(d / "y.npy"), "--no-progress"],
    lambda d: ["kernel", "--size", "5"],
    lambda d: ["simulate", "data", "-o", str(d / "s.npy"), "--scan-shape", "4", "4", "--detector-shape", "16", "16"],
    lambda d: ["demo", "-o", str(d / "demo"), "--scan-shape", "8", "8", "--kernel-size", "3", "--no-progress"],
], ids=["info", "convert", "kernel", "simulate data", "demo"])
def test_every_listed_option_is_read_by_the_command(tmp_path, make_argv, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((2, 3, 8, 8), np.uint16))
    argv = make_argv(tmp_path)
    path = tuple(a for a in argv[:2] if not a.startswith("-") and "/" not in a)
    parser = PARSERS[path]
    listed = {a.dest for a in parser._actions if a.option_strings and not isinstance(a, OWN_ACTIONS)}
    unread = listed - options_read(argv)
    assert not unread, f"ricom {' '.join(path)} lists options it never reads: {sorted(unread)}"


def test_simulate_data_help_is_its_own(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "data", "--help"])
    out = capsys.readouterr().out
    assert "ricom simulate data" in out and "Other targets serve" not in out


OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_option_help_names_only_options_of_its_own_command(path):
    """An option's help that points to another option points to one this command has
    (``simulate data`` once said "with --from: the file's", an option only the detector
    simulators take); quoted command lines of other commands ('ricom reconstruct --flip yes')
    are examples, not references."""
    parser = PARSERS[path]
    names = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        if not action.help or action.help == argparse.SUPPRESS:
            continue
        text = re.sub(r"'ricom [^']*'", "", action.help)
        foreign = set(OPTION.findall(text)) - names
        assert not foreign, f"ricom {' '.join(path)} {action.option_strings}: names {sorted(foreign)}"
