"""Lower bounds on the memory a vision run needs, checked when params.yaml is validated,
so that sizes which cannot fit (data.n_train: 10**12, data.image_size: 100000) are refused
with the estimate before prepare or training allocates anything.

Only lower bounds: a refused configuration could never run on this machine; one that
passes may still not fit. No torch here: validation runs before torch is imported.
"""

from __future__ import annotations

import os

GiB = 2**30


def physical_memory() -> int:
    """Bytes of RAM of this machine (an upper bound of what a stage can use)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def image_bytes(data) -> int:
    """prepare holds every split's composed images at once: one uint8 byte per pixel of
    image_size², plus the canvas² uint8 composition buffer of the largest split."""
    ns = [data.n_train, data.n_dev, data.n_test]
    return sum(ns) * data.image_size ** 2 + max(ns) * data.canvas ** 2


def cnn_weights(image_size: int, channels: list[int], hidden: int) -> int:
    """Parameters of models.SmallCNN (5x5 convolutions, each followed by a 2x2 max-pool,
    then one hidden layer); the task heads are left out."""
    n, c_in, side = 0, 1, image_size
    for c_out in channels:
        n += c_in * c_out * 25 + c_out
        c_in, side = c_out, side // 2
    return n + c_in * side * side * hidden + hidden


def cnn_step_bytes(image_size: int, channels: list[int], hidden: int, batch_size: int) -> int:
    """One training step: float32 weights and their gradients, plus the first
    convolution's output for one batch."""
    return 4 * (2 * cnn_weights(image_size, channels, hidden)
                + batch_size * channels[0] * image_size ** 2)


def _gib(n: int) -> str:
    return f"{n / GiB:,.1f} GiB"


def vision_size_problems(data, model, batch_size: int) -> list[tuple[str, str, int]]:
    """(key, expected, got) for sizes of the vision data section (and the model section's
    CNN) whose lower bound exceeds this machine's RAM."""
    have = physical_memory()
    size = data.image_size
    step = cnn_step_bytes(size, model.channels, model.hidden, batch_size)
    if step > have:
        return [("data.image_size", f"sizes that fit this machine's {_gib(have)} of memory; "
                 f"one training step of the CNN on {size}x{size} images (model.channels "
                 f"{model.channels}, model.hidden {model.hidden}, train.batch_size "
                 f"{batch_size}) needs at least {_gib(step)}", size)]
    images = image_bytes(data)
    if images > have:
        largest = max(("n_train", "n_dev", "n_test"), key=lambda k: getattr(data, k))
        total = data.n_train + data.n_dev + data.n_test
        canvas = data.canvas
        # blame the canvas when it is unusually large (more than twice the final side:
        # its composition buffer then dominates), else the image counts
        key = "canvas" if canvas > 2 * size else largest
        return [(f"data.{key}", f"sizes that fit this machine's {_gib(have)} of memory; "
                 f"prepare keeps {total:,} images of {size}x{size} pixels (data.n_train + "
                 f"n_dev + n_test) and composes up to {getattr(data, largest):,} on a "
                 f"{canvas}x{canvas} canvas: at least {_gib(images)}", getattr(data, key))]
    return []
