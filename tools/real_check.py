"""Execute the course's notebooks on a real model and record what happened.

Run by ``make real-check`` (every notebook, in the course's order) or alone::

    python tools/real_check.py                                  # all notebooks, smollm2-135m-instruct
    python tools/real_check.py --notebooks chat-templates sft   # a subset
    python tools/real_check.py --model ~/models/qwen2.5-0.5b --timeout 1800 --out /tmp/check.json

Each notebook runs top to bottom in a fresh kernel with ``FTLAB_MODEL`` set, and gets one
of four results: ``ran``; ``lab-only`` (the notebook says, in its first cell's output, that
it runs on the lab model by design); ``failed`` (a cell raised: its error line is kept);
``timeout`` (still running after ``--timeout`` seconds). The results, with the date, the
commit, the model and the machine, go to ``docs/real-check.json``, which the page
"Run on a real model" shows. The exit status is 1 when a notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))

from ftsite_order import course_order  # noqa: E402  (_ext/ftsite_order.py)

#: What ftlab.setup(lab_only=...) prints when a notebook runs on the lab model by design.
LAB_ONLY_MARK = "runs on the lab model"


def notebooks(names: list[str] | None) -> list[Path]:
    """The notebooks to run: ``names`` (without .ipynb), else every notebook in course order."""
    ordered = [ROOT / f"{d}.ipynb" for d in course_order(ROOT) if d.startswith("notebooks/")]
    if not names:
        return ordered
    wanted = {n.removesuffix(".ipynb").removeprefix("notebooks/") for n in names}
    unknown = wanted - {p.stem for p in ordered}
    if unknown:
        raise SystemExit(f"error: no notebook named {', '.join(sorted(unknown))} in index.rst's toctrees")
    return [p for p in ordered if p.stem in wanted]


def _error_line(exc: BaseException) -> str:
    """The last line of a cell's traceback, without colours: 'FtlabError: ...'."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (named or lines or [type(exc).__name__])[-1][:300]


def run_one(path: Path, timeout: int) -> dict:
    """Execute one notebook; return its result dict."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    result = {"notebook": path.stem, "status": "ran", "message": ""}
    try:
        client.execute()
    except CellTimeoutError:
        result.update(status="timeout", message=f"a cell ran longer than {timeout} s")
    except (CellExecutionError, DeadKernelError) as exc:
        result.update(status="failed", message=_error_line(exc))
    result["seconds"] = round(time.perf_counter() - start, 1)
    first_outputs = "".join(o.get("text", "") for c in nb.cells[:2] if c.cell_type == "code" for o in c.get("outputs", []))
    if result["status"] == "ran" and LAB_ONLY_MARK in first_outputs:
        result["status"] = "lab-only"
    return result


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ftlab", "notebooks"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(out: Path, entries: dict) -> None:
    """Write the results in the course's order."""
    order = [p.stem for p in notebooks(None)]
    ordered = {k: entries[k] for k in sorted(entries, key=lambda k: order.index(k) if k in order else len(order))}
    out.write_text(json.dumps({"results": ordered}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="FTLAB_MODEL for the run")
    parser.add_argument("--notebooks", nargs="*", help="names of notebooks (default: all, in course order)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per cell before giving up")
    parser.add_argument("--out", default=str(ROOT / "docs" / "real-check.json"), help="where to write the results")
    args = parser.parse_args(argv)

    os.environ["FTLAB_MODEL"] = args.model  # the kernels inherit it
    import torch

    out = Path(args.out)
    report = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    entries = report.get("results", {})  # notebook -> result; a partial run updates its notebooks only
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores" + (
        f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU")
    ran = []
    for path in notebooks(args.notebooks):
        print(f"{path.stem}: running with FTLAB_MODEL={args.model} …", flush=True)
        r = run_one(path, args.timeout)
        r.update(model=args.model, date=date.today().isoformat(), commit=commit(), machine=machine,
                 threads=int(os.environ.get("FTLAB_THREADS") or os.cpu_count() or 1), timeout=args.timeout)
        entries[path.stem] = r
        ran.append(r)
        print(f"{path.stem}: {r['status']} in {r['seconds']} s {r['message']}".rstrip(), flush=True)
        write(out, entries)  # after each notebook: an interrupted run keeps what it measured
    print(f"wrote {out}")
    return 1 if any(r["status"] == "failed" for r in ran) else 0


if __name__ == "__main__":
    raise SystemExit(main())
