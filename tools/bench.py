"""``make bench``: how fast the site builds, measured rather than asserted.

From empty caches (a fresh model cache and a fresh jupyter cache, as on a new machine):

1. every notebook executed alone, one after the other, on all cores (``--jobs 1``): each
   notebook's time against its budget (``_ext/ftsite_report.py``), and the sequential total;
2. the cold build of both languages as ``make html`` runs it (notebooks several at a time,
   ``tools/execute.py``), then a no-change rebuild (it must execute nothing);
3. with ``--busy``, the cold build again next to one competing CPU-bound process.

Prints a table and writes ``_build/bench.json``; the README's Performance section is written
from it. Takes 15-25 minutes on 2 cores: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))

from ftsite_report import budget  # noqa: E402  (_ext/ftsite_report.py)

EXECUTED = re.compile(r"(notebooks/[\w-]+)\.ipynb: Executed notebook in ([\d.]+) seconds")


def run(command: list[str], env: dict, log: Path) -> float:
    """Run a command, its output into ``log``; return its wall-clock seconds (fail loudly)."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        status = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if status:
        raise SystemExit(f"error: {' '.join(command)} failed (exit {status}): see {log}")
    return time.perf_counter() - start


def fresh_env(work: Path, name: str) -> dict:
    """An environment with empty model and notebook caches of its own."""
    env = dict(os.environ, FTLAB_CACHE=str(work / name / "models"), FTSITE_CACHE_DIR=str(work / name / "jupyter"))
    env.pop("FTLAB_THREADS", None)
    env.pop("FTSITE_JOBS", None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", action="store_true", help="also time a cold build next to a busy process")
    parser.add_argument("--skip-sequential", action="store_true", help="skip step 1 (notebooks alone)")
    parser.add_argument("--sequential-only", action="store_true", help="only step 1, merged into --out if it exists")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "bench.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ftsite-bench-"))
    logs = ROOT / "_build" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(), "notebooks": {}}
    if args.sequential_only and args.out.exists():
        result = json.loads(args.out.read_text(encoding="utf-8"))
    try:
        if not args.skip_sequential:
            print("1/3 every notebook alone, one after the other, from empty caches …", flush=True)
            env = fresh_env(work, "alone")
            seconds = run([py, "tools/execute.py", "--jobs", "1"], env, logs / "bench-alone.log")
            for name, s in EXECUTED.findall((logs / "bench-alone.log").read_text()):
                result["notebooks"][name] = {"alone_s": round(float(s), 1), "budget_s": budget(name)}
            result["sequential_execution_s"] = round(seconds, 1)
        if args.sequential_only:
            return finish(result, args.out, work)
        print("2/3 cold build of both languages (make html), from empty caches …", flush=True)
        env = fresh_env(work, "cold")
        build_dir = work / "cold" / "_build"
        seconds = run([py, "tools/ftsite.py", "--build-dir", str(build_dir), "build", "en", "fr"], env,
                      logs / "bench-cold.log")
        text = (logs / "bench-cold.log").read_text()
        parallel = re.search(r"\[exec\] executing \d+ notebook\(s\), (\d+) at a time, (\d+) torch thread", text)
        result["parallel"] = {"jobs": int(parallel.group(1)), "threads": int(parallel.group(2))} if parallel else {}
        result["parallel_execution_s"] = float(re.search(r"\[exec\] done in ([\d.]+) s", text).group(1))
        for name, s in EXECUTED.findall(text):
            result["notebooks"].setdefault(name, {"budget_s": budget(name)})["in_build_s"] = round(float(s), 1)
        result["cold_build_s"] = round(seconds, 1)
        print("3/3 no-change rebuild …", flush=True)
        seconds = run([py, "tools/ftsite.py", "--build-dir", str(build_dir), "build", "en", "fr"], env,
                      logs / "bench-rebuild.log")
        rebuild = (logs / "bench-rebuild.log").read_text()
        result["rebuild_s"] = round(seconds, 1)
        result["rebuild_executions"] = rebuild.count("Executing notebook")
        if args.busy:
            print("+ cold build next to one busy process …", flush=True)
            env = fresh_env(work, "busy")
            busy = subprocess.Popen([py, "-c", "while True: pass"])
            try:
                seconds = run([py, "tools/ftsite.py", "--build-dir", str(work / "busy" / "_build"), "build", "en", "fr"],
                              env, logs / "bench-busy.log")
            finally:
                busy.kill()
            result["cold_build_busy_s"] = round(seconds, 1)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finish(result, args.out, work)


def finish(result: dict, out: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print_table(result)
    print(f"written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def print_table(result: dict) -> None:
    print(f"\n{'notebook':28} {'alone (s)':>9} {'budget':>6} {'ok':>3} {'in build (s)':>12}")
    for name, row in result["notebooks"].items():
        alone = row.get("alone_s")
        ok = "" if alone is None else ("yes" if alone <= row["budget_s"] else "NO")
        print(f"{name:28} {alone if alone is not None else '–':>9} {row['budget_s']:>6} {ok:>3} {row.get('in_build_s', '–'):>12}")
    par = result.get("parallel", {})
    if "sequential_execution_s" in result:
        print(f"\nexecution, one at a time (alone): {result['sequential_execution_s']} s")
    if "cold_build_s" not in result:
        return
    print(f"execution in the build ({par.get('jobs')} at a time, {par.get('threads')} thread(s) each): "
          f"{result['parallel_execution_s']} s")
    print(f"cold build, both languages: {result['cold_build_s']} s (goal: 480 s)")
    print(f"no-change rebuild: {result['rebuild_s']} s, {result['rebuild_executions']} executions (goal: 10 s, 0)")
    if "cold_build_busy_s" in result:
        print(f"cold build next to a busy process: {result['cold_build_busy_s']} s "
              f"({result['cold_build_busy_s'] / result['cold_build_s']:.2f}x; goal: at most 2.5x)")


if __name__ == "__main__":
    main()
