import os

import pytest
import yaml

from testkit.params import tiny_raw

# the `needs` marker's check (a missing install skips, or fails under ALPHAVIL_REQUIRE_ALL=1)
from needs import (pytest_collection_modifyitems, pytest_configure,  # noqa: F401
                   pytest_runtest_setup)

os.environ.setdefault("ALPHAVIL_QUIET", "1")


@pytest.fixture
def tiny():
    return tiny_raw


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temp folder as cwd with a tiny params.yaml and prepared data in it."""
    from alphavil import pipeline
    from alphavil.data.prepared import _load_split_file

    def make(**sections):
        raw = tiny_raw(**sections)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        monkeypatch.chdir(tmp_path)
        _load_split_file.cache_clear()
        pipeline.prepare("params.yaml")
        return tmp_path

    yield make
    _load_split_file.cache_clear()
