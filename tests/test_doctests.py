"""The examples in every module's docstrings run and give what they show (doctest)."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import ricom

OPTIONAL = {"ricom.gui": "PySide6", "ricom.integrations.libertem": "libertem"}
"""Sub-packages whose examples need an optional extra."""


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ricom.__path__, "ricom."):
        if info.name.endswith("__main__"):
            continue
        extra = next((dep for pkg, dep in OPTIONAL.items() if info.name.startswith(pkg)), None)
        if extra is None or importlib.util.find_spec(extra) is not None:
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    for test in finder.find(module, name):
        if test.examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (output above)"
