"""Tests that need something installable (an NLU package, Debian's chromium, a data set):
they skip where it is missing, and FAIL instead under ALPHAVIL_REQUIRE_ALL=1, which .ci/run
sets after installing all of it. A skip there would hide a broken install behind a green run.

Skips that are right on any CPU machine (no CUDA device, a limit of Hydra's grammar) are no
missing install: they call pytest.skip directly, not these."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REQUIRE_ALL = "ALPHAVIL_REQUIRE_ALL"


def _require_all() -> bool:
    return os.environ.get(REQUIRE_ALL) == "1"


def _missing(what: str, install: str) -> None:
    __tracebackhide__ = True  # -rs names the line that needs it, not this one
    msg = f"needs {what} ({install})"
    if _require_all():
        pytest.fail(f"{msg}: missing under {REQUIRE_ALL}=1, where everything must be installed",
                    pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def needs(available: bool, what: str, install: str) -> None:
    """In a test or at module level: go on only if `available`."""
    __tracebackhide__ = True
    if not available:
        _missing(what, install)


def needs_module(name: str, install: str = "make install-nlu") -> ModuleType:
    """pytest.importorskip, failing under ALPHAVIL_REQUIRE_ALL=1 (at module level: an error
    collecting the file)."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name!r}", install)
        raise  # not reached: _missing raises


def requires(available: bool, what: str, install: str) -> pytest.MarkDecorator:
    """needs() as a decorator, acted on before the test's fixtures are set up."""
    return pytest.mark.needs(available, what, install)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(available, what, install): skip unless available; "
                            f"fail under {REQUIRE_ALL}=1 (tests/needs.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _require_all():
        return
    for item in items:  # a plain skip mark: -rs then names the test, as skipif does
        for mark in item.iter_markers("needs"):
            available, what, install = mark.args
            if not available:
                item.add_marker(pytest.mark.skip(reason=f"needs {what} ({install})"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _require_all():
        for mark in item.iter_markers("needs"):
            needs(*mark.args)
