import os

import pytest
import yaml

from testkit.params import tiny_raw

os.environ.setdefault("ALPHAVIL_QUIET", "1")


@pytest.fixture
def tiny():
    return tiny_raw


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temp folder as cwd with a tiny params.yaml and prepared data in it."""
    from alphavil import pipeline
    from alphavil.data import _load_split_file

    def make(**sections):
        raw = tiny_raw(**sections)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        monkeypatch.chdir(tmp_path)
        _load_split_file.cache_clear()
        pipeline.prepare("params.yaml")
        return tmp_path

    yield make
    _load_split_file.cache_clear()
