"""Every overlay in configs/, run as `python -m alphavil.workflow.study` runs it, writes a params.yaml
in which DVC finds every param any stage declares (dvc.yaml's `params:` lists): DVC refuses
to run a stage whose declared param is missing from params.yaml, so an overlay that leaves
out a key with a default (configs/nlu.yaml: train.device) must still get it written."""

import pytest
import yaml

from alphavil.workflow import study, studyfile
from alphavil.config import load_params, validate
from testkit.params import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def declared_params() -> set[str]:
    """Every params.yaml key (dotted) some stage of dvc.yaml declares."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    keys = set()
    for stage in stages.values():
        for entry in stage.get("params", []):
            assert isinstance(entry, str), entry  # a key of params.yaml, not another file
            keys.add(entry)
    return keys


def lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def test_dvc_yaml_declares_params_with_and_without_defaults():
    """The check below means something: stages declare whole sections and single keys,
    among them keys that overlays leave out and only the schema's defaults fill."""
    keys = declared_params()
    assert {"model", "train", "alphavil.sample_ratio", "train.device", "alpha.combine"} <= keys


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_study_writes_every_param_a_stage_declares(config, tmp_path, monkeypatch):
    # the Fashion-MNIST files of configs/multifashion.yaml need not be installed here
    monkeypatch.setattr(study, "check_data_source", lambda params: None)
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert study.main([str(config), "--params", str(params), "--no-run"]) == 0
    text = params.read_text()
    assert text.startswith("# Written by `python -m alphavil.workflow.study") and str(config) in \
        text.splitlines()[0]
    written = yaml.safe_load(text)
    missing = []
    for key in sorted(declared_params()):
        try:
            lookup(written, key)
        except KeyError:
            missing.append(key)
    assert not missing, f"{config.name}: params.yaml lacks {missing}"
    # what was written is the overlay's params, validated and default-filled
    merged = studyfile.merged_params(config, ROOT / "params.yaml")
    assert written == validate(merged).dump() == load_params(params).dump()
