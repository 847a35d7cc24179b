"""Ship it and scale it: the fine-tuned model leaves the notebook.

Introduced in notebooks/ship.ipynb (the adapter cache also serves notebooks/real-model.ipynb):

* :func:`cached_adapter` trains a LoRA adapter once and loads it from the model cache after
  (peft ``save_pretrained``: only the adapter, a few MB), and :func:`dfmea_lora` is the
  case study's DFMEA adapter of the real model;
* :func:`merge_and_save` folds the adapter into the base and writes a plain model folder;
* :func:`export_gguf` writes that folder as one GGUF file with llama.cpp's own converter;
* :class:`LocalServer` runs ``transformers serve`` on 127.0.0.1 and always stops it, and
  :func:`only_localhost` makes any connection to another machine fail in this process;
* :func:`deepspeed_memory` says what a fine-tune needs per GPU under DDP, ZeRO-2 or ZeRO-3;
  the multi-process training script itself is :mod:`ftlab.scale`.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import FtlabError, short_traceback

__all__ = ["DFMEA_LORA_RECIPE", "DFMEA_LORA_SETTINGS", "base_identity", "cached_adapter", "dfmea_lora",
           "merge_and_save", "llama_cpp_converter", "export_gguf", "LocalServer", "only_localhost",
           "latency_stats", "deepspeed_memory", "gpus_needed", "load_gguf", "LARGE_SHAPES"]


def _recipes():
    from .lora import LoRASettings
    from .sft import SFTRecipe

    return SFTRecipe(steps=20, batch_size=6, lr=2e-3, eval_every=5), LoRASettings(r=8, alpha=16)


#: The DFMEA LoRA of notebooks/real-model.ipynb: the recipe and the LoRA settings it trains with.
DFMEA_LORA_RECIPE, DFMEA_LORA_SETTINGS = _recipes()


def base_identity(model) -> dict:
    """What identifies a base model's weights, for a cache key: the folder or hub id it was
    loaded from, its configuration, and a checksum of every weight (a sum per tensor, in
    float64: a fraction of a second for 135M parameters). Introduced in notebooks/ship.ipynb."""
    import hashlib

    import torch

    from .cache import fingerprint

    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            h.update(f"{name}:{tuple(p.shape)}:{p.double().sum().item():.10e}".encode())
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    return {"source": str(getattr(model.config, "_name_or_path", "")), "config": fingerprint(config),
            "weights": h.hexdigest()[:16], "ftlab_model": os.environ.get("FTLAB_MODEL") or None}


@short_traceback
def cached_adapter(name: str, model, tok, fine_tune, recipe, settings):
    """``fine_tune(model) -> (peft_model, history)`` run once, then loaded from the cache.

    The key holds the base model's identity (:func:`base_identity`), the tokenizer, the
    recipe and the LoRA settings (dataclasses), the data of the DFMEA case study and the
    versions of peft and the libraries. The entry stores the adapter alone (peft
    ``save_pretrained``) and the training history. ``fine_tune`` must not modify ``model``
    (``add_lora`` copies it). Returns ``(peft_model, history)``: the peft model in eval mode, its
    adapter weights trainable as right after training.
    Introduced in notebooks/real-model.ipynb.
    """
    import peft

    from .cache import _no_progress_bars, cached_dir, fingerprint
    from .dfmea import dfmea_rows
    from .tokenizer import tokenizer_fingerprint

    data = fingerprint([asdict(r) for split in ("train", "heldout") for r in dfmea_rows(split)])
    key = {"base": base_identity(model), "tokenizer": tokenizer_fingerprint(tok), "recipe": asdict(recipe),
           "lora": asdict(settings), "data": data, "peft": peft.__version__}
    made = {}

    def build(tmp: Path) -> dict:
        tuned, history = fine_tune(model)
        with _no_progress_bars():
            tuned.save_pretrained(tmp / "adapter")
        made.update(tuned=tuned, history=history)
        return {"history": history}

    path, meta, hit = cached_dir(name, key, build)
    if not hit:
        made["tuned"].eval()
        return made["tuned"], made["history"]
    from peft import PeftModel

    with _no_progress_bars():
        tuned = PeftModel.from_pretrained(copy.deepcopy(model), path / "adapter", is_trainable=True)
    history = {k: ([tuple(x) for x in v] if isinstance(v, list) else v) for k, v in meta["history"].items()}
    return tuned.eval(), history


def dfmea_lora(model, tok):
    """The DFMEA LoRA adapter of notebooks/real-model.ipynb on ``model`` (the real model, or the
    one ``FTLAB_MODEL`` names), trained once with :data:`DFMEA_LORA_RECIPE` and
    :data:`DFMEA_LORA_SETTINGS`. Returns ``(peft_model, history)``. Introduced in notebooks/ship.ipynb."""
    from .dfmea import dfmea_dataset
    from .lora import add_lora
    from .sft import train_sft_loop

    recipe, settings = DFMEA_LORA_RECIPE, DFMEA_LORA_SETTINGS

    def fine_tune(model):
        tuned = add_lora(model, settings)
        return tuned, train_sft_loop(tuned, tok, dfmea_dataset("train"), dfmea_dataset("heldout"), recipe)

    return cached_adapter("dfmea-lora", model, tok, fine_tune, recipe, settings)


def merge_and_save(tuned, tok, folder) -> Path:
    """Fold the LoRA update into the weights (``W + (alpha/r) B A``, peft ``merge_and_unload``)
    of a copy of ``tuned`` and save the result with its tokenizer as safetensors: a plain model
    folder that any tool loads without peft. Introduced in notebooks/ship.ipynb."""
    from .cache import _no_progress_bars

    folder = Path(folder)
    merged = copy.deepcopy(tuned).merge_and_unload()
    with _no_progress_bars():
        merged.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
    return folder


def llama_cpp_converter() -> Path:
    """The folder that holds llama.cpp's ``convert_hf_to_gguf.py`` with its ``gguf-py`` and
    ``conversion`` packages: ``$FTLAB_LLAMA_CPP`` or ``<venv>/share/llama.cpp`` (``make setup``
    extracts them there from the llama-cpp-python source distribution). Introduced in notebooks/ship.ipynb."""
    folder = Path(os.environ.get("FTLAB_LLAMA_CPP") or Path(sys.prefix) / "share" / "llama.cpp")
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise FtlabError(f"llama.cpp's converter is not in {folder}. Run 'make setup' (it extracts it from the "
                         "llama-cpp-python source distribution), or set FTLAB_LLAMA_CPP to a llama.cpp checkout.")
    return folder


@short_traceback
def export_gguf(folder, outfile, outtype: str = "q8_0") -> Path:
    """Convert a ``save_pretrained`` folder into one GGUF file with llama.cpp's converter
    (``f32``, ``f16``, ``bf16`` or ``q8_0``: the types it writes without llama.cpp's C++ tools;
    4-bit types need ``llama-quantize``). Runs in a subprocess, on the converter's own
    ``gguf-py``, offline. Introduced in notebooks/ship.ipynb."""
    conv = llama_cpp_converter()
    outfile = Path(outfile)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_LOCAL_GGUF": ""}
    env.pop("NO_LOCAL_GGUF")
    proc = subprocess.run([sys.executable, str(conv / "convert_hf_to_gguf.py"), str(folder), "--outfile", str(outfile),
                           "--outtype", outtype], capture_output=True, text=True, env=env, cwd=conv)
    if proc.returncode != 0 or not outfile.is_file():
        raise FtlabError(f"convert_hf_to_gguf.py failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return outfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_RUNNING: set = set()


def _stop_all():
    for server in list(_RUNNING):
        server.stop()


atexit.register(_stop_all)


def _die_with_parent():  # runs in the child before exec: Linux sends it SIGTERM when its parent dies
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()  # its own process group, so that stop() ends it and nothing else


class LocalServer:
    """``transformers serve`` on 127.0.0.1, as a context manager that always stops it.

    The server runs in a child process (its own process group) with ``HF_HUB_OFFLINE=1``, on
    the CPU in float32, models never unloaded. It is stopped on leaving the ``with`` block,
    even after an error, at interpreter exit (``atexit``), and by the kernel if this process
    dies (Linux ``PR_SET_PDEATHSIG``). ``url`` is the OpenAI base URL. Models are named in
    requests by their local folder (or ``folder:file.gguf``). Introduced in notebooks/ship.ipynb.
    """

    def __init__(self, port: int | None = None, threads: int | None = None, startup_timeout: float = 120.0):
        self.port = port or _free_port()
        self.threads = threads or int(os.environ.get("FTLAB_THREADS") or 1)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalServer":
        import urllib.request

        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "OMP_NUM_THREADS": str(self.threads), "TOKENIZERS_PARALLELISM": "false"}
        code = (f"import torch; torch.set_num_threads({self.threads}); "
                "from transformers.cli.transformers import main; main()")
        cmd = [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--device", "cpu", "--dtype", "float32", "--model-timeout", "-1", "--log-level", "error"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=_die_with_parent if os.name == "posix" else None)
        _RUNNING.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-800:]
                self.stop()
                raise FtlabError(f"transformers serve exited with {self.proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise FtlabError(f"transformers serve did not answer on port {self.port} within {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 10 s."""
        proc, self.proc = self.proc, None
        _RUNNING.discard(self)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def only_localhost():
    """Inside this block, a connection from this process to any address other than the loopback
    (127.0.0.0/8, ::1) raises ``ConnectionRefusedError``: a guard that no request leaves the
    machine. Returns a list where the refused addresses are recorded. Introduced in notebooks/ship.ipynb."""
    import ipaddress

    refused: list = []
    original = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                refused.append(host)
                raise ConnectionRefusedError(f"only_localhost: a connection to {host} was blocked")
        return original(sock, address)

    socket.socket.connect = guarded
    try:
        yield refused
    finally:
        socket.socket.connect = original


