"""User-facing errors.

`RicomError` carries a one-line message that says what was wrong and what to do; the
command line prints it as ``ricom: error: <message>`` and exits with status 2.
"""


class RicomError(Exception):
    """A problem with the user's input or settings (one line, actionable)."""


class InputError(RicomError):
    """The input data or file is unusable as given."""


class SettingsError(RicomError, ValueError):
    """A parameter is out of range or inconsistent with the data."""
