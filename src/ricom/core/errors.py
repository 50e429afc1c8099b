"""User-facing errors, and the parameters they ask the user to change.

`RicomError` carries a one-line `Message`: what was wrong and what to do.  Where the fix
is to change a parameter, the message names it structurally, as a `Param` (the keyword
argument of the Python API, e.g. ``scan_shape``), never as a command-line flag or a GUI
field.  Each frontend phrases parameters with its own `Phrasebook` — a table from
parameter to `Wording`:

- the Python API and Jupyter: `PYTHON` (``str(exc)``), e.g. ``give scan_shape=(SY, SX)``;
- the command line: ``ricom.cli.options.FLAGS``, e.g. ``give --scan-shape SY SX``;
- the GUI: ``ricom.gui.wording.FIELDS``, e.g. ``give Scan › rows × cols``.

A `Message` is a `str` (its Python phrasing), and ``str(exc)`` is the exception's
`Message`, so text kept as ``str(exc)`` or stored in a result (a rotation's ``reason``)
can still be phrased by a frontend: ``render(text, phrasebook)``.  The command line
prints ``ricom: error: <message>`` and exits with status 2.

Examples
--------
>>> exc = SettingsError("the input does not carry its scan shape; give ", Param("scan_shape", form=True))
>>> str(exc)
'the input does not carry its scan shape; give scan_shape=(SY, SX)'
>>> exc.parameter, exc.parameters
('scan_shape', ('scan_shape',))
>>> flags = Phrasebook({"scan_shape": Wording("--scan-shape", "SY SX")}, assign=" ")
>>> exc.render(flags)
'the input does not carry its scan shape; give --scan-shape SY SX'
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["PYTHON", "InputError", "Message", "Param", "Phrase", "Phrasebook", "RicomError", "SettingsError", "Wording",
           "render"]


@dataclass(frozen=True)
class Param:
    """A parameter named inside a message, for each frontend to phrase.

    Parameters
    ----------
    name : str
        The keyword argument of the Python API (``"scan_shape"``, ``"pixel_size_mrad"`` …).
    value : object, optional
        A concrete value to suggest (``"auto"``, ``True``, ``3``); None names the parameter only.
    form : bool
        Name the parameter with its value form (``scan_shape=(SY, SX)``, ``--scan-shape SY SX``).
    """

    name: str
    value: object = None
    form: bool = False

    def __post_init__(self) -> None:
        if self.form and self.value is not None:
            raise ValueError("a Param suggests either a concrete value or its value form, not both")


Phrase = Callable[[Param], str]
"""How a frontend names a `Param` (a `Phrasebook` is one)."""


class Message(str):
    """One line of user-facing text whose `Param` references each frontend phrases.

    A `Message` is the `str` of its `PYTHON` phrasing, so it goes wherever text goes
    (formatting, JSON, comparisons); `render` phrases it for another frontend.  Text
    built from it with `str` operations is plain text again.

    Parameters
    ----------
    *parts : str, Param or Message
        Concatenated in order; a `Message` part contributes its own parts.

    Examples
    --------
    >>> m = Message("raise ", Param("timeout"))
    >>> m, m.parameters
    ('raise timeout', ('timeout',))
    >>> m.render(Phrasebook({"timeout": Wording("--timeout")}, assign=" "))
    'raise --timeout'
    """

    parts: tuple[str | Param, ...]

    def __new__(cls, *parts: str | Param | Message) -> Message:
        flat: list[str | Param] = []
        for part in parts:
            if isinstance(part, Message):
                flat.extend(part.parts)
            elif isinstance(part, (str, Param)):
                flat.append(part)
            else:
                flat.append(str(part))
        self = super().__new__(cls, _render(flat, PYTHON))
        self.parts = tuple(flat)
        return self

    def __getnewargs__(self) -> tuple[str | Param, ...]:
        return self.parts

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the parameters the message asks to change, in order, each once."""
        return tuple(dict.fromkeys(p.name for p in self.parts if isinstance(p, Param)))

    def render(self, phrase: Phrase | None = None) -> str:
        """The text with every `Param` named by ``phrase`` (default: `PYTHON`, the `str` itself)."""
        return _render(self.parts, PYTHON if phrase is None else phrase)


def _render(parts, phrase: Phrase) -> str:
    return "".join(p if isinstance(p, str) else phrase(p) for p in parts)


