"""`setting: images`: each image source (a class-per-folder tree, a table of image paths, a
Hugging Face dataset read from local files) on tiny generated data; what each new param
changes; the model kinds on C channels; bad input as one line naming the key."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from alphavil.config import validate
from alphavil.data.image_prepare import select_images
from alphavil.data.image_sources import load_files, load_folder, load_hf
from alphavil.data.prepared import load_meta, load_task_split
from alphavil.data.text_sources import SourceError
from alphavil.models.multitask import build_model
from testkit.images import images_raw, write_folder, write_hf_saved, write_table
from testkit.params import ROOT


def _params(tasks, target=None, **over):
    return validate(images_raw(tasks, target or next(iter(tasks)), **over))


def _prepare(tmp_path, params):
    from alphavil import pipeline

    out = tmp_path / f"prepared{len(list(tmp_path.glob('prepared*')))}"  # splits are cached by path
    pipeline.prepare(params, out)
    return out, load_meta(out)


def _images(out, task):
    return {s: load_task_split(out, s, task) for s in ("train", "dev", "test")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {"folder": write_folder(root / "folder", per_class=20, size=(20, 14), mode="RGBA"),
            "csv": write_table(root / "tab" / "t.csv"),
            "parquet": write_table(root / "pq" / "t.parquet", label_col="label"),
            "hf": write_hf_saved(root / "hf")}


# --- sources --------------------------------------------------------------------------

def test_folder_source_reads_classes_by_subfolder_and_carves_disjoint_splits(tmp_path, data):
    (data["folder"] / "a" / "notes.txt").write_text("not an image: skipped by its suffix")
    pools = load_folder(_params({"t": {"source": "folder", "path": str(data["folder"])}})
                        .tasks["t"], "tasks.t")
    assert list(pools) == ["train"] and sorted(set(pools["train"].raw)) == ["a", "b", "c"]
    assert len(pools["train"]) == 60  # 3 x 20 pngs, not the .txt
    out, meta = _prepare(tmp_path, _params({"t": {"source": "folder", "path": str(data["folder"])}}))
    assert meta["setting"] == "images" and meta["channels"] == 1 and meta["image_size"] == 12
    t = meta["tasks"]["t"]
    assert t["label_names"] == ["a", "b", "c"] and t["num_classes"] == 3
    assert t["sizes"] == {"train": 12, "dev": 6, "test": 6}
    splits = _images(out, "t")
    # RGBA 20x14 images became grey 12x12 uint8
    assert splits["train"].inputs["images"].shape == (12, 1, 12, 12)
    assert splits["train"].inputs["images"].dtype == torch.uint8
    flat = {s: {bytes(x.numpy().tobytes()) for x in v.inputs["images"]} for s, v in splits.items()}
    assert not (flat["train"] & flat["dev"]) and not (flat["train"] & flat["test"]) \
        and not (flat["dev"] & flat["test"])  # each image in one split only
    # the label a pattern means: class c has its left (c+1)/4 bright
    x = splits["train"].inputs["images"].float()
    y = splits["train"].labels
    bright = (x[:, 0, :, :].mean(dim=1) > 100).float().mean(dim=1)
    assert all(bright[y == c].mean() < bright[y == c + 1].mean() for c in range(2))


def test_table_of_image_paths_csv_and_parquet(tmp_path, data):
    spec = {"source": "files", "train": str(data["csv"]), "image": "file", "label": "y"}
    pools = load_files(_params({"t": spec}).tasks["t"], "tasks.t")
    assert sorted(set(pools["train"].raw)) == [0, 1, 2] and len(pools["train"]) == 36
    assert pools["train"].read(0).size == (16, 16)  # relative to the table's folder
    pq = {"source": "files", "train": str(data["parquet"]), "test": str(data["parquet"]),
          "image": "file", "label": "label", "n_test": 5}
    out, meta = _prepare(tmp_path, _params({"t": pq}, data={"channels": 3}))
    assert meta["tasks"]["t"]["drawn_from"]["test"] == "test"
    assert meta["tasks"]["t"]["label_names"] == ["0", "1", "2"]
    assert _images(out, "t")["test"].inputs["images"].shape == (5, 3, 12, 12)


def test_hf_saved_dataset_uses_its_named_splits_whole_and_classlabel_names(tmp_path, data):
    spec = {"source": "hf", "name": str(data["hf"]), "image": "img", "label": "animal",
            "splits": {"train": "train", "dev": "validation", "test": "test"}}
    out, meta = _prepare(tmp_path, _params({"v": spec}))
    t = meta["tasks"]["v"]
    assert t["label_names"] == ["cat", "dog"]
    assert t["sizes"] == {"train": 12, "dev": 8, "test": 8}  # own dev/test: all 8 rows
    assert t["drawn_from"] == {"train": "train", "dev": "dev", "test": "test"}
    # without dev/test split names, both are carved from train
    out, meta = _prepare(tmp_path, _params({"v": {**spec, "splits": {"train": "train"}}}))
    assert meta["tasks"]["v"]["drawn_from"]["dev"] == "train"
    assert meta["tasks"]["v"]["sizes"] == {"train": 12, "dev": 6, "test": 6}


def test_hf_builders_over_local_files(data):
    spec = {"source": "hf", "name": "imagefolder", "image": "image", "label": "label",
            "data_files": {"train": str(data["folder"] / "**" / "*.png")}}
    pools = load_hf(_params({"t": spec}).tasks["t"], "tasks.t")
    assert sorted(set(pools["train"].raw)) == ["a", "b", "c"] and len(pools["train"]) == 60
    assert pools["train"].read(3).size == (14, 20)  # PIL: (width, height)


def test_tasks_of_one_source_draw_disjoint_images_and_keep_their_classes(tmp_path, data):
    folder = {"source": "folder", "path": str(data["folder"])}
    tasks = {"t": folder, "ab": {**folder, "classes": {"ab": ["a", "b"], "c": ["c"]}},
             "digits": {"source": "files", "train": str(data["csv"]), "image": "file",
                        "label": "y"}}
    out, meta = _prepare(tmp_path, _params(tasks))
    assert meta["tasks"]["ab"]["label_names"] == ["ab", "c"]
    assert meta["tasks"]["ab"]["num_classes"] == 2 and meta["tasks"]["digits"]["num_classes"] == 3
    seen = [bytes(x.numpy().tobytes()) for task in ("t", "ab") for s in _images(out, task).values()
            for x in s.inputs["images"]]
    assert len(seen) == len(set(seen))  # the two tasks of one folder share no image


# --- what each param changes ------------------------------------------------------------

def _one(data, **data_over):
    return select_images(_params({"t": {"source": "folder", "path": str(data["folder"])}},
                                 data=data_over))[0]["t"]


def test_image_size_channels_and_fit(data):
    base = _one(data)
    assert base["train"][0].shape == (12, 1, 12, 12)
    assert _one(data, image_size=16)["train"][0].shape == (12, 1, 16, 16)
    rgb = _one(data, channels=3)["train"][0]
    # the folder's images are grey in RGBA: three equal channels, each the grey one
    assert rgb.shape == (12, 3, 12, 12) and np.array_equal(rgb[:, 2], base["train"][0][:, 0])
    crop = _one(data, fit="crop")
    assert crop["train"][0].shape == base["train"][0].shape
    assert not np.array_equal(crop["train"][0], base["train"][0])  # 20x14: crop != stretch
    assert np.array_equal(crop["train"][1], base["train"][1])  # the same images drawn


def test_split_sizes_seed_and_label_noise(tmp_path, data):
    folder = {"source": "folder", "path": str(data["folder"])}
    sizes = lambda **t: select_images(_params({"t": {**folder, **t}}))[0]["t"]  # noqa: E731
    got = sizes(n_train=20, n_dev=4, n_test=3)
    assert [len(got[s][1]) for s in ("train", "dev", "test")] == [20, 4, 3]
    base = sizes()
    grown = sizes(n_train=30)
    assert np.array_equal(grown["dev"][0], base["dev"][0])  # growing n_train keeps dev/test
    other = select_images(_params({"t": folder}, data={"seed": 1}))[0]["t"]
    assert not np.array_equal(other["dev"][0], base["dev"][0])
    clean_dir, _ = _prepare(tmp_path, _params({"t": folder}))
    noisy_dir, _ = _prepare(tmp_path, _params({"t": {**folder, "label_noise": 1.0}}))
    clean, noisy = _images(clean_dir, "t"), _images(noisy_dir, "t")
    assert torch.equal(clean["train"].inputs["images"], noisy["train"].inputs["images"])
    assert not torch.equal(clean["train"].labels, noisy["train"].labels)  # random classes
    for split in ("dev", "test"):  # dev and test keep measuring the real task
        assert torch.equal(clean[split].labels, noisy[split].labels)


def test_normalise_dataset_standardises_the_model_input(tmp_path, data):
    folder = {"t": {"source": "folder", "path": str(data["folder"])}}
    _, unit = _prepare(tmp_path, _params(folder))
    out, std = _prepare(tmp_path, _params(folder, data={"normalise": "dataset"}))
    assert unit["normalise"] == {"mean": [0.0], "std": [1.0]}
    x = _images(out, "t")["train"].inputs["images"].float() / 255
    assert std["normalise"]["mean"] == [pytest.approx(float(x.mean()), abs=1e-5)]
    params = _params(folder)
    a = build_model(params.model, {"t": 3}, unit, seed=0)
    b = build_model(params.model, {"t": 3}, std, seed=0)
    z = a.trunk.pixels(x[:4] * 255, torch.float32)
    assert torch.allclose(z, x[:4])
    z = b.trunk.pixels(x * 255, torch.float32)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 0.01
    assert torch.equal(a.trunk.conv[0].weight, b.trunk.conv[0].weight)  # same θ_0, other input
    assert "trunk.pixels.mean" not in dict(b.named_parameters())  # never in a delta


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_model_kinds_on_rgb_images_with_one_head_per_task(kind):
    params = _params({"t": {"source": "folder", "path": "x"}}, model={"kind": kind,
                                                                        "channels": [4, 8]})
    meta = {"setting": "images", "image_size": 16, "channels": 3,
            "normalise": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    model = build_model(params.model, {"t": 3, "u": 10}, meta, seed=0)
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    assert model({"images": x}, "t").shape == (5, 3) and model({"images": x}, "u").shape == (5, 10)
    names = [n for n, _ in model.named_parameters()]
    assert all(n.startswith(("trunk.", "heads.")) for n in names)
    if kind == "resnet":
        assert not list(model.buffers()) == [] and not any("running" in n for n, _ in
                                                            model.named_buffers())
        deeper = _params({"t": {"source": "folder", "path": "x"}},
                         model={"kind": "resnet", "channels": [4, 8], "blocks": 2}).model
        more = build_model(deeper, {"t": 3}, meta, seed=0)
        assert sum(p.numel() for p in more.parameters()) > sum(
            p.numel() for p in build_model(params.model, {"t": 3}, meta, seed=0).parameters())


def test_grey_cnn_is_the_multimnist_cnn():
    """channels 1 and no normalise in meta.json: the vision setting's model, unchanged."""
    from testkit.params import tiny_raw

    model = validate(tiny_raw()).model
    a = build_model(model, {"t": 10}, {"setting": "vision", "image_size": 28}, seed=0)
    assert a.trunk.conv[0].weight.shape[1] == 1 and not a.trunk.pixels.standardise


