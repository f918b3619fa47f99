"""The NLU prepare stage: draw each task's train/dev/test examples, tokenise them, and
write data/prepared/ (the DVC output every later stage reads).

Layout: {train,dev,test}.safetensors with `input_ids.<task>` (int32),
`attention_mask.<task>` and `token_type_ids.<task>` (int8) padded to data.max_length, and
`label.<task>`; meta.json (classes, metric, sizes, tokenizer); text/<task>.<split>.jsonl,
the drawn examples, for reading.

Splits. Tasks that read the same source (with the same loader options) take disjoint
rows of it: one seeded shuffle per source, and each task, in params order, draws its dev,
then test, then train rows from what is still unused. So SNLI-3way as an auxiliary task
never trains on the pairs that the binary entailment target is scored on, and growing
n_train leaves dev and test unchanged. A source's own test split (SNLI test, GLUE
validation) or a user's dev/test file is used instead of carving, when there is one.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from alphavil.store.artifacts import save_tensors, write_json, write_text
from alphavil.config import Params
from alphavil.data.prepared import SPLITS
from alphavil.runtime.seeding import task_rng
from alphavil.runtime.steplog import say
from alphavil.data.encoders import load_tokenizer
from alphavil.data.text_sources import (LOADERS, Pool, SourceError, View, reported_metrics,
                                        task_metric, task_view)

DRAW_ORDER = ("dev", "test", "train")


def _group_key(spec) -> str:
    """Tasks with the same source and loader options share (and split) one pool. The key
    (which also seeds the pool's shuffle) holds the options that differ from their
    defaults, so spelling a default out in params.yaml leaves the draws as they are. What
    only changes a task's own labels or its reading (noise, sizes, metric, a suite's `role`)
    is no loader option: such tasks still split one pool, disjointly."""
    keep = {k: v for k, v in spec.model_dump(mode="json", exclude_defaults=True).items()
            if k not in {"view", "label_noise", "n_train", "n_dev", "n_test", "metric", "role"}}
    return json.dumps(keep, sort_keys=True)


def _labels(pool: Pool, view: View) -> list:
    return [view.to_label(r) for r in pool.raw]


def draw(labels: list, order: np.ndarray, used: np.ndarray, n: int | None, view: View,
         key: str, strict: bool = True) -> np.ndarray:
    """The first `n` unused rows in `order` that the view labels (all of them when n is
    None), class-balanced for balanced views; marks them used. With strict=False (n came
    from the data.n_* defaults, not from the task) a smaller source gives what it has."""
    ok = [i for i in order if not used[i] and labels[i] is not None]
    if not strict and n is not None:
        if view.balanced and view.num_classes > 1:
            fewest = min(sum(1 for i in ok if labels[i] == c) for c in range(view.num_classes))
            n = min(n, fewest * view.num_classes)
        else:
            n = min(n, len(ok))
    if view.balanced and view.num_classes > 1:
        by_class: dict[int, list[int]] = {c: [] for c in range(view.num_classes)}
        for i in ok:
            by_class[labels[i]].append(i)
        c_n = view.num_classes
        if n is None:
            quota = [min(len(v) for v in by_class.values())] * c_n
        else:
            quota = [n // c_n + (1 if c < n % c_n else 0) for c in range(c_n)]
        short = [view.label_names[c] for c in range(c_n) if len(by_class[c]) < quota[c]]
        if short:
            raise SourceError(f"{key}: asked for {n} class-balanced rows but class(es) "
                              f"{short} have only {[len(by_class[c]) for c in range(c_n)]} "
                              "unused rows left; lower it")
        chosen = set(i for c in range(c_n) for i in by_class[c][:quota[c]])
        picked = np.array([i for i in ok if i in chosen], dtype=np.int64)
    else:
        if n is not None and len(ok) < n:
            raise SourceError(f"{key}: asked for {n} rows but the source has only {len(ok)} "
                              "unused labelled rows left (after the dev/test splits and earlier "
                              "tasks of the same source); lower it")
        picked = np.array(ok if n is None else ok[:n], dtype=np.int64)
    used[picked] = True
    return picked


def _noisy(labels: np.ndarray, noise: float, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Same scheme as the vision tasks: a `noise` fraction of training labels replaced by
    uniformly drawn classes."""
    if noise <= 0 or classes < 2:
        return labels
    labels = labels.copy()
    flip = rng.permutation(len(labels))[: int(round(noise * len(labels)))]
    labels[flip] = rng.integers(0, classes, size=len(flip))
    return labels


