"""Child `env`: Python, torch, CUDA and the GPU as this process sees them."""

from __future__ import annotations

from benchmarks.gpu_probes import run_child


def child_env(device: str) -> dict:
    import platform

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
           "platform": platform.platform()}
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                   gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count,
                   cudnn=torch.backends.cudnn.version())
    return out


if __name__ == "__main__":
    run_child(child_env)
