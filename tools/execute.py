"""Execute the site's notebooks before the Sphinx builds, several at a time.

myst-nb executes a notebook when Sphinx reads it, one after the other. On 2 cores that
leaves a core idle during every import, model load and generation loop, and a notebook on
2 torch threads slows down many times over as soon as anything else wants a core. Here
each notebook whose outputs are not in the jupyter cache runs in its own kernel process,
``jobs`` at a time with ``threads`` torch threads each (by default as many jobs as cores,
up to 4, one thread each: see README, Performance), with ``FTLAB_STRICT_CLAIMS=1`` so that
the notebooks' hidden checks of the text (``ftlab.claim``) fail the build. The executed notebooks go into the
same jupyter-cache folder that conf.py gives myst-nb, so the gettext, English and French
builds only read them.

The notebooks share trained models through ftlab's disk cache (``sft`` trains the model
that ``dpo`` starts from). ftlab builds each cache entry under a file lock, so a notebook
that needs a model another one is training waits for it instead of training it twice;
the order below only decides who starts first:

* ``FIRST``: the notebooks that others wait for (pretraining, SFT), and the real model's,
  the longest, which needs no lab model;
* then the course's order (index.rst).

Used by ``tools/ftsite.py build`` (``FTSITE_JOBS=1`` executes one at a time); alone::

    python tools/execute.py              # execute what the cache lacks
    python tools/execute.py --jobs 1     # one at a time
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))

from ftsite_order import course_order  # noqa: E402  (_ext/ftsite_order.py)

#: Started before the course's order: others need their models, or they take longest.
FIRST = ["notebooks/pretraining", "notebooks/real-model", "notebooks/sft"]


def default_jobs() -> int:
    """Notebooks executed at once: ``$FTSITE_JOBS``, else one per core, at most 4."""
    if os.environ.get("FTSITE_JOBS"):
        return max(1, int(os.environ["FTSITE_JOBS"]))
    return max(1, min(4, os.cpu_count() or 1))


def default_threads(jobs: int) -> int:
    """Torch threads per notebook: ``$FTLAB_THREADS``, else 1, whatever the number of cores.

    The lab models depend on the thread count (the order of floating-point sums changes
    with it), so the site's numbers are those of one thread on every machine; on 2 threads
    the SFT, DPO and DFMEA notebooks train slightly different models."""
    if os.environ.get("FTLAB_THREADS"):
        return max(1, int(os.environ["FTLAB_THREADS"]))
    return 1


def conf() -> dict:
    """conf.py's settings (it has no side effects): the cache folder and the cell timeout."""
    return runpy.run_path(str(ROOT / "conf.py"))


def schedule() -> list[Path]:
    """Every notebook of the site, in the order they are started."""
    listed = [name for name in course_order(ROOT) if name.startswith("notebooks/")]
    others = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    names = [n for n in FIRST if n in others] + [n for n in listed + others if n not in FIRST]
    return [ROOT / f"{name}.ipynb" for name in dict.fromkeys(names) if (ROOT / f"{name}.ipynb").exists()]


def outdated(cache, paths: list[Path]) -> list[Path]:
    """The notebooks whose code has no executed copy in the cache."""
    import nbformat

    todo = []
    for path in paths:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            todo.append(path)
    return todo


@dataclass
class Result:
    path: Path  # the notebook
    seconds: float  # its execution time
    error: str | None  # the kernel's error text (cell source and traceback), None on success
    log: Path  # its kernel's output
    out: Path  # the executed copy of the notebook


def run_one(path: Path, threads: int, timeout: int, log_dir: Path) -> Result:
    """Execute one notebook in a fresh process (``--one``) and return what happened."""
    out = Path(tempfile.mkdtemp(prefix="ftsite-exec-")) / path.name
    log = log_dir / f"execute-{path.stem}.log"
    env = dict(os.environ, FTLAB_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               FTLAB_STRICT_CLAIMS="1",  # a sentence of the text that no longer holds fails the build
               PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        status = subprocess.run([sys.executable, __file__, "--one", str(path), "--out", str(out),
                                 "--timeout", str(timeout)], cwd=ROOT, env=env, stdout=handle,
                                stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    report = out.with_suffix(".json")
    if status == 0 and report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        if data["error"]:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(data["error"])  # the cell, the traceback: the "full log" of the message
        return Result(path, data["seconds"], data["error"], log, out)
    return Result(path, seconds, f"the kernel process stopped (exit status {status}): see {log}", log, out)


def _execute_here(path: Path, out: Path, timeout: int) -> None:
    """Inside the child process: execute the notebook as myst-nb would, write it and a report."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(path.parent), timeout=timeout, allow_errors=False, meta_override=True)
    nbformat.write(nb, out)
    error = result.exc_string if result.err is not None else None
    out.with_suffix(".json").write_text(json.dumps({"seconds": result.time, "error": error}), encoding="utf-8")


def execute(jobs: int | None = None, threads: int | None = None, log_dir: Path | None = None,
            echo=print) -> tuple[list[Result], float]:
    """Execute every notebook the jupyter cache lacks, ``jobs`` at a time; cache the results.

    Returns the results (in the order they finished) and the wall-clock seconds. Stops
    starting new notebooks after a failure; the running ones finish (and are cached).
    """
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    settings = conf()
    cache = get_cache(settings["nb_execution_cache_path"])
    timeout = int(settings["nb_execution_timeout"])
    jobs = jobs or default_jobs()
    threads = threads or default_threads(jobs)
    log_dir = log_dir or ROOT / "_build" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = outdated(cache, schedule())
    results: list[Result] = []
    if not todo:
        echo("[exec] every notebook is in the cache: nothing to execute")
        return results, 0.0
    echo(f"[exec] executing {len(todo)} notebook(s), {jobs} at a time, {threads} torch thread(s) each …")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending, queue, failed = set(), list(todo), False
        while queue or pending:
            while queue and not failed and len(pending) < jobs:
                path = queue.pop(0)
                echo(f"[exec]   {path.relative_to(ROOT)}: Executing notebook")
                pending.add(pool.submit(run_one, path, threads, timeout, log_dir))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results.append(result)
                name = result.path.relative_to(ROOT)
                if result.error is None:
                    # Only this thread writes to the cache database; the workers only execute.
                    cache.cache_notebook_bundle(
                        CacheBundleIn(nbformat.read(result.out, as_version=4), str(result.path),
                                      data={"execution_seconds": result.seconds, "jobs": jobs, "threads": threads}),
                        check_validity=False, overwrite=True)
                    echo(f"[exec]   {name}: Executed notebook in {result.seconds:.2f} seconds")
                else:
                    failed = True
                    echo(f"[exec]   {name}: failed after {result.seconds:.1f} s")
                shutil.rmtree(result.out.parent, ignore_errors=True)
            if failed:
                queue.clear()
    return results, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="notebooks at once (default: $FTSITE_JOBS or one per core, at most 4)")
    parser.add_argument("--threads", type=int, help="torch threads per notebook (default: 1, the thread count the site's numbers come from)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=int, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _execute_here(args.one, args.out, args.timeout)
    results, seconds = execute(args.jobs, args.threads)
    print(f"[exec] done in {seconds:.1f} s")
    if any(r.error for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
