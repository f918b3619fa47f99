"""tests/needs.py: a missing install skips a test, and fails it under ALPHAVIL_REQUIRE_ALL=1
(what .ci/run sets), in each of the three ways tests use it; a plain pytest.skip stays a skip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""import sys
sys.path.insert(0, {str(TESTS)!r})
from needs import (pytest_collection_modifyitems, pytest_configure,  # noqa: F401
                   pytest_runtest_setup)
"""
CASES = {
    "test_module.py": "from needs import needs_module\nneeds_module('no_such_module_xyz')\n"
                      "def test_a():\n    pass\n",
    "test_call.py": "from needs import needs\ndef test_b():\n"
                    "    needs(False, 'a thing', 'apt-get install thing')\n",
    "test_mark.py": "import pytest\nfrom needs import requires\n"
                    "@pytest.fixture\ndef costly():\n    raise AssertionError('set up')\n"
                    "@requires(False, 'a thing', 'apt-get install thing')\n"
                    "def test_c(costly):\n    pass\n",
    "test_present.py": "from needs import needs, needs_module, requires\n"
                       "json = needs_module('json')\n"
                       "@requires(True, 'x', 'y')\ndef test_d():\n"
                       "    needs(True, 'x', 'y')\n    assert json.dumps(1) == '1'\n",
    "test_plain_skip.py": "import pytest\ndef test_e():\n    pytest.skip('no CUDA device')\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("needs")
    (root / "conftest.py").write_text(CONFTEST)
    for name, text in CASES.items():
        (root / name).write_text(text)
    return root


def _run(folder, require_all):
    env = {k: v for k, v in os.environ.items() if k != "ALPHAVIL_REQUIRE_ALL"}
    if require_all:
        env["ALPHAVIL_REQUIRE_ALL"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors",
                           "-o", "addopts=", str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout


def test_without_require_all_a_missing_install_skips(folder):
    rc, out = _run(folder, False)
    assert rc == 0, out
    assert "2 passed" not in out and "1 passed, 4 skipped" in out, out
    assert "needs the Python module 'no_such_module_xyz' (make install-nlu)" in out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    # each skip names the test file that needs the thing, not tests/needs.py
    assert sorted(line.split()[2].split(":")[0] for line in skipped) == \
        ["test_call.py", "test_mark.py", "test_module.py", "test_plain_skip.py"], skipped
    assert "needs a thing (apt-get install thing)" in out


def test_under_require_all_a_missing_install_fails_and_a_plain_skip_stays(folder):
    rc, out = _run(folder, True)
    assert rc != 0, out
    assert "ERROR test_module.py" in out  # collecting the file fails
    assert "ERROR test_mark.py::test_c" in out  # at set-up, before its fixture ran
    assert "FAILED test_call.py::test_b" in out
    assert "AssertionError: set up" not in out
    assert "PASSED test_present.py::test_d" in out
    assert "SKIPPED [1] test_plain_skip.py" in out
    assert "ALPHAVIL_REQUIRE_ALL=1" in out
