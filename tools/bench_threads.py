"""How many torch threads, and which OpenMP wait policy, survive a busy machine?

Runs the lab's real training workloads (pretraining, SFT, LoRA, distillation steps of the
1.2M-parameter model, and LoRA steps of SmolLM2-135M when its conversion is cached) in a
fresh process per setting: 1 or 2 torch threads, OpenMP's default or PASSIVE wait policy,
alone or next to one competing CPU-bound process (a busy loop, as a browser tab or a CI
neighbour would be). Each setting is timed twice after a warm-up; the median is kept.

    python tools/bench_threads.py                 # everything (about 15 minutes on 2 cores)
    python tools/bench_threads.py --json out.json # also write the results

Run it on an otherwise idle machine: it makes its own competition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("pretrain", "sft", "lora", "distill", "real-lora")
SETTINGS = [  # (threads, OMP_WAIT_POLICY or None for the default); one thread never waits
    (1, None), (2, None), (2, "PASSIVE"),
]
REPEATS = 2


def workload(name: str):
    """A function that runs a fixed amount of one workload (a few seconds of training)."""
    from dataclasses import replace

    import ftlab
    from ftlab.distill import DistillRecipe, distill_loop
    from ftlab.models import RECIPES, corpus_token_ids, pretrain_loop

    tok = ftlab.get_tokenizer()
    if name == "pretrain":
        ids, starts = corpus_token_ids(tok)
        recipe = replace(RECIPES["small"], steps=30)
        return lambda: pretrain_loop(ftlab.build_model("small", tok), ids, starts, recipe)
    if name in ("sft", "lora"):
        train = ftlab.sft_dataset("train")
        recipe = replace(ftlab.sft_recipe(), steps=30)

        def run():
            model = ftlab.build_model("small", tok)
            if name == "lora":
                model = ftlab.add_lora(model, copy_model=False)
            ftlab.train_sft_loop(model, tok, train, None, recipe)
        return run
    if name == "distill":
        ids, starts = corpus_token_ids(tok)
        teacher = ftlab.build_model("small", tok)
        logits = ftlab.distill.window_logits(teacher, ids, starts)
        recipe = replace(DistillRecipe(), steps=30, eval_every=10_000)
        return lambda: distill_loop(ftlab.build_model("tiny", tok), ids, starts, recipe, stored_logits=logits)
    if name == "real-lora":
        model, rtok = ftlab.load_real_model("smollm2-135m-instruct")
        train = ftlab.sft_dataset("train").select(range(32))
        recipe = replace(ftlab.sft_recipe(), steps=3, batch_size=4, lr=1e-4)

        def run_real():
            ftlab.train_sft_loop(ftlab.add_lora(model), rtok, train, None, recipe)
        return run_real
    raise SystemExit(f"unknown workload {name!r}: choose from {', '.join(WORKLOADS)}")


def worker(name: str) -> None:
    """Inside the timed process: set up, warm up once, then time REPEATS runs."""
    import ftlab

    ftlab.setup(verbose=False)
    run = workload(name)
    run()  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(json.dumps({"median": statistics.median(times), "times": times}))


def real_model_cached() -> bool:
    code = ("import sys; from ftlab.cache import cache_dir; "
            "sys.exit(0 if any(cache_dir().glob('real-*')) else 1)")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def measure(name: str, threads: int, policy: str | None, busy: bool) -> dict:
    env = dict(os.environ, FTLAB_THREADS=str(threads), OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", name], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    finally:
        if competitor:
            competitor.kill()
            competitor.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--settings", nargs="+", help="only these settings, e.g. 1 2 2:PASSIVE")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    workloads = [w for w in args.workloads if w != "real-lora" or real_model_cached()]
    settings = SETTINGS
    if args.settings:
        settings = [(int(s.split(":")[0]), s.split(":")[1] if ":" in s else None) for s in args.settings]
    rows = []
    print(f"{'workload':10} {'threads':>7} {'wait':>8} {'quiet s':>8} {'busy s':>8} {'slowdown':>8}", flush=True)
    for name in workloads:
        for threads, policy in settings:
            quiet = measure(name, threads, policy, busy=False)
            busy = measure(name, threads, policy, busy=True)
            row = {"workload": name, "threads": threads, "wait_policy": policy or "default",
                   "quiet_s": round(quiet["median"], 3), "busy_s": round(busy["median"], 3),
                   "slowdown": round(busy["median"] / quiet["median"], 2)}
            rows.append(row)
            print(f"{name:10} {threads:>7} {row['wait_policy']:>8} {row['quiet_s']:>8.2f} {row['busy_s']:>8.2f} "
                  f"{row['slowdown']:>7.2f}x", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                                         "repeats": REPEATS, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
