"""A disk cache for trained models and tokenizers, outside the source tree.

Every entry is a folder ``<cache>/<name>-<hash>/`` where ``<hash>`` is a fingerprint of
everything that determines its content: the caller's key (model config, data, training
recipe...) plus the versions of torch, transformers, tokenizers and of ftlab's data. Change
any of them and a new entry is trained; change nothing and the entry loads in a fraction
of a second.

* ``<cache>`` is ``~/.cache/ftlab`` unless the environment variable ``FTLAB_CACHE`` says
  otherwise (tests point it at a temporary folder).
* Writes are atomic: an entry is built in a temporary folder next to it and renamed into
  place only when complete (its ``ftlab.json`` is written last), so a build killed half
  way never leaves a half entry behind.
* A model folder is a normal ``save_pretrained`` folder (with its tokenizer), so it can be
  loaded with ``from_pretrained`` or even used as ``FTLAB_MODEL``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import FtlabError, short_traceback

__all__ = [
    "CACHE_FORMAT",
    "Checkpoint",
    "cache_dir",
    "library_versions",
    "fingerprint",
    "cached_dir",
    "cached_model",
    "load_checkpoint",
]

#: Bump when the layout of a cache entry or the training code changes meaning.
CACHE_FORMAT = "1"

_META = "ftlab.json"  # written last: an entry without it is not an entry


def cache_dir() -> Path:
    """The cache folder: ``$FTLAB_CACHE`` if set, else ``~/.cache/ftlab`` (created if needed).

    Introduced in notebooks/pretraining.ipynb.
    """
    root = os.environ.get("FTLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ftlab")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def library_versions() -> dict[str, str]:
    """The versions that change what training produces: torch, transformers, tokenizers,
    ftlab's data and cache format. Part of every cache key. Introduced in notebooks/pretraining.ipynb."""
    import tokenizers
    import torch
    import transformers

    from .data import DATA_VERSION

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "ftlab_data": DATA_VERSION,
        "ftlab_cache": CACHE_FORMAT,
    }


def fingerprint(obj: Any) -> str:
    """A short, stable hash (16 hex digits) of a JSON-able object: same input, same hash.

    Dict keys are sorted, so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` hash the same.
    Introduced in notebooks/pretraining.ipynb.
    """
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@contextlib.contextmanager
def _lock(path: Path):
    """Hold an exclusive lock on ``path`` (POSIX only; elsewhere a no-op) so that two
    processes that miss the same entry train it once, not twice."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic rename still keeps the cache consistent
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _no_progress_bars():
    """Hide transformers' progress bars (e.g. "Writing model shards") for the duration."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _clean_stale_tmp(root: Path, max_age_s: float = 3600.0) -> None:
    """Remove temporary folders left by builds that were killed more than an hour ago."""
    now = time.time()
    for p in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)


