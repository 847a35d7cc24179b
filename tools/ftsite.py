"""Build the site one language at a time, and say clearly what went wrong.

Run by the Makefile (``make html``, ``make gettext``, ``make test``…); usable alone::

    python tools/ftsite.py build en            # _build/html/en
    python tools/ftsite.py build fr --noexec   # French, without executing notebooks
    python tools/ftsite.py build gettext       # _build/gettext/*.pot (for sphinx-intl)
    python tools/ftsite.py build en fr --epub  # _build/epub/<lang>/*.epub (e-books)
    python tools/ftsite.py root-index          # _build/html/index.html (language pick), 404, sitemap
    python tools/ftsite.py check-po            # French complete, .po files well formed

Sphinx's full output goes to ``_build/logs/<lang>.log``; the terminal gets the
progress that matters (notebook executions) and, on failure, one message that says
what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = {"en": "English", "fr": "French"}
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "_ext"))

from check_po import check_catalogs  # noqa: E402  (tools/check_po.py)
from ftsite_lang import language_path, site_url  # noqa: E402  (_ext/ftsite_lang.py)

# Lines of Sphinx's output worth showing while it runs.
SHOW = re.compile(r"Executing notebook|Executed notebook|Using cached notebook|WARNING|ERROR|Error")


def fail(message: str) -> None:
    """Print one clear error and stop (exit status 1)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def sphinx_command(target: str, build: Path, noexec: bool, epub: bool = False) -> tuple[list[str], Path]:
    """The sphinx-build command line for one target (en, fr or gettext) and its outdir."""
    doctrees = build / "doctrees" / target
    if target == "gettext":
        outdir, args = build / "gettext", ["-b", "gettext"]
    elif epub:
        outdir, args = build / "epub" / target, ["-b", "epub", "-D", f"language={target}"]
        doctrees = build / "doctrees" / f"epub-{target}"
    else:
        outdir, args = build / "html" / target, ["-b", "html", "-D", f"language={target}"]
    args += ["-d", str(doctrees), "-W", "--keep-going", "-n"]
    if noexec:
        args += ["-D", "nb_execution_mode=off"]
    return [sys.executable, "-m", "sphinx", *args, str(ROOT), str(outdir)], outdir


def explain_failure(log: str, target: str, log_path: Path) -> str:
    """Turn Sphinx's output into one message: which file, what went wrong, what to do."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)  # tracebacks from the kernel carry colours
    where = f"Full log: {log_path.relative_to(ROOT) if log_path.is_relative_to(ROOT) else log_path}"
    failed_nb = re.search(r"ExecutionError: (\S+\.(?:ipynb|md))", log)
    if failed_nb or "Executing notebook failed" in log:
        return notebook_failure(Path(failed_nb.group(1)) if failed_nb else None, log, where)
    problems = [
        line.strip()
        for line in log.splitlines()
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line) and "[IPKernelApp]" not in line
    ]
    if problems:
        shown = "\n  ".join(display_path_in(p) for p in problems[:8])
        more = f"\n  … and {len(problems) - 8} more" if len(problems) > 8 else ""
        return (
            f"the {LANGUAGES.get(target, target)} build stopped on {len(problems)} "
            f"warning(s) (warnings are errors here):\n  {shown}{more}\n  {where}"
        )
    tail = [line for line in log.splitlines() if line.strip()][-3:]
    return "the build failed: " + " / ".join(tail) + f"\n  {where}"


def notebook_failure(path: Path | None, log: str, where: str) -> str:
    """One message for a notebook that failed: which cell, the error, what to do."""
    cell, error = failing_cell(log, path)
    name = display_path(path) if path else "a notebook"
    timeout = re.search(r"CellTimeoutError: A cell timed out .*? after (\d+) seconds", log)
    if timeout:
        return (
            f"{name}: {cell} ran longer than {timeout.group(1)} s and was stopped "
            f"(nb_execution_timeout in conf.py).\n"
            f"  The notebooks need about a minute each on 2 idle cores: check that nothing else "
            f"keeps the CPU busy (torch jobs running at the same time slow each other down many "
            f"times over), then run 'make html' again. {where}"
        )
    return (
        f"{name} failed at {cell}: {error}\n"
        f"  Fix that cell (open it with 'make lab'), then run 'make html' again. {where}"
    )


def execute_notebooks(build_dir: Path) -> None:
    """Execute, several at a time, the notebooks the jupyter cache lacks (tools/execute.py)."""
    from execute import execute  # noqa: E402  (tools/execute.py)

    log_dir = build_dir / "logs"
    lines: list[str] = []

    def echo(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    results, seconds = execute(log_dir=log_dir, echo=echo)
    if not results:
        return
    echo(f"[exec] done in {seconds:.1f} s")
    (log_dir / "execute.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for result in results:
        if result.error:
            where = f"Full log: {display_path(result.log)}"
            fail(notebook_failure(result.path, re.sub(r"\x1b\[[0-9;]*m", "", result.error), where))


def failing_cell(log: str, notebook: Path | None) -> tuple[str, str]:
    """Find which cell failed (its number in the notebook) and the error's last line."""
    error = "the notebook raised an error"
    errors = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit): .*)$", log, re.M)
    errors = [e for e in errors if "ExecutionError" not in e.split(":")[0]]
    if errors:
        error = errors[0].strip()
    source = re.search(
        r"An error occurred while executing the following cell:\n-+\n(.*?)\n-+\n", log, re.S
    )
    if notebook and notebook.exists() and source:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
        for index, cell in enumerate(cells, start=1):
            text = "".join(cell.get("source", ""))
            if cell.get("cell_type") == "code" and text.strip() == source.group(1).strip():
                first = text.strip().splitlines()[0] if text.strip() else ""
                return f"cell {index} ({first[:60]!r})", error
    return "a cell", error


