"""Quantization: storing weights with fewer bits, and what it costs in accuracy.

* :func:`number_formats` - range and precision of fp32, fp16, bf16, int8, int4 and NF4;
* :func:`absmax_quantize` / :func:`zeropoint_quantize` and :func:`dequantize` - the two
  classic schemes written by hand, per tensor or per row; :func:`roundtrip_error`;
* :func:`quantize_dynamic_int8` - PyTorch's dynamic int8 quantization of the linear layers;
* :func:`load_quantized` - the same checkpoint loaded by bitsandbytes in 8 bits or 4-bit NF4;
* :func:`model_bytes` and :func:`forward_seconds` - size in memory and speed, measured;
* :class:`LlamaShape`, :func:`finetune_memory` - the memory needed to fine-tune a large
  model with full fine-tuning, LoRA or QLoRA, computed from the formulas of the chapter.

Introduced in notebooks/quantization.ipynb.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass

from .errors import FtlabError, short_traceback

__all__ = [
    "number_formats",
    "nf4_levels",
    "absmax_quantize",
    "zeropoint_quantize",
    "dequantize",
    "roundtrip_error",
    "quantize_dynamic_int8",
    "load_quantized",
    "model_bytes",
    "forward_seconds",
    "LlamaShape",
    "LLAMA_SHAPES",
    "BYTES_PER_PARAM",
    "finetune_memory",
]


def nf4_levels():
    """The 16 values of the NF4 (4-bit NormalFloat) code, between -1 and 1, as bitsandbytes
    defines them: quantiles of a normal distribution, so that normally distributed weights
    use every level about equally often. Introduced in notebooks/quantization.ipynb.
    """
    import bitsandbytes.functional as bnbf

    return bnbf.get_4bit_type("nf4", device="cpu").float()


def number_formats():
    """One row per number format: bits, largest value, smallest positive normal value, and
    the relative step between 1 and the next value (the precision).

    Float rows come from ``torch.finfo``; int8 and int4 are symmetric integer codes
    (-127..127, -7..7) as absmax quantization uses them; NF4 has 16 fixed levels in [-1, 1]
    scaled by each block's absmax. Returns a DataFrame. Introduced in notebooks/quantization.ipynb.
    """
    import pandas as pd
    import torch

    rows = []
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        info = torch.finfo(dtype)
        rows.append({"format": name, "bits": info.bits, "values": 2.0**info.bits, "max": float(info.max),
                     "smallest_normal": float(info.smallest_normal), "step_at_1": float(info.eps)})
    for name, bits in (("int8", 8), ("int4", 4)):
        top = 2 ** (bits - 1) - 1
        rows.append({"format": name, "bits": bits, "values": 2.0**bits, "max": float(top),
                     "smallest_normal": 1.0, "step_at_1": 1.0 / top})
    levels = nf4_levels()
    rows.append({"format": "nf4", "bits": 4, "values": 16.0, "max": 1.0, "smallest_normal": float(levels[levels > 0].min()),
                 "step_at_1": float(1.0 - levels[-2])})
    return pd.DataFrame(rows)


def _scale_shape(x, dim):
    """Reduce |x| over everything (dim None) or keep one value per index of ``dim`` (per row: dim=0)."""
    if dim is None:
        return x.abs().max(), x.min(), x.max()
    other = tuple(d for d in range(x.dim()) if d != dim)
    return x.abs().amax(dim=other, keepdim=True), x.amin(dim=other, keepdim=True), x.amax(dim=other, keepdim=True)


def absmax_quantize(x, bits: int = 8, per_row: bool = False):
    """Symmetric (absmax) quantization: ``q = round(x / s)`` with ``s = max|x| / (2**(bits-1) - 1)``.

    The largest magnitude maps to ±127 in int8 (±7 in int4); zero stays exactly zero.
    ``per_row=True`` uses one scale per row of a matrix (per output neuron) instead of one
    for the whole tensor. Returns ``(q, scale, zero)`` with ``zero = 0``, for
    :func:`dequantize`. Introduced in notebooks/quantization.ipynb.
    """
    import torch

    top = 2 ** (bits - 1) - 1
    absmax, _, _ = _scale_shape(x, 0 if per_row else None)
    scale = absmax.clamp(min=1e-12) / top
    q = torch.round(x / scale).clamp(-top, top).to(torch.int8)
    return q, scale, torch.zeros_like(scale)


def zeropoint_quantize(x, bits: int = 8, per_row: bool = False):
    """Asymmetric (zero-point) quantization: the range [min, max] is mapped onto the
    ``2**bits`` integers ``[-2**(bits-1), 2**(bits-1) - 1]``.

    ``s = (max - min) / (2**bits - 1)``, ``z = round(-min / s) - 2**(bits-1)`` and
    ``q = round(x / s) + z``. It uses every code even when the values are not centred on 0.
    Returns ``(q, scale, zero)`` for :func:`dequantize`. Introduced in notebooks/quantization.ipynb.
    """
    import torch

    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    _, xmin, xmax = _scale_shape(x, 0 if per_row else None)
    scale = (xmax - xmin).clamp(min=1e-12) / (2**bits - 1)
    zero = torch.round(-xmin / scale) + low
    q = (torch.round(x / scale) + zero).clamp(low, high).to(torch.int8)
    return q, scale, zero


def dequantize(q, scale, zero):
    """Back to floats: ``x_hat = s * (q - z)``. Introduced in notebooks/quantization.ipynb."""
    return scale * (q.float() - zero)


def roundtrip_error(x, method: str = "absmax", bits: int = 8, per_row: bool = False) -> float:
    """Relative error of a quantize-dequantize round trip: ``||x - x_hat|| / ||x||``.

    ``method`` is ``"absmax"`` or ``"zeropoint"``. Introduced in notebooks/quantization.ipynb.
    """
    quantize = {"absmax": absmax_quantize, "zeropoint": zeropoint_quantize}.get(method)
    if quantize is None:
        raise FtlabError(f"unknown quantization method {method!r}: use 'absmax' or 'zeropoint'")
    x = x.detach().float()
    x_hat = dequantize(*quantize(x, bits, per_row))
    return float((x - x_hat).norm() / x.norm())


def quantize_dynamic_int8(model):
    """A copy of ``model`` whose ``nn.Linear`` layers are quantized to int8 by PyTorch's
    dynamic quantization (weights int8 with one scale per tensor; activations quantized on
    the fly at each call). CPU only. Introduced in notebooks/quantization.ipynb.
    """
    import copy

    import torch

    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().float(), {torch.nn.Linear},
                                                  dtype=torch.qint8)


@short_traceback
def load_quantized(model, kind: str = "nf4"):
    """``model`` saved and loaded again by bitsandbytes: ``kind`` is ``"int8"`` (LLM.int8())
    or ``"nf4"`` (4-bit NormalFloat with double quantization, as QLoRA uses it).

    The linear layers of the transformer blocks become bitsandbytes layers; the embeddings
    and norms stay in full precision. On a CPU the 4-bit layers compute in float32; on a GPU
    in bf16 when it is supported. Returns a new transformers model. Introduced in
    notebooks/quantization.ipynb.

    One bitsandbytes 0.50 behaviour is turned off: on CPUs with AVX512-BF16, the first
    forward pass in eval mode without gradients repacks the 4-bit weights into a CPU layout
    for faster inference, and the backward pass through repacked weights is wrong (PyTorch
    warns "an autograd kernel was not registered"). QLoRA evaluates during training, so a
    held-out evaluation would silently spoil the rest of the training.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from .device import get_device, get_dtype

    if kind == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    elif kind == "nf4":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=get_dtype() if get_device().type == "cuda" else torch.float32)
    else:
        raise FtlabError(f"unknown kind {kind!r}: use 'int8' or 'nf4'")
    device = get_device()
    with tempfile.TemporaryDirectory(prefix="ftlab-quant-") as folder:
        model.save_pretrained(folder)
        quantized = AutoModelForCausalLM.from_pretrained(folder, quantization_config=config,
                                                         device_map={"": "cuda:0" if device.type == "cuda" else "cpu"})
    for module in quantized.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False  # no CPU repacking: see above
    return quantized