@dataclass(frozen=True)
class Wording:
    """How one frontend names one parameter.

    Parameters
    ----------
    name : str
        The keyword, flag or field (``"scan_shape"``, ``"--scan-shape"``, ``"Scan › rows × cols"``).
    form : str, optional
        The value form advised with ``Param(form=True)`` (``"(SY, SX)"``, ``"SY SX"``).
    switch : bool
        The name alone means True (a command-line switch such as ``--flip``).
    """

    name: str
    form: str | None = None
    switch: bool = False


def _python_value(value: object) -> str:
    item = getattr(value, "item", None)  # NumPy scalars read as Python numbers
    return repr(item() if callable(item) and not isinstance(value, (str, bytes)) else value)


class Phrasebook:
    """A frontend's table from parameter to `Wording`; call it to phrase a `Param`.

    Parameters
    ----------
    words : mapping of str to Wording
        The frontend's names; a parameter missing here is phrased by ``fallback``.
    assign : str
        Joins a name to its form or value (``"="``, ``" "``, ``": "``).
    show : callable, optional
        Writes a concrete value (default: as Python's `repr`).
    fallback : callable, optional
        Phrases parameters missing from ``words`` (e.g. `PYTHON`); default: their keyword
        argument as the name.
    """

    def __init__(self, words: Mapping[str, Wording], *, assign: str, show: Callable[[object], str] = _python_value,
                 fallback: Phrase | None = None) -> None:
        self.words = dict(words)
        self.assign = assign
        self.show = show
        self.fallback = fallback

    def __call__(self, param: Param) -> str:
        word = self.words.get(param.name)
        if word is None:
            if self.fallback is not None:
                return self.fallback(param)
            word = Wording(param.name)
        if param.value is not None:
            if word.switch and param.value is True:
                return word.name
            return f"{word.name}{self.assign}{self.show(param.value)}"
        if param.form and word.form:
            return f"{word.name}{self.assign}{word.form}"
        return word.name


PYTHON = Phrasebook({
    "scan_shape": Wording("scan_shape", "(SY, SX)"),
    "center_yx": Wording("center_yx", "(CY, CX)"),
    "center": Wording("center", "(CY, CX)"),
    "rotation_deg": Wording("rotation_deg", "DEG"),
    "dwell_ns": Wording("dwell_ns", "NS"),
    "reference": Wording("reference", "FILE"),
    "descan_reference": Wording("descan_reference", "FILE"),
    "client": Wording("a Dask client"),
}, assign="=")
"""The Python API's phrasing (``str(exc)``): keyword arguments, ``scan_shape=(SY, SX)``."""


class RicomError(Exception):
    """A problem with the user's input or settings (one line, actionable).

    Parameters
    ----------
    *parts : str, Param or Message
        The message; `Param` parts name the parameters to change (see `Message`).

    Attributes
    ----------
    message : Message
        The message with its parameter references.
    parameters : tuple of str
        The parameters the message asks to change (may be empty).
    parameter : str or None
        The first of them.
    """

    def __init__(self, *parts: str | Param | Message) -> None:
        super().__init__(*parts)
        self.message = Message(*parts)

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.message.parameters

    @property
    def parameter(self) -> str | None:
        return next(iter(self.parameters), None)

    def render(self, phrase: Phrase | None = None) -> str:
        """The message in a frontend's phrasing (default: `PYTHON`, as ``str(exc)``)."""
        return self.message.render(phrase)

    def __str__(self) -> Message:  # a str: text taken with str(exc) can still be rendered
        return self.message


def render(text: object, phrase: Phrase | None = None) -> str:
    """A `Message`, a `RicomError` or anything else as text in ``phrase``'s wording (default: `PYTHON`).

    Examples
    --------
    >>> flags = Phrasebook({"step_A": Wording("--step")}, assign=" ")
    >>> render(SettingsError("needs the scan step (", Param("step_A"), ")"), flags)
    'needs the scan step (--step)'
    >>> render("no frames", flags)
    'no frames'
    """
    if not isinstance(text, Message):
        text = str(text)  # the str of a RicomError is its Message
    return text.render(phrase) if isinstance(text, Message) else text


class InputError(RicomError):
    """The input data or file is unusable as given."""


class SettingsError(RicomError, ValueError):
    """A parameter is out of range or inconsistent with the data."""