def latency_stats(seconds, completion_tokens) -> dict:
    """p50 and p95 latency (s, nearest-rank), output tokens per second (all output tokens over all
    request time) from per-request measurements. Introduced in notebooks/ship.ipynb."""
    import math

    s = sorted(seconds)
    if not s:
        raise FtlabError("latency_stats: no request was measured")

    def rank(q):
        return s[max(0, math.ceil(q * len(s)) - 1)]

    return {"p50": rank(0.50), "p95": rank(0.95), "tokens_per_second": sum(completion_tokens) / sum(seconds),
            "requests": len(s)}


#: Shapes of two large models, from their config.json: Llama 2 7B and Llama 3 70B.
def _large_shapes():
    from .quant import LlamaShape

    return {"7B": LlamaShape("Llama 2 7B", 4096, 11008, 32, 4096, 32000),
            "70B": LlamaShape("Llama 3 70B", 8192, 28672, 80, 1024, 128256)}


LARGE_SHAPES = _large_shapes()


def deepspeed_memory(shape, method: str, strategy: str, gpus: int, r: int = 16) -> float:
    """GB per GPU for the weights, gradients and optimizer state of :func:`ftlab.finetune_memory`
    (activations excluded) when ``gpus`` GPUs train together with ``strategy``:

    * ``"ddp"``: every GPU holds everything (data parallelism only);
    * ``"zero2"`` (DeepSpeed ZeRO-2, FSDP ``SHARD_GRAD_OP``): the 16-bit weights are replicated,
      the gradients and the optimizer state (with the fp32 master weights) are split over the GPUs;
    * ``"zero3"`` (ZeRO-3, FSDP ``FULL_SHARD``): everything is split.

    Introduced in notebooks/ship.ipynb.
    """
    from .quant import finetune_memory

    m = finetune_memory(shape, method, r=r)
    n, n_lora = shape.parameters(), shape.lora_parameters(r)
    trained = n if method == "full" else n_lora
    frozen_16bit = m["weights"] - trained * 4 / 1e9  # weights minus the fp32 master copy of what is trained
    sharded = trained * 4 / 1e9 + m["gradients"] + m["optimizer"]
    if strategy == "ddp":
        return m["total"]
    if strategy == "zero2":
        return frozen_16bit + sharded / gpus
    if strategy == "zero3":
        return m["total"] / gpus
    raise FtlabError(f"unknown strategy {strategy!r}: use 'ddp', 'zero2' or 'zero3'")


def gpus_needed(shape, method: str, strategy: str, gpu_gb: float = 80.0, headroom: float = 0.8,
                counts=(1, 2, 4, 8, 16, 32, 64, 128)) -> int | None:
    """The fewest GPUs of ``gpu_gb`` GB (among ``counts``) on which :func:`deepspeed_memory` fits in
    ``headroom`` of each GPU (the rest is left for activations, a rule of thumb), or None.
    Introduced in notebooks/ship.ipynb."""
    for g in counts:
        if deepspeed_memory(shape, method, strategy, g) <= headroom * gpu_gb:
            return g
    return None


@short_traceback
def load_gguf(path, dtype=None):
    """Load a GGUF file as a transformers model (dequantized, float32 by default), without the
    per-tensor progress bar transformers prints. Introduced in notebooks/ship.ipynb."""
    import functools

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM

    from .cache import _no_progress_bars

    path = Path(path)
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        with _no_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype or torch.float32)
    finally:
        gguf_utils.tqdm = bar
    return model.eval()