@short_traceback
def cached_dir(name: str, key: dict, build: Callable[[Path], dict | None]) -> tuple[Path, dict, bool]:
    """Return the cache folder for ``(name, key)``, building it with ``build(tmp_dir)`` on a miss.

    ``build`` writes files into the folder it is given and may return a dict of extra
    metadata to store in ``ftlab.json``. The folder is renamed into place only once
    ``build`` has returned, so a killed build leaves no half entry. Returns
    ``(path, metadata, hit)``. The building block of :func:`cached_model` and of the
    tokenizer cache; introduced in notebooks/pretraining.ipynb.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise FtlabError(f"Cache entry name {name!r} must be letters, digits, '-', '_' or '.'.")
    full_key = {"name": name, "key": key, "versions": library_versions()}
    digest = fingerprint(full_key)
    root = cache_dir()
    final = root / f"{name}-{digest}"
    meta_path = final / _META
    if meta_path.exists():
        return final, json.loads(meta_path.read_text(encoding="utf-8")), True
    with _lock(root / f".lock-{name}-{digest}"):
        if meta_path.exists():  # another process built it while we waited
            return final, json.loads(meta_path.read_text(encoding="utf-8")), True
        _clean_stale_tmp(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
        try:
            extra = build(tmp) or {}
            meta = {"name": name, "hash": digest, "key": full_key, "created": time.time(), **extra}
            (tmp / _META).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
            if final.exists() and not meta_path.exists():  # a folder without ftlab.json is no entry
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not meta_path.exists():
                    raise
                # Another process (without file locks) finished the same entry first: use it.
                shutil.rmtree(tmp, ignore_errors=True)
                return final, json.loads(meta_path.read_text(encoding="utf-8")), True
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, meta, False


@dataclass
class Checkpoint:
    """A model from the cache, with what is known about its training.

    Introduced in notebooks/pretraining.ipynb.
    """

    name: str  # the cache entry name, e.g. "base-small"
    path: Path  # the save_pretrained folder in the cache
    model: Any  # the model, on ftlab's device, in eval mode
    tokenizer: Any = None  # the tokenizer saved with it (None if none was saved)
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) during training
    train_seconds: float = 0.0  # how long training took when the entry was built
    from_cache: bool = False  # True if loaded from disk, False if trained just now
    load_seconds: float = 0.0  # how long this call took to load (or train) it
    extra: dict = field(default_factory=dict)  # what train_fn returned besides model and history
    info: dict = field(default_factory=dict)  # everything stored in ftlab.json

    @property
    def hash(self) -> str:
        """The fingerprint of this checkpoint's cache key: put it in the key of any model
        trained from this one, e.g. ``{"base": base.hash, ...}``."""
        return str(self.info.get("hash", ""))

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters()) if self.model is not None else 0
        how = "loaded from cache" if self.from_cache else f"trained in {self.train_seconds:.1f} s"
        return f"Checkpoint({self.name!r}, {n:,} parameters, {how}, {len(self.history)} loss points, path={str(self.path)!r})"


def _to_history(raw) -> list[tuple[int, float]]:
    return [(int(s), float(v)) for s, v in (raw or [])]


def load_checkpoint(path: str | os.PathLike, device=None) -> Checkpoint:
    """Load a cache entry (or any folder written by :func:`cached_model`) as a Checkpoint.

    Introduced in notebooks/pretraining.ipynb.
    """
    import transformers

    from .device import get_device

    t0 = time.perf_counter()
    path = Path(path)
    meta = json.loads((path / _META).read_text(encoding="utf-8"))
    cls = getattr(transformers, meta.get("model_class", "AutoModelForCausalLM"))
    with _no_progress_bars():
        model = cls.from_pretrained(path, use_safetensors=True)
    model.to(device or get_device()).eval()
    tok = None
    if (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists():
        from .tokenizer import load_tokenizer_folder

        tok = load_tokenizer_folder(path)
    return Checkpoint(
        name=meta.get("name", path.name),
        path=path,
        model=model,
        tokenizer=tok,
        history=_to_history(meta.get("history")),
        train_seconds=float(meta.get("train_seconds", 0.0)),
        from_cache=True,
        load_seconds=time.perf_counter() - t0,
        extra=meta.get("extra", {}),
        info=meta,
    )


@short_traceback
def cached_model(name: str, key: dict, train_fn: Callable[[], Any], tokenizer=None) -> Checkpoint:
    """Train a model once, then load it from the disk cache on every later call.

    ``key`` is a JSON-able dict of everything that determines the result (for a fine-tuned
    model: the base checkpoint's ``.hash``, the data, steps, learning rate...); the
    library versions and ``FTLAB_MODEL`` are added to it automatically. ``train_fn()``
    returns the trained model, or ``(model, history)`` with ``history`` a list of
    ``(step, loss)``, or ``(model, history, extra)`` with ``extra`` a JSON-able dict of
    anything else worth keeping (e.g. accuracies measured during training). The model must be a transformers model (merge a LoRA adapter with
    ``merge_and_unload()`` first). ``tokenizer`` is saved with it if given.

    Example (the SFT notebook)::

        ckpt = ftlab.cached_model("sft", {"base": base.hash, "steps": 150},
                                  lambda: train_sft(base.model, tok), tokenizer=tok)

    Introduced in notebooks/pretraining.ipynb.
    """
    t0 = time.perf_counter()
    full_key = {**key, "ftlab_model": os.environ.get("FTLAB_MODEL") or None}
    trained: dict[str, Any] = {}

    def build(tmp: Path) -> dict:
        t_train = time.perf_counter()
        result = train_fn()
        model, history, extra = (tuple(result) + ([], {}))[:3] if isinstance(result, tuple) else (result, [], {})
        seconds = time.perf_counter() - t_train
        if type(model).__module__.startswith("peft"):
            raise FtlabError(
                f"cached_model({name!r}): train_fn returned a peft model; merge the adapter "
                "first (model = model.merge_and_unload()) so the checkpoint is a plain transformers model."
            )
        with _no_progress_bars():
            model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        trained.update(model=model, history=_to_history(history), seconds=seconds, extra=json.loads(json.dumps(extra)))
        return {
            "model_class": type(model).__name__,
            "history": trained["history"],
            "train_seconds": round(seconds, 3),
            "extra": trained["extra"],
        }

    path, meta, hit = cached_dir(name, full_key, build)
    if hit:
        return load_checkpoint(path)
    model = trained["model"]
    model.eval()
    return Checkpoint(
        name=name,
        path=path,
        model=model,
        tokenizer=tokenizer,
        history=trained["history"],
        train_seconds=trained["seconds"],
        from_cache=False,
        extra=trained["extra"],
        load_seconds=time.perf_counter() - t0,
        info=meta,
    )