def select_examples(params: Params) -> tuple[dict[str, dict[str, Pool]], dict[str, dict],
                                             dict[str, View]]:
    """{task: {split: Pool with class-id raw labels}}, per-task info, and views."""
    d, specs = params.data, params.tasks
    groups: dict[str, list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault(_group_key(spec), []).append(name)

    out: dict[str, dict[str, Pool]] = {}
    info: dict[str, dict] = {}
    views: dict[str, View] = {}
    for gkey, names in groups.items():
        source = specs[names[0]].source
        say(f"prepare: loading source {source!r} for task(s) {names}")
        pools = LOADERS[source](specs[names[0]], f"tasks.{names[0]}")
        if "train" not in pools:
            raise SourceError(f"tasks.{names[0]}: source {source!r} gave no training rows")
        rng = np.random.default_rng([d.seed, zlib.crc32(gkey.encode())])
        orders = {s: rng.permutation(len(p)) for s, p in sorted(pools.items())}
        used = {s: np.zeros(len(p), dtype=bool) for s, p in pools.items()}
        for name in names:
            spec = specs[name]
            view = task_view(spec, pools, f"tasks.{name}")
            views[name] = view
            out[name] = {}
            for split in DRAW_ORDER:
                # a user's own dev/test file or hf split is used whole unless n_<split> is set
                n = getattr(spec, f"n_{split}")
                strict = n is not None
                src = split if split in pools else "train"
                if n is None and not (source in ("files", "hf") and src == split):
                    n = getattr(d, f"n_{split}")
                labels = _labels(pools[src], view)
                idx = draw(labels, orders[src], used[src], n, view, f"tasks.{name}.n_{split}",
                           strict)
                chosen = pools[src].take(idx)
                chosen.raw = [labels[i] for i in idx]
                out[name][split] = chosen
            info[name] = {"source": source, "view": spec.view_name,
                          "drawn_from": {s: (s if s in pools else "train") for s in SPLITS}}
    return out, info, views


def tokenize(tokenizer, pool: Pool, max_length: int) -> dict[str, np.ndarray]:
    enc = tokenizer(pool.text_a, pool.text_b, truncation=True, max_length=max_length,
                    padding="max_length", return_tensors="np")
    out = {"input_ids": enc["input_ids"].astype(np.int32),
           "attention_mask": enc["attention_mask"].astype(np.int8)}
    if "token_type_ids" in enc:
        out["token_type_ids"] = enc["token_type_ids"].astype(np.int8)
    return out


def _truncated_fraction(tokenizer, pool: Pool, max_length: int) -> float:
    """Share of examples longer than max_length (reported in meta.json: a knob to watch)."""
    if not len(pool):
        return 0.0
    # one token of slack tells "cut" from "fits" without tokenising whole articles
    enc = tokenizer(pool.text_a, pool.text_b, truncation=True, max_length=max_length + 1)
    return float(np.mean([len(ids) > max_length for ids in enc["input_ids"]]))


def prepare_nlu(params: Params, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    d = params.data
    max_length = int(d.max_length)
    tokenizer = load_tokenizer(d.tokenizer, d.tokenizer_revision)
    examples, info, views = select_examples(params)

    tensors: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    texts: dict[str, str] = {}
    meta_tasks = {}
    for name, splits in examples.items():
        view = views[name]
        spec = params.tasks[name]
        regression = view.num_classes == 1
        for split, pool in splits.items():
            for k, v in tokenize(tokenizer, pool, max_length).items():
                tensors[split][f"{k}.{name}"] = torch.from_numpy(v)
            if regression:
                labels = np.asarray(pool.raw, dtype=np.float32)
            else:
                labels = np.asarray(pool.raw, dtype=np.int64)
                if split == "train":
                    labels = _noisy(labels, float(spec.label_noise), view.num_classes,
                                    task_rng(d.seed, name))
            tensors[split][f"label.{name}"] = torch.from_numpy(labels)
            texts[f"{name}.{split}"] = "".join(
                json.dumps({"text_a": a, **({"text_b": pool.text_b[i]} if pool.text_b else {}),
                            "label": pool.raw[i]}, ensure_ascii=False) + "\n"
                for i, a in enumerate(pool.text_a))
        counts = {s: (np.bincount(np.asarray(p.raw, dtype=np.int64),
                                  minlength=view.num_classes).tolist()
                      if not regression else None) for s, p in splits.items()}
        meta_tasks[name] = {
            **info[name],
            "num_classes": view.num_classes,
            "label_names": list(view.label_names),
            "metric": task_metric(spec, view),
            "metrics": list(reported_metrics(view)),
            "label_noise": float(spec.label_noise),
            "sizes": {s: len(p) for s, p in splits.items()},
            "class_counts": counts,
            "truncated": {s: round(_truncated_fraction(tokenizer, p, max_length), 4)
                          for s, p in splits.items()},
            "pair": splits["train"].text_b is not None,
        }

    if out_dir.exists():
        shutil.rmtree(out_dir)
    for split in SPLITS:
        save_tensors(out_dir / f"{split}.safetensors", tensors[split], {"split": split})
    for key, text in texts.items():
        write_text(out_dir / "text" / f"{key}.jsonl", text)
    write_json(out_dir / "meta.json", {
        "setting": "nlu",
        "tokenizer": {"name": d.tokenizer, "class": type(tokenizer).__name__,
                      "vocab_size": len(tokenizer), "max_length": max_length,
                      # only when pinned: meta.json of unpinned runs stays as it was
                      **({"revision": d.tokenizer_revision} if d.tokenizer_revision else {})},
        "tasks": meta_tasks,
    })
    say("prepare: " + "; ".join(
        f"{t} {m['sizes']['train']}/{m['sizes']['dev']}/{m['sizes']['test']}"
        for t, m in meta_tasks.items()) + f" (train/dev/test), max_length {max_length}")
