"""One switch to a real model: ``FTLAB_MODEL=<hub id or local folder>``.

With the environment variable set, :func:`ftlab.get_tokenizer` and
:func:`ftlab.get_base_model` load that model and its tokenizer with ``from_pretrained``
(safetensors only, no remote code) instead of the lab's own tiny model. Missing chat
tokens are added (and the embeddings resized); a tokenizer without a chat template gets
the lab's one. Example::

    FTLAB_MODEL=HuggingFaceTB/SmolLM2-135M make html      # a hub id (needs network or HF cache)
    FTLAB_MODEL=~/models/qwen2.5-0.5b make html            # a local save_pretrained folder

Hub ids work when the files are in the local Hugging Face cache or the network is
reachable; ftlab does not force offline mode. Anything else gives one clear
:class:`ftlab.FtlabError`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .errors import FtlabError, short_traceback

__all__ = ["real_model_id", "load_real_tokenizer", "load_real_model"]

_HELP = (
    "Unset FTLAB_MODEL to use the lab's own model, or set it to a local folder written by "
    "save_pretrained (config.json, *.safetensors, tokenizer files) or to a Hugging Face model id "
    "that is in your local HF cache or reachable over the network."
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


@lru_cache(maxsize=4)
def _load_tokenizer_cached(model_id: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, model_id, "tokenizer", trust_remote_code=False)


@short_traceback
def load_real_tokenizer(model_id: str):
    """The tokenizer of a real model, with the lab's chat tokens and template added when missing.

    Introduced in notebooks/chat-templates.ipynb.
    """
    import copy

    from .tokenizer import add_chat_tokens

    tok = copy.deepcopy(_load_tokenizer_cached(model_id))
    add_chat_tokens(tok)
    return tok


@short_traceback
def load_real_model(model_id: str):
    """Load ``(model, tokenizer)`` of a real model on ftlab's device and dtype.

    ``use_safetensors=True`` and ``trust_remote_code=False``: only plain weights and
    architectures that transformers knows are loaded. When the tokenizer got new chat
    tokens, the embeddings are resized to ``len(tokenizer)``. Introduced in
    notebooks/pretraining.ipynb.
    """
    from transformers import AutoModelForCausalLM

    from .device import get_device, get_dtype

    tok = load_real_tokenizer(model_id)
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, model_id, "model", use_safetensors=True,
                             trust_remote_code=False, dtype=get_dtype())
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model.to(get_device()).eval(), tok