def model_bytes(model) -> int:
    """Bytes the model's weights take, measured by serialising its ``state_dict`` in memory
    (works for float, PyTorch-quantized and bitsandbytes models alike; tied weights counted
    once). Introduced in notebooks/quantization.ipynb.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def forward_seconds(model, tok, texts, repeats: int = 5) -> float:
    """Median time of one forward pass over ``texts`` (one padded batch), in seconds.

    One untimed call warms up first. Introduced in notebooks/quantization.ipynb.
    """
    import statistics

    import torch

    device = next(model.parameters()).device
    enc = tok(list(texts), return_tensors="pt", padding=True).to(device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            model(**enc)
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class LlamaShape:
    """The shape of a Llama-style model, enough to count its parameters by formula.

    Introduced in notebooks/quantization.ipynb.
    """

    name: str  # a label for tables
    hidden: int  # width of the token vectors
    intermediate: int  # width of the MLP
    layers: int  # number of transformer blocks
    kv_dim: int  # width of the keys and values (smaller than hidden with grouped-query attention)
    vocab: int  # vocabulary size
    tied: bool = False  # True when the output layer reuses the input embeddings (SmolLM2, Qwen2.5, Llama 3.2)

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of the seven linear layers of one block: q, k, v, o, gate, up, down."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]

    def parameters(self) -> int:
        """All the weights: the blocks' linear layers and two norms, the embeddings, the output
        layer (unless tied to the embeddings), the final norm. Biases, which some models add to
        q, k and v, are left out."""
        block = sum(a * b for a, b in self.linears()) + 2 * self.hidden
        return self.layers * block + (1 if self.tied else 2) * self.vocab * self.hidden + self.hidden

    def lora_parameters(self, r: int) -> int:
        """LoRA parameters with rank ``r`` on every linear layer of every block: ``r * (in + out)`` each."""
        return self.layers * sum(r * (a + b) for a, b in self.linears())


#: Published shapes of Llama 2 7B and 70B (from their config.json files).
LLAMA_SHAPES = {
    "7B": LlamaShape("Llama 2 7B", hidden=4096, intermediate=11008, layers=32, kv_dim=4096, vocab=32000),
    "70B": LlamaShape("Llama 2 70B", hidden=8192, intermediate=28672, layers=80, kv_dim=1024, vocab=32000),
}

#: Bytes per parameter in the memory formulas of the quantization chapter.
BYTES_PER_PARAM = {
    "bf16": 2.0,  # a weight or gradient in bf16/fp16
    "fp32": 4.0,  # a weight in fp32 (the master copy of mixed-precision training)
    "adam": 8.0,  # AdamW's two moments, in fp32
    "nf4": 0.5 + (8 / 64 + 32 / (64 * 256)) / 8,  # 4 bits + double-quantized block constants (0.127 bit)
}


def finetune_memory(shape: LlamaShape, method: str, r: int = 16) -> dict[str, float]:
    """GB (10**9 bytes) needed to fine-tune ``shape`` with ``method``: ``"full"``, ``"lora"``
    or ``"qlora"``, split into weights, gradients and optimizer state. Activations are left
    out: they depend on batch size and sequence length.

    * full: bf16 weights + fp32 master copy + bf16 gradients + AdamW moments = 16 bytes per
      parameter;
    * lora: frozen bf16 weights (2 bytes), and 16 bytes per LoRA parameter (rank ``r`` on
      every linear layer);
    * qlora: frozen NF4 weights (about 0.516 byte), and the same LoRA parameters.

    Introduced in notebooks/quantization.ipynb.
    """
    b = BYTES_PER_PARAM
    n, n_lora = shape.parameters(), shape.lora_parameters(r)
    if method == "full":
        parts = {"weights": n * (b["bf16"] + b["fp32"]), "gradients": n * b["bf16"], "optimizer": n * b["adam"]}
    elif method in ("lora", "qlora"):
        frozen = n * (b["bf16"] if method == "lora" else b["nf4"])
        parts = {"weights": frozen + n_lora * (b["bf16"] + b["fp32"]), "gradients": n_lora * b["bf16"],
                 "optimizer": n_lora * b["adam"]}
    else:
        raise FtlabError(f"unknown method {method!r}: use 'full', 'lora' or 'qlora'")
    gb = {k: v / 1e9 for k, v in parts.items()}
    gb["total"] = sum(gb.values())
    return gb
