"""`python -m benchmarks.nlu_evaluate`: scoring checkpoints of configs/nlu.yaml's encoder
(MiniLM-L6, top 2 of 6 layers trainable) on fixed batches, with and without
alphavil/nlu/prefix_cache.py, in turns. Needs `make install-nlu` (the shipped encoder);
no prepared data: the batches are random token ids of the configured length."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml

from .run import ROOT


def _model():
    from alphavil.data.encoders import load_tokenizer
    from alphavil.models.transformer import build_transformer_model

    m = yaml.safe_load((ROOT / "configs/nlu.yaml").read_text())["model"]
    tok = load_tokenizer(m["encoder"])
    meta = {"setting": "nlu", "tokenizer": {"name": m["encoder"], "vocab_size": len(tok),
                                            "max_length": 48}}
    torch.manual_seed(0)
    return build_transformer_model(m, {"t": 2}, meta).eval(), len(tok)


def _batches(vocab: int, n: int, batch: int, length: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        lengths = torch.randint(8, length + 1, (b,), generator=g)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        ids = torch.randint(1000, vocab, (b, length), generator=g) * mask
        out.append({"input_ids": ids, "attention_mask": mask,
                    "token_type_ids": torch.zeros_like(ids)})
    return out


def _score(model, batches, checkpoints: int, trainable) -> tuple[float, list[torch.Tensor]]:
    logits = []
    start = [p.detach().clone() for p in trainable]
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(checkpoints):
            for p, p0 in zip(trainable, start):  # a new "checkpoint": only the top differs
                p.copy_(p0 + 1e-3 * k)
            logits += [model(b, "t") for b in batches]
        for p, p0 in zip(trainable, start):
            p.copy_(p0)
    return time.perf_counter() - t0, logits


def main(argv=None) -> None:
    from alphavil.models.prefix_cache import cached_frozen_prefix
    from alphavil.runtime.seeding import configure_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1200, help="dev + test of the target")
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    configure_threads()
    model, vocab = _model()
    batches = _batches(vocab, args.examples, 512, 48)
    trainable = [p for p in model.parameters() if p.requires_grad]
    times: dict[str, list[float]] = {"plain": [], "cached": []}
    same = True
    for _ in range(args.repeats):
        t, plain = _score(model, batches, args.checkpoints, trainable)
        times["plain"].append(t)
        with cached_frozen_prefix(model):
            t, cached = _score(model, batches, args.checkpoints, trainable)
        times["cached"].append(t)
        same &= all(torch.equal(a, b) for a, b in zip(plain, cached))
    plain_s, cached_s = statistics.median(times["plain"]), statistics.median(times["cached"])
    print(f"| {args.checkpoints} checkpoints × {args.examples} examples | time (s), median "
          f"of {args.repeats} |")
    print("|---|---|")
    print(f"| without the cache | {plain_s:.1f} |")
    print(f"| with the cache (first checkpoint fills it) | {cached_s:.1f} |")
    print(f"| ratio | {plain_s / cached_s:.2f}× faster; logits identical: {same} |")


if __name__ == "__main__":
    main()