def display_path(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def display_path_in(line: str) -> str:
    return line.replace(str(ROOT) + os.sep, "")


def build(target: str, build_dir: Path, noexec: bool = False, epub: bool = False) -> float:
    """Run one Sphinx build; return its duration, or stop with a clear message."""
    if target == "fr":
        problems = check_catalogs(ROOT / "docs" / "locale", syntax_only=True)
        if problems:
            fail("a French .po file is malformed:\n  " + "\n  ".join(problems[:10])
                 + "\n  Fix it (see the line above), or restore it with 'git checkout'.")
    command, outdir = sphinx_command(target, build_dir, noexec, epub)
    log_name = f"epub-{target}" if epub else target
    log_path = build_dir / "logs" / f"{log_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root_index = build_dir / "html" / "index.html"
    if target != "gettext" and not epub and root_index.exists():
        root_index.unlink()  # written again only when every language built
    if not noexec:
        try:
            execute_notebooks(build_dir)
        except SystemExit:
            (outdir / "index.html").unlink(missing_ok=True)  # never leave a failed language looking complete
            raise
    label = LANGUAGES.get(target, "message catalogs (gettext)") + (" e-book (EPUB)" if epub else "")
    print(f"[{log_name}] building {label} into {display_path(outdir)} …", flush=True)
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    lines: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env)
        for line in process.stdout:
            log.write(line)
            lines.append(line)
            if SHOW.search(line) and "WARNING" not in line and "ERROR" not in line:
                print(f"[{log_name}]   {display_path_in(line.strip())}", flush=True)
        status = process.wait()
    seconds = time.perf_counter() - start
    if status != 0:
        index = outdir / "index.html"
        if index.exists():
            index.unlink()  # never leave a half-built language looking complete
        fail(explain_failure("".join(lines), target, log_path))
    print(f"[{log_name}] done in {seconds:.1f} s", flush=True)
    if target == "fr" and not epub:
        missing = check_catalogs(ROOT / "docs" / "locale")
        if missing:
            print(f"[fr] note: {len(missing)} French message(s) are untranslated or fuzzy and show "
                  "in English; 'make check-po' lists them.", flush=True)
    return seconds


ROOT_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fine-Tuning by Doing / L'affinage par la pratique</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="alternate" hreflang="en" href="en/index.html">
<link rel="alternate" hreflang="fr" href="fr/index.html">
<script>
  // Open the reader's preferred language: French browsers get fr/, others en/.
  (function () {
    var langs = navigator.languages || [navigator.language || "en"];
    var pick = "en";
    for (var i = 0; i < langs.length; i++) {
      var code = String(langs[i]).toLowerCase().slice(0, 2);
      if (code === "fr" || code === "en") { pick = code; break; }
    }
    window.location.replace(pick + "/index.html" + window.location.hash);
  })();
