"""Where the computation runs, seeds, threads, and quiet notebook outputs: one ``setup()`` call.

The device is chosen automatically: CUDA if present (bfloat16 when the GPU supports it),
then Apple's MPS, then the CPU (float32). ``FTLAB_DEVICE=cpu`` (or ``cuda``, ``cuda:1``,
``mps``) overrides the choice; ``FTLAB_THREADS`` sets the number of CPU threads.

The lab's own small models always train and run in float32 (they are cheap, and float32
keeps them bit-for-bit reproducible); the dtype printed by :func:`setup` is the one used
for a real model loaded with ``FTLAB_MODEL``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import warnings
from dataclasses import dataclass

from .errors import FtlabError, short_traceback

__all__ = ["DeviceInfo", "default_threads", "setup", "get_device", "get_dtype", "set_seed", "quiet", "device_info"]

_printed = False


@dataclass(frozen=True)
class DeviceInfo:
    """What :func:`setup` chose. Introduced in notebooks/first-look.ipynb."""

    device: str  # "cuda", "cuda:1", "mps" or "cpu"
    dtype: str  # "bfloat16" or "float32": the dtype for real models
    threads: int  # CPU threads used by torch
    seed: int  # the seed given to random, numpy and torch

    def __str__(self) -> str:
        return f"ftlab: device {self.device}, {self.dtype}, {self.threads} thread{'s' * (self.threads != 1)}"


@short_traceback
def get_device():
    """The torch device for this session: ``$FTLAB_DEVICE``, else CUDA, MPS, CPU in that order.

    Introduced in notebooks/first-look.ipynb.
    """
    import torch

    wanted = (os.environ.get("FTLAB_DEVICE") or "").strip().lower()
    if wanted:
        if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", wanted):
            raise FtlabError(f"FTLAB_DEVICE={wanted!r} is not a device: use cpu, cuda, cuda:N or mps, or unset it.")
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise FtlabError(f"FTLAB_DEVICE={wanted!r} but torch sees no CUDA GPU: unset FTLAB_DEVICE or use cpu.")
        if wanted == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise FtlabError("FTLAB_DEVICE='mps' but MPS is not available: unset FTLAB_DEVICE or use cpu.")
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_dtype():
    """bfloat16 on a CUDA GPU that supports it, float32 elsewhere (dtype for real models).

    Introduced in notebooks/first-look.ipynb.
    """
    import torch

    dev = get_device()
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def set_seed(seed: int = 0) -> None:
    """Seed Python's random, numpy (if installed) and torch (CPU and GPUs).

    Introduced in notebooks/first-look.ipynb.
    """
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)  # also seeds CUDA and MPS


class _DropMessages(logging.Filter):
    """A logging filter that drops records whose message contains one of the given texts."""

    def __init__(self, *texts: str):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(t in msg for t in self.texts)


#: Known harmless messages, by logger name (DESIGN pitfall 7).
_LOG_FILTERS = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    "bitsandbytes.autograd._functions": ("inputs will be cast from",),
}

#: Known harmless warnings (regex on the message; DESIGN pitfalls 7, 8).
_WARNING_FILTERS = (
    r"torch\.ao\.quantization is deprecated",  # pitfall 8: quantize_dynamic still works
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor",  # same, at run time
    r"MatMul8bitLt: inputs will be cast",  # pitfall 7
    r".*Kernel is running over TCP.*",
    r"`gradient_checkpointing` is deprecated",  # transformers 5 renames it; pitfall 4 sets it off
    r"`is_gradient_checkpointing` is deprecated",  # peft 0.21 still calls the old name
)


def quiet() -> None:
    """Silence progress bars and known harmless warnings, so notebook outputs stay readable.

    Progress bars of transformers, datasets and huggingface_hub are turned off (DESIGN
    pitfall 11; pass ``disable_tqdm=True`` to Trainer configs as well); the bitsandbytes
    kernel message at import and its 8-bit cast warnings (pitfall 7) and the
    ``torch.ao.quantization`` deprecation warning (pitfall 8) are filtered. Real errors
    and other warnings still show. Called by :func:`setup`.
    Introduced in notebooks/first-look.ipynb.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name, texts in _LOG_FILTERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(*texts))
    for pattern in _WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=pattern)
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()  # "Map: 100%" and cache notices
    except ImportError:  # pragma: no cover
        pass


def device_info(seed: int = 0) -> DeviceInfo:
    """The current device, dtype and thread count, as a :class:`DeviceInfo`.

    Introduced in notebooks/first-look.ipynb.
    """
    import torch

    return DeviceInfo(str(get_device()), str(get_dtype()).replace("torch.", ""), torch.get_num_threads(), seed)


def default_threads() -> int:
    """Torch's CPU threads when nothing says otherwise: all cores but one, at least one.

    Measured on 2 cores (README, Performance): torch's OpenMP threads wait for each other,
    so a job on 2 threads ran 2.6 to 10 times slower as soon as one other process wanted a
    core (a browser, a build, a CI neighbour), while a job on 1 thread did not slow down,
    at a cost of 1.2 to 1.6 times quiet. Leaving one core free keeps that robustness on any
    machine. Introduced in notebooks/first-look.ipynb.
    """
    return max(1, (os.cpu_count() or 1) - 1)


@short_traceback
def setup(seed: int = 0, threads: int | None = None, verbose: bool = True, lab_only: str | None = None) -> DeviceInfo:
    """The first call of every notebook: pick the device, set seeds and threads, quiet the noise.

    ``threads`` defaults to ``$FTLAB_THREADS``, else :func:`default_threads` (one core left
    free). Prints one line
    such as ``ftlab: device cpu, float32, 2 threads`` (once per session) and returns it
    as a :class:`DeviceInfo`.

    ``lab_only`` is for the notebooks that study the lab's own models (pretraining them,
    distilling them): it says why, e.g. ``"it pretrains the lab's own model"``. With
    ``FTLAB_MODEL`` set, such a notebook prints one line saying that it runs on the lab model
    and why, and unsets ``FTLAB_MODEL`` for the rest of the session.
    Introduced in notebooks/first-look.ipynb.
    """
    global _printed
    import torch

    quiet()
    if threads is None:
        env = os.environ.get("FTLAB_THREADS")
        threads = int(env) if env else default_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(max(1, int(threads)))
    set_seed(seed)
    info = device_info(seed)
    if verbose and not _printed:
        print(info)
        _printed = True
    if lab_only and os.environ.get("FTLAB_MODEL"):
        print(f"ftlab: this notebook runs on the lab model, not on FTLAB_MODEL={os.environ['FTLAB_MODEL']}: {lab_only}.")
        del os.environ["FTLAB_MODEL"]
    return info
