"""Every name params.yaml may give for something the code implements, in one torch-free place.

params.yaml is validated before torch is imported (alphavil/cli.py), so the schema cannot
read the names off the torch modules that implement them. Instead each name is written
here once: the schema's choices are these keys, and the code that runs a name finds its
implementation here ("module:attribute", imported only when asked for) or dispatches on
the name itself where the implementation is a branch (weight modes, combines, optimizers).
tests/test_registry.py resolves every name to a working implementation.
"""

from __future__ import annotations

import importlib
from typing import Any

# Training methods (alphavil/methods/). αVIL runs as per-epoch stages; the others are the
# baselines params.yaml may list, each run by one train_method stage.
ALPHAVIL = "alphavil"
METHODS = {
    ALPHAVIL: "alphavil.methods.alphavil:AlphaVIL",
    "uniform": "alphavil.methods.joint:UniformMTL",
    "single_task": "alphavil.methods.joint:SingleTask",
    "diw": "alphavil.methods.diw:DIW",
    "forkmerge": "alphavil.methods.forkmerge:ForkMerge",
    "gcs": "alphavil.methods.gcs:GCS",
}
BASELINES = tuple(m for m in METHODS if m != ALPHAVIL)

# model.kind -> the builder of that model (alphavil/models.py build_model)
MODEL_KINDS = {
    "cnn": "alphavil.models.multitask:build_cnn",
    "transformer": "alphavil.models.transformer:build_transformer_model",
    "resnet": "alphavil.models.resnet:build_resnet",
}
# setting -> the model.kind it uses by default
SETTINGS = {"vision": "cnn", "nlu": "transformer", "images": "cnn"}
# setting -> every model.kind it may use
SETTING_KINDS = {"vision": ("cnn",), "nlu": ("transformer",), "images": ("cnn", "resnet")}
# setting images: data.normalise (unit: pixels / 255; dataset: then per-channel standardised
# by the training images' mean and std) and data.fit (how an image becomes a square)
NORMALISE = ("unit", "dataset")
FITS = ("stretch", "crop")

# alphavil.weight_rule -> w_k's update from α_k (alphavil/core.py update_weights)
WEIGHT_RULES = {
    "additive": "alphavil.methods.deltas:additive_rule",  # the paper's
    "alpha": "alphavil.methods.deltas:alpha_rule",
    "multiplicative": "alphavil.methods.deltas:multiplicative_rule",
}
# alphavil.weight_mode: how w_k acts on task k's fine-tune (alphavil/core.py weight_scaling)
WEIGHT_MODES = ("step", "loss")
# alpha.combine: θ + Σ α_k δ_k (sum, the paper) or θ + (1/K) Σ α_k δ_k (core.combine_scale)
COMBINES = ("sum", "mean")
# alpha.fit: the paper's fixed step budget, or L-BFGS to the dev-loss minimiser
# (methods/deltas.py estimate_alpha, methods/alpha_fit.py)
ALPHA_FITS = ("budget", "converge")
# alpha.order: all α at once (the paper), or the target's own α first, then the
# auxiliary α on top of it (methods/alphavil.py AlphaVIL.estimate)
ALPHA_ORDERS = ("joint", "target_first")
# alpha.split: which part of the target's dev split α is fitted on; the rest selects and
# reports (alphavil/data/prepared.py dev_parts)
ALPHA_SPLITS = ("dev", "dev_half")
# alphavil.delta_dtype: the torch dtype (by its name in torch) deltas are stored in
DELTA_DTYPES = ("float64", "float32", "bfloat16")
# train.optimizer (alphavil/optim.py make); alpha.optimizer takes the first two
OPTIMIZERS = ("sgd", "adam", "adamw")
ALPHA_OPTIMIZERS = ("sgd", "adam")
# joint.schedule: how a joint epoch groups its tasks' batches into optimizer steps
# (alphavil/methods/joint.py SCHEDULES)
JOINT_SCHEDULES = ("each_step", "spread", "round_robin")
# forkmerge.variant (alphavil/methods/forkmerge.py, forkmerge_published.py)
FORKMERGE_VARIANTS = ("two_branch", "published")
# train.device (alphavil/device.py resolve)
DEVICES = ("cpu", "cuda", "auto")
# train.precision -> the autocast dtype (by its name in torch; None: no autocast)
PRECISIONS = {"fp32": None, "bf16": "bfloat16"}
# report.rank_by: the per-task quantity the ranking score orders against a suite's roles
# (alphavil/report/summary.py): the final weight w, or cumulative α (Σ over epochs of α minus
# its neutral value, alphavil/report/verdict.py)
RANK_BY = ("weight", "cumulative_alpha")
# model.pooling of the NLU encoder's token states (alphavil/nlu/model.py)
POOLINGS = ("mean", "cls", "pooler")


def load(target: str) -> Any:
    """The object a "module:attribute" entry above names (its module imported now)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
