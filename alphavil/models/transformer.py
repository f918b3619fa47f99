"""A `transformers` AutoModel encoder as the shared trunk, with one linear head per task.

What is trainable decides what every checkpoint and delta stores (models.trainable_state),
so the freezing knobs are also the artifact-size knobs (docs/nlu.md has the numbers):
  model.freeze_embeddings  the word-embedding matrix (about half of MiniLM's weights)
  model.train_layers       only the top N transformer layers (and the pooler) train; N=null
                           trains all of them. Frozen weights are the pretrained ones, which
                           every stage re-loads, so they never need storing.
  model.lora               LoRA adapters (peft) on the named modules of those layers train
                           instead of their weights: deltas, checkpoints and α merges then
                           cover only the adapters' A and B matrices and the heads.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from alphavil.models.multitask import MultiTaskModel
from alphavil.data.encoders import one_line, pinned, resolve
from alphavil.data.text_sources import SourceError


class EncoderTrunk(nn.Module):
    def __init__(self, encoder: nn.Module, pooling: str):  # model.pooling (registry.POOLINGS)
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.out_dim = int(encoder.config.hidden_size)
        self.prefix_cache = None  # set by prefix_cache.cached_frozen_prefix (evaluate)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        # Inputs are padded to data.max_length; cut every batch to its longest real
        # sequence. Padded positions are masked out, so this only saves compute.
        length = max(1, int(mask.sum(1).max()))
        mask = mask[:, :length].long()
        kwargs = {"input_ids": inputs["input_ids"][:, :length].long(), "attention_mask": mask}
        if "token_type_ids" in inputs:
            kwargs["token_type_ids"] = inputs["token_type_ids"][:, :length].long()
        if self.prefix_cache is None:
            out = self.encoder(**kwargs)
        else:
            out = self.prefix_cache.forward(self.encoder, kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    for path in ("encoder.layer", "layer", "transformer.layer", "layers"):
        node = encoder
        try:
            for part in path.split("."):
                node = getattr(node, part)
        except AttributeError:
            continue
        if isinstance(node, nn.ModuleList):
            return node
    raise SourceError(f"model.train_layers: cannot find the transformer layers of "
                      f"{type(encoder).__name__}; set model.train_layers: null")


def load_encoder(model) -> nn.Module:
    """The encoder the NLU model section (config.nlu.NLUModel) names."""
    from transformers import AutoConfig, AutoModel

    name, revision = model.encoder, model.encoder_revision
    path = resolve(name, revision)
    overrides = {}
    if model.dropout is not None:
        overrides = {"hidden_dropout_prob": float(model.dropout),
                     "attention_probs_dropout_prob": float(model.dropout)}
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, **overrides)
        if model.init == "random":
            # seeded by models.build_model: the same seed gives the same weights
            return AutoModel.from_config(config)
        return AutoModel.from_pretrained(path, config=config, revision=revision,
                                         use_safetensors=True)
    except (OSError, ValueError) as err:
        raise SourceError(f"model.encoder {name!r}: cannot load from {path!r}{pinned(revision)}"
                          f" (weights load from safetensors files only; {one_line(err)})"
                          ) from None


def build_transformer_model(model, task_classes: dict[str, int],
                            data_meta: dict) -> MultiTaskModel:
    """The NLU model section's (config.nlu.NLUModel) encoder and a head per task."""
    if data_meta.get("setting") != "nlu":
        raise SourceError("model.kind 'transformer' needs NLU prepared data (setting: nlu); "
                          "re-run the prepare stage")
    tok = data_meta["tokenizer"]
    if (tok["name"], tok.get("revision")) != (model.encoder, model.encoder_revision):
        raise SourceError(f"data/prepared was tokenised with {tok['name']!r}"
                          f"{pinned(tok.get('revision'))} but model.encoder is "
                          f"{model.encoder!r}{pinned(model.encoder_revision)}; set "
                          "data.tokenizer (and data.tokenizer_revision) to the encoder's and "
                          "re-run prepare")
    encoder = load_encoder(model)
    vocab = encoder.get_input_embeddings().num_embeddings
    if tok["vocab_size"] > vocab:
        raise SourceError(f"tokenizer {tok['name']!r} has {tok['vocab_size']} ids, the encoder's "
                          f"embedding only {vocab}")
    if model.freeze_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    n_top = model.train_layers
    if n_top is not None:
        layers = transformer_layers(encoder)
        if n_top > len(layers):
            raise SourceError(f"model.train_layers: {n_top} > the encoder's {len(layers)} layers")
        trainable = {id(p) for layer in list(layers)[len(layers) - n_top:]
                     for p in layer.parameters()}
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None and model.pooling == "pooler":
            trainable |= {id(p) for p in pooler.parameters()}
        for p in encoder.parameters():
            if id(p) not in trainable:
                p.requires_grad_(False)
    elif model.pooling != "pooler":
        # an unused pooler would get no gradient; keep it out of checkpoints and deltas
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:
            for p in pooler.parameters():
                p.requires_grad_(False)
    if model.lora is not None:
        encoder = add_lora(encoder, model.lora, n_top)
    trunk = EncoderTrunk(encoder, model.pooling)
    return MultiTaskModel(trunk, trunk.out_dim, task_classes)


def add_lora(encoder: nn.Module, lora, n_top: int | None) -> nn.Module:
    """Wrap the encoder in peft LoRA adapters: W x + (alpha/rank)·B A x on every module named
    in `targets`, in the top `n_top` layers (all layers when None). peft freezes every
    pretrained weight, so what trains (and what deltas and merges cover) is each adapter's
    A and B; B starts at zero, so θ_0 computes exactly what the pretrained encoder does."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SourceError("model.lora needs the peft package (make install-nlu: "
                          "requirements-nlu.txt)") from None
    layers = None
    if n_top is not None:
        total = len(transformer_layers(encoder))
        layers = list(range(total - n_top, total))
    config = LoraConfig(r=int(lora.rank), lora_alpha=float(lora.alpha),
                        lora_dropout=float(lora.dropout),
                        target_modules=list(lora.targets), layers_to_transform=layers,
                        bias="none")
    try:
        with warnings.catch_warnings():  # peft calls a deprecated transformers helper
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(encoder, config)
    except ValueError as err:  # peft: "Target modules ... not found in the base model"
        raise SourceError(f"model.lora.targets {list(lora.targets)}: {err}") from None
