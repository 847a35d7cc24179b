"""The course's SFT recipe as a script that runs on 1 or N processes (data parallelism).

Introduced in notebooks/ship.ipynb. Run it as a script::

    python -m ftlab.scale --out run1.json                                          # 1 process
    accelerate launch --multi_gpu --num_processes 2 -m ftlab.scale --out run2.json  # 2 processes (DDP)
    accelerate launch --multi_gpu --num_processes 8 -m ftlab.scale --out run8.json  # 8 GPUs of one machine

On a machine without a GPU, ``--multi_gpu`` still starts the N processes (with torchrun), and
the script's ``Accelerator(cpu=True)`` joins them as ``MULTI_CPU`` over gloo. (``--cpu`` with
``--num_processes 2`` starts a single process in accelerate 1.15, unless MPI is configured.)

Every process holds the whole model (DDP). At each step the *global* batch is the same as in
a one-process run; process ``rank`` takes every ``world``-th conversation of it. Each process
sums the token losses of its share and divides by the token count of the *global* batch; DDP
then averages the gradients over the processes, so the loss is multiplied by ``world`` first.
The update is then the one-process update, up to the order of float additions. (Dividing each
share by its own token count, the common shortcut, weights tokens unequally when the shares
differ in length.)

It trains the lab's model (``FTLAB_MODEL`` is ignored: the point is the mechanism, and the lab
model makes it cheap). :func:`launch` runs it from Python in fresh processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ScaleRecipe", "train_data_parallel", "launch", "main"]


@dataclass(frozen=True)
class ScaleRecipe:
    """What the multi-process run trains. Introduced in notebooks/ship.ipynb."""

    steps: int = 40  # optimizer steps; the learning rate decays linearly to 0 over them
    global_batch: int = 8  # conversations per step, summed over all processes
    lr: float = 1e-3  # peak learning rate (the lab's SFT recipe)
    warmup: int = 0  # steps of linear warm-up before the decay (0: none)
    seed: int = 0  # order of the conversations in the batches
    max_grad_norm: float = 1.0  # gradient clipping of the global gradient


def train_data_parallel(recipe: ScaleRecipe) -> dict:
    """Train the lab model with ``recipe`` on this process's share; return the global loss per step
    (identical on every process). Works with or without ``accelerate launch``."""
    import torch
    from accelerate import Accelerator

    from .device import setup
    from .models import pretrain
    from .sft import _collate, sft_dataset, sft_example

    os.environ.pop("FTLAB_MODEL", None)
    setup(verbose=False)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = acc.num_processes, acc.process_index
    if recipe.global_batch % world:
        raise ValueError(f"global_batch={recipe.global_batch} is not a multiple of {world} processes")
    base = pretrain("small")
    tok, model = base.tokenizer, base.model
    examples = [sft_example(tok, row["messages"]) for row in sft_dataset("train")]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)

    def factor(step):  # linear warm-up, then linear decay to 0
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        return 1 - (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    model, opt = acc.prepare(model, opt)
    gen = torch.Generator().manual_seed(recipe.seed)  # the same order on every process
    order: list[int] = []
    losses = []
    start = time.perf_counter()
    for _ in range(recipe.steps):
        if len(order) < recipe.global_batch:
            order += torch.randperm(len(examples), generator=gen).tolist()
        batch_ids, order = order[: recipe.global_batch], order[recipe.global_batch:]
        share = [examples[i] for i in batch_ids[rank::world]]
        tokens = torch.tensor(float(sum(sum(t != -100 for t in e["labels"][1:]) for e in share)))
        batch = _collate(share, tok.pad_token_id, acc.device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss_sum = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                     batch["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                                     reduction="sum")
        global_tokens = acc.reduce(tokens.to(acc.device), reduction="sum")
        acc.backward(loss_sum * world / global_tokens)  # DDP averages over processes: undo it
        acc.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
        opt.step()
        schedule.step()
        opt.zero_grad()
        losses.append(acc.reduce(loss_sum.detach(), reduction="sum").item() / global_tokens.item())
    seconds = time.perf_counter() - start
    return {"losses": losses, "world": world, "seconds": seconds, "recipe": asdict(recipe),
            "backend": str(getattr(acc.state, "backend", None)), "distributed_type": str(acc.distributed_type)}


def main(argv=None) -> None:
    """Command line: ``--out FILE`` (JSON written by process 0) and the fields of :class:`ScaleRecipe`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    for name, value in asdict(ScaleRecipe()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    recipe = ScaleRecipe(**{k: getattr(args, k) for k in asdict(ScaleRecipe())})
    result = train_data_parallel(recipe)
    if int(os.environ.get("RANK", "0")) == 0:
        args.out.write_text(json.dumps(result), encoding="utf-8")


def launch(processes: int, recipe: ScaleRecipe | None = None, out: str | os.PathLike | None = None,
           timeout: float = 600.0) -> dict:
    """Run :func:`main` in fresh processes: ``python -m ftlab.scale`` for one process,
    ``accelerate launch --multi_gpu --num_processes N -m ftlab.scale`` for more, each on one thread.
    Returns process 0's result. The processes are a session of their own: on a timeout or an
    interrupt, all of them are killed, none outlives the call. Introduced in notebooks/ship.ipynb."""
    import tempfile

    recipe = recipe or ScaleRecipe()
    if processes < 1 or recipe.global_batch % processes:
        from .errors import FtlabError

        raise FtlabError(f"global_batch={recipe.global_batch} must be a multiple of the {processes} processes")
    own = out is None
    if own:
        fd, out = tempfile.mkstemp(prefix="ftlab-scale-", suffix=".json")
        os.close(fd)
    out = Path(out)
    args = ["--out", str(out)] + [x for k, v in asdict(recipe).items() for x in (f"--{k.replace('_', '-')}", str(v))]
    if processes == 1:
        cmd = [sys.executable, "-m", "ftlab.scale", *args]
    else:
        import socket

        with socket.socket() as sock:  # a free port for the processes to meet on, not the fixed default 29500
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--main_process_port", str(port),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ftlab.scale", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FTLAB_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MASTER_ADDR": "127.0.0.1", "PYTHONWARNINGS": "ignore"}
    env.pop("FTLAB_MODEL", None)
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:  # the launcher may have left workers behind (timeout, interrupt): end the whole group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    if proc.returncode != 0:
        from .errors import FtlabError

        raise FtlabError(f"{' '.join(cmd[:8])} … failed ({proc.returncode}): {err.strip()[-1500:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    if own:
        out.unlink()
    return result


if __name__ == "__main__":
    main()