# --- bad input: one line naming the key or file ---------------------------------------

def _prepare_stage(folder, raw):
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py")], cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (folder / "data").exists()
    return lines[0]


def test_bad_image_input_is_one_line(tmp_path, data):
    folder = {"source": "folder", "path": str(data["folder"])}
    table = {"source": "files", "train": str(data["csv"]), "image": "file", "label": "y"}
    cases = [
        ({"source": "folder", "path": str(tmp_path / "absent")},
         "tasks.t.path: expected a folder with one sub-folder of images per class"),
        ({**table, "train": str(tmp_path / "absent.csv")},
         "tasks.t.train: expected a CSV/JSON/parquet file"),
        ({**table, "image": "path"}, "no column ['path']"),
        ({**folder, "classes": {"x": ["a"], "y": ["zebra"]}},
         "tasks.t.classes.y: 'zebra' is not a label of the source"),
        ({"source": "hf", "name": str(tmp_path / "nohub"), "image": "img"}, "tasks.t.name"),
        ({"source": "hf", "name": str(data["hf"]), "image": "img", "label": "animal",
          "splits": {"dev": "valid"}}, "tasks.t.splits.dev: "),
    ]
    one = tmp_path / "one"  # a label column with one class
    write_folder(one, classes=("only",), per_class=10)
    cases.append(({"source": "folder", "path": str(one)}, "at least two classes"))
    broken = tmp_path / "broken"
    write_folder(broken, per_class=10)
    for png in (broken / "a").glob("*.png"):
        png.write_bytes(b"not a png")
    cases.append(({"source": "folder", "path": str(broken)}, "not a readable image"))
    for i, (spec, expected) in enumerate(cases):
        run = tmp_path / f"case{i}"
        run.mkdir()
        line = _prepare_stage(run, images_raw({"t": spec}, "t"))
        assert expected in line, (spec, line)


def test_meta_json_of_images_is_checked(tmp_path, data):
    out, meta = _prepare(tmp_path, _params({"t": {"source": "folder",
                                                  "path": str(data["folder"])}}))
    meta["normalise"] = {"mean": [0.1, 0.2], "std": [1.0]}
    (out / "meta.json").write_text(json.dumps(meta))
    from alphavil.store.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="normalise"):
        load_meta(out)
    with pytest.raises(SourceError):
        load_folder(_params({"t": {"source": "folder", "path": str(tmp_path)}}).tasks["t"], "k")