</script>
<noscript><meta http-equiv="refresh" content="0; url=en/index.html"></noscript>
</head>
<body>
<p>Choose your language / <span lang="fr">Choisissez votre langue&nbsp;:</span>
<a href="en/index.html" hreflang="en">English</a> ·
<a href="fr/index.html" hreflang="fr" lang="fr">Français</a></p>
</body>
</html>
"""


# Served by GitHub Pages for any missing address of the site, at any depth: absolute
# links only, both languages (each language also has its own themed 404.html).
ROOT_404 = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Page not found / Page introuvable</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<style>body {{ font-family: sans-serif; max-width: 40em; margin: 4em auto; padding: 0 1em; line-height: 1.5; }}</style>
</head>
<body>
<h1>Page not found</h1>
<p>The page you asked for does not exist, or it has moved.
Start again from the <a href="{root}en/index.html" hreflang="en">home page</a>.</p>
<h1 lang="fr">Page introuvable</h1>
<p lang="fr">La page demandée n'existe pas, ou elle a été déplacée.
Repartez de la <a href="{root}fr/index.html" hreflang="fr">page d'accueil</a>.</p>
</body>
</html>
"""


def write_root_index(build_dir: Path) -> Path:
    """Write _build/html/index.html (opens the reader's language), 404.html, sitemap.xml, robots.txt."""
    html = build_dir / "html"
    missing = [code for code in LANGUAGES if not (html / code / "index.html").exists()]
    if missing:
        fail(f"cannot write the language picker: {', '.join(missing)} not built. Run 'make html'.")
    path = html / "index.html"
    path.write_text(ROOT_INDEX, encoding="utf-8")
    (html / ".nojekyll").write_text("")  # GitHub Pages: serve _static/ as is
    root = site_url()
    (html / "404.html").write_text(ROOT_404.format(root=urlparse(root).path or "/"), encoding="utf-8")
    sitemaps = "".join(f"  <sitemap><loc>{escape(root + language_path(code))}sitemap.xml</loc></sitemap>\n"
                       for code in LANGUAGES if (html / code / "sitemap.xml").exists())
    (html / "sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{sitemaps}</sitemapindex>\n", encoding="utf-8")
    (html / "robots.txt").write_text(f"User-agent: *\nAllow: /\nSitemap: {root}sitemap.xml\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build",
                        help="where builds, logs and caches go (default: _build)")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build one target: en, fr or gettext")
    b.add_argument("targets", nargs="+", choices=["en", "fr", "gettext"])
    b.add_argument("--noexec", action="store_true", help="do not execute notebooks")
    b.add_argument("--epub", action="store_true", help="an e-book per language into _build/epub/<lang>")
    sub.add_parser("root-index", help="write _build/html/index.html")
    c = sub.add_parser("check-po", help="check the French .po files")
    c.add_argument("--pot-dir", type=Path, help="also check them against these .pot files")
    c.add_argument("--locale-dir", type=Path, default=ROOT / "docs" / "locale")
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    os.environ.setdefault("FTSITE_CACHE_DIR", str(build_dir / ".jupyter_cache"))

    if args.command == "build":
        for target in args.targets:
            if args.epub and target == "gettext":
                fail("--epub builds en or fr, not gettext")
            build(target, build_dir, args.noexec, args.epub)
    elif args.command == "root-index":
        path = write_root_index(build_dir)
        print(f"Open {display_path(path)} (or run 'make serve' and visit http://127.0.0.1:8000/)")
    elif args.command == "check-po":
        problems = check_catalogs(args.locale_dir, pot_dir=args.pot_dir)
        if problems:
            fail(f"the French translation is not complete ({len(problems)} problem(s)):\n  "
                 + "\n  ".join(problems[:20])
                 + ("\n  …" if len(problems) > 20 else "")
                 + "\n  Run 'make update-po', translate the messages in the files above "
                   "(and remove their '#, fuzzy' flag), then run the check again.")
        print("French translation: complete and well formed.")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        fail("interrupted")
