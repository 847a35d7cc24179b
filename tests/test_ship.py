"""Shipping and scaling (docs/ship.rst, ftlab/ship.py, ftlab/scale.py).

Guards what the chapter says: the merged model gives the adapter model's logits; the
adapter is trained once and then loaded from the cache, and another recipe trains another;
llama.cpp's converter writes a GGUF file that transformers reads back with the same logits;
the local server answers a chat request in the model's template, answers a bad request with
an error and keeps serving, and never outlives its block or its parent; the two-process run
gives the one-process losses; connections to other machines are refused. The models are tiny
(a random two-layer Llama with SmolLM2's tokenizer) so that the tests take seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import psutil
import pytest
import torch

import ftlab
from ftlab import ship
from ftlab.lora import LoRASettings, add_lora, max_logit_difference
from ftlab.sft import SFTRecipe, train_sft_loop

TEXTS = ["DFMEA of the fuel pump", "What is the capital of France?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random two-layer Llama with SmolLM2's tokenizer and chat template, saved in a folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    ftlab.setup(verbose=False)
    tok = ftlab.real.load_real_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok, folder


def _fine_tune(tok, steps=3, lr=5e-2):
    def fine_tune(model):
        tuned = add_lora(model, LoRASettings(r=4, alpha=8))
        recipe = SFTRecipe(steps=steps, batch_size=2, lr=lr, eval_every=steps)
        return tuned, train_sft_loop(tuned, tok, ftlab.dfmea.dfmea_dataset("train"), None, recipe)
    return fine_tune


# -- Merge and the adapter cache ---------------------------------------------------------------


def test_merged_model_gives_the_adapter_models_logits(tiny, tmp_path):
    model, tok, _ = tiny
    tuned, _ = _fine_tune(tok)(model)
    tuned.eval()
    assert max_logit_difference(tuned, model, tok, TEXTS) > 1e-2, "the adapter must have moved for the test to mean anything"
    folder = ship.merge_and_save(tuned, tok, tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert max_logit_difference(tuned, merged, tok, TEXTS) < 1e-4
    assert any(p.requires_grad is False for p in tuned.parameters())  # merge worked on a copy: tuned is intact
    assert hasattr(tuned, "peft_config")


def test_adapter_is_trained_once_then_loaded(tiny, tmp_path, monkeypatch):
    model, tok, _ = tiny
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    recipe, settings = SFTRecipe(steps=3, batch_size=2, lr=5e-2), LoRASettings(r=4, alpha=8)

    def fine_tune(m):
        calls.append(1)
        return _fine_tune(tok)(m)

    first, history = ship.cached_adapter("t-adapter", model, tok, fine_tune, recipe, settings)
    again, history2 = ship.cached_adapter("t-adapter", model, tok, fine_tune, recipe, settings)
    assert len(calls) == 1 and history2["train"] == history["train"]
    assert max_logit_difference(first, again, tok, TEXTS) < 1e-5
    assert list((tmp_path / "cache").glob("t-adapter-*/adapter/adapter_model.safetensors"))
    ship.cached_adapter("t-adapter", model, tok, fine_tune, replace(recipe, steps=4), settings)
    assert len(calls) == 2, "another recipe must train another adapter"
    other = model.__class__(model.config)  # same config, other weights: another base model
    ship.cached_adapter("t-adapter", other, tok, fine_tune, recipe, settings)
    assert len(calls) == 3, "another base model must train another adapter"


# -- GGUF ----------------------------------------------------------------------------------------


def test_gguf_round_trip(tiny, tmp_path):
    """f32 must give back the very logits; q8_0 must hold 8-bit blocks (read with the gguf package)."""
    import gguf

    model, tok, folder = tiny
    exact = ship.load_gguf(ship.export_gguf(folder, tmp_path / "tiny.f32.gguf", outtype="f32"))
    assert max_logit_difference(model, exact, tok, TEXTS) < 1e-4
    from transformers import AutoTokenizer

    back = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.f32.gguf")
    assert back("DFMEA of the pump")["input_ids"] == tok("DFMEA of the pump")["input_ids"]
    q8 = ship.export_gguf(folder, tmp_path / "tiny.q8_0.gguf", outtype="q8_0")
    reader = gguf.GGUFReader(q8)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert "tokenizer.chat_template" in reader.fields
    assert q8.stat().st_size < (tmp_path / "tiny.f32.gguf").stat().st_size / 2


def test_export_gguf_fails_clearly_without_the_converter(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FTLAB_LLAMA_CPP", str(tmp_path))
    with pytest.raises(ftlab.FtlabError, match="make setup"):
        ship.export_gguf(tiny[2], tmp_path / "x.gguf")


# -- The local server ----------------------------------------------------------------------------


def _alive(pid) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_server_answers_in_the_template_rejects_bad_requests_and_stops(tiny):
    import httpx
    from openai import APIStatusError, OpenAI

    model, tok, folder = tiny
    messages = [{"role": "user", "content": "Where is Lyon?"}]
    expected_prompt = len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    with ship.LocalServer() as server, ship.only_localhost() as refused:
        pid = server.pid
        assert server.url.startswith("http://127.0.0.1:")
        client = OpenAI(base_url=server.url, api_key="local", max_retries=0)
        reply = client.chat.completions.create(model=str(folder), messages=messages, max_tokens=5, temperature=0)
        assert reply.usage.prompt_tokens == expected_prompt  # the request was rendered with the model's template
        assert reply.usage.completion_tokens >= 1 and isinstance(reply.choices[0].message.content, str)
        with pytest.raises(APIStatusError):
            client.chat.completions.create(model=str(folder / "missing"), messages=messages, max_tokens=5)
        bad = httpx.post(f"{server.url}/chat/completions", content=b"{not json",
                         headers={"content-type": "application/json"}, timeout=30)
        assert 400 <= bad.status_code < 600
        again = client.chat.completions.create(model=str(folder), messages=messages, max_tokens=3, temperature=0)
        assert again.usage.prompt_tokens == expected_prompt  # still serving after the bad requests
        assert refused == []
    assert server.proc is None and not _alive(pid)


def test_server_stops_when_the_block_fails(tiny):
    with pytest.raises(RuntimeError):
        with ship.LocalServer() as server:
            pid = server.pid
            raise RuntimeError("a cell fails")
    assert not _alive(pid)


def test_server_dies_with_its_parent(tmp_path):
    """A kernel killed with SIGKILL runs no atexit: the server must still go (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    pid_file = tmp_path / "pid"
    code = ("import sys, time, ftlab.ship as s; srv = s.LocalServer().start(); "
            f"open({str(pid_file)!r}, 'w').write(str(srv.pid)); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        pid = int(pid_file.read_text())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.2)
        assert not _alive(pid)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_only_localhost_refuses_other_machines():
    with ship.only_localhost() as refused:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("10.255.255.1", 80), timeout=1)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            socket.create_connection(listener.getsockname(), timeout=1).close()
    assert refused == ["10.255.255.1"]
    assert socket.socket.connect.__name__ == "connect"  # restored


# -- Scale out -----------------------------------------------------------------------------------


def test_two_processes_give_the_one_process_losses():
    recipe = ftlab.scale.ScaleRecipe(steps=4, global_batch=4)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    one = ftlab.scale.launch(1, recipe)
    two = ftlab.scale.launch(2, recipe)
    assert one["world"] == 1 and two["world"] == 2 and "MULTI_CPU" in two["distributed_type"]
    assert len(one["losses"]) == len(two["losses"]) == recipe.steps
    assert one["losses"][0] != one["losses"][-1]
    assert max(abs(a - b) for a, b in zip(one["losses"], two["losses"])) < 1e-4
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not [pid for pid in left if _alive(pid)], "a worker outlived the run"


def test_global_batch_must_split_evenly():
    with pytest.raises(ftlab.FtlabError, match="multiple"):
        ftlab.scale.launch(2, ftlab.scale.ScaleRecipe(steps=1, global_batch=3))


# -- Sizing and statistics -----------------------------------------------------------------------


def test_sharding_memory_per_gpu():
    shape = ship.LARGE_SHAPES["7B"]
    full = ftlab.finetune_memory(shape, "full")["total"]
    assert ship.deepspeed_memory(shape, "full", "ddp", 8) == pytest.approx(full)
    assert ship.deepspeed_memory(shape, "full", "zero3", 8) == pytest.approx(full / 8)
    assert ship.deepspeed_memory(shape, "full", "zero3", 1) == pytest.approx(full)
    z2 = ship.deepspeed_memory(shape, "full", "zero2", 8)
    assert full / 8 < z2 < full
    assert z2 == pytest.approx(shape.parameters() * (2 + 14 / 8) / 1e9)  # bf16 weights kept, the rest split
    assert ship.gpus_needed(shape, "full", "ddp") is None and ship.gpus_needed(shape, "qlora", "ddp") == 1
    big = ship.LARGE_SHAPES["70B"]
    assert ship.gpus_needed(big, "full", "zero3") > 8


def test_latency_stats_nearest_rank():
    s = ship.latency_stats([4.0, 1.0, 3.0, 2.0], [10, 10, 10, 10])
    assert (s["p50"], s["p95"], s["requests"]) == (2.0, 4.0, 4)
    assert s["tokens_per_second"] == pytest.approx(40 / 10)


def test_dfmea_lora_uses_the_real_model_notebooks_recipe():
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parent.parent / "notebooks" / "real-model.ipynb").read_text())
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "SFTRecipe(steps=20, batch_size=6, lr=2e-3" in source and "LoRASettings(r=8, alpha=16)" in source
    assert ship.DFMEA_LORA_RECIPE == SFTRecipe(steps=20, batch_size=6, lr=2e-3, eval_every=5)
    assert ship.DFMEA_LORA_SETTINGS == LoRASettings(r=8, alpha=16)
