"""What every notebook page gets, with nothing to write in the notebook.

Under the title of each page made from a ``.ipynb`` file, in every language:

* a link that downloads the notebook (the source, without outputs, copied next to the
  page as ``<name>.ipynb``);
* a "Run it locally" box: ``make lab`` in a clone of the repository, or the same with pip;
* one line that says how long the notebook took to execute, on which device, and when.

The execution time and date come from myst-nb's execution data (jupyter-cache keeps
them for cached notebooks); the device is the line ``ftlab: device cpu, float32,
2 threads`` that ``ftlab.setup()`` prints in the notebook's first code cell, read from
the executed outputs, so it says where the notebook really ran.

The strings are translated here, in ``MESSAGES`` (one dict per language), not in the
.po files: a new notebook needs no new message.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

from myst_nb.sphinx_ import NbMetadataCollector

from ftsite_lang import format_date

MESSAGES = {
    "en": {
        "download": "Download this notebook (.ipynb)",
        "executed": "Executed in {seconds} s on {device}, on {date}.",
        "executed_somewhere": "Executed in {seconds} s, on {date}.",
        "not_executed": "This notebook was not executed in this build: its outputs are missing.",
        "failed": "This notebook failed to execute in this build.",
        "run_title": "Run it locally",
        "run_clone": "Get the course's code:",
        "run_make": "One command installs everything into a local virtual environment "
                    "(a few minutes the first time) and opens the notebooks in JupyterLab:",
        "run_pip": "Without make, the same with pip:",
        "run_note": "A laptop CPU is enough; nothing is downloaded while the notebook runs. "
                    "With a GPU, set <code>FTLAB_MODEL</code> to a Hugging Face model to run "
                    "the same notebook on a real checkpoint.",
        "run_here": "Work in a copy of the course's repository.",
        "cpu": "a CPU",
        "gpu": "a GPU",
        "mps": "an Apple GPU",
        "threads": "{n} threads",
        "thread": "1 thread",
    },
    "fr": {
        "download": "Télécharger ce notebook (.ipynb, en anglais)",
        "executed": "Exécuté en {seconds}\u00a0s sur {device}, le {date}.",
        "executed_somewhere": "Exécuté en {seconds}\u00a0s, le {date}.",
        "not_executed": "Ce notebook n'a pas été exécuté lors de cette construction\u00a0: ses sorties manquent.",
        "failed": "L'exécution de ce notebook a échoué lors de cette construction.",
        "run_title": "L'exécuter chez soi",
        "run_clone": "Récupérez le code du cours\u00a0:",
        "run_make": "Une seule commande installe tout dans un environnement virtuel local "
                    "(quelques minutes la première fois) et ouvre les notebooks dans JupyterLab\u00a0:",
        "run_pip": "Sans make, la même chose avec pip\u00a0:",
        "run_note": "Le processeur d'un ordinateur portable suffit\u00a0; rien n'est téléchargé pendant "
                    "l'exécution. Avec un GPU, donnez à <code>FTLAB_MODEL</code> le nom d'un modèle "
                    "de Hugging Face pour exécuter le même notebook sur un vrai point de contrôle.",
        "run_here": "Travaillez dans une copie du dépôt du cours.",
        "cpu": "un CPU",
        "gpu": "un GPU",
        "mps": "un GPU Apple",
        "threads": "{n}\u00a0threads",
        "thread": "1\u00a0thread",
    },
}

# The line ftlab.setup() prints, e.g. "ftlab: device cpu, float32, 2 threads".
DEVICE_LINE = re.compile(r"ftlab: device (?P<device>[\w:]+), (?P<dtype>\w+), (?P<threads>\d+) threads?")


def messages(language: str | None) -> dict[str, str]:
    """The strings of one language (English when the language has none)."""
    return MESSAGES.get((language or "en")[:2], MESSAGES["en"])


def is_notebook(env, docname: str) -> bool:
    return env.doc2path(docname).suffix == ".ipynb"


def describe_device(match: re.Match, words: dict[str, str]) -> str:
    """``cpu, float32, 2 threads`` -> ``a CPU (2 threads)``; ``cuda:0`` -> ``a GPU (cuda:0, bfloat16)``."""
    device, dtype, threads = match["device"], match["dtype"], int(match["threads"])
    if device == "cpu":
        count = words["thread"] if threads == 1 else words["threads"].format(n=threads)
        return f"{words['cpu']} ({count})"
    kind = words["mps"] if device == "mps" else words["gpu"]
    return f"{kind} ({device}, {dtype})"


def _number(seconds: float, language: str) -> str:
    text = f"{seconds:.1f}"
    return text.replace(".", ",") if language.startswith("fr") else text


def execution_line(env, docname: str, doctree: nodes.Node, language: str) -> str:
    """One sentence: how long, on what, and when the notebook was executed."""
    words = messages(language)
    run = NbMetadataCollector.get_exec_data(env, docname)
    if not run:
        return words["not_executed"]
    if not run.get("succeeded", True):
        return words["failed"]
    device = None
    for block in doctree.findall(nodes.literal_block):
        device = DEVICE_LINE.search(block.astext())
        if device:
            break
    seconds = run.get("runtime")
    date = format_date(datetime.fromtimestamp(run["mtime"]).date(), language) if run.get("mtime") else "?"
    seconds = "?" if seconds is None else _number(seconds, language)
    if device is None:  # a notebook that does not call ftlab.setup() first
        return words["executed_somewhere"].format(seconds=seconds, date=date)
    return words["executed"].format(seconds=seconds, device=describe_device(device, words), date=date)


def translate_device_lines(doctree: nodes.Node) -> None:
    """On a French page, the line of ``ftlab.setup()`` in French (read above, in English, first):
    ``ftlab: device cpu, float32, 2 threads`` -> ``ftlab : appareil cpu, float32, 2 threads``."""
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        match = DEVICE_LINE.search(text)
        if match:
            n = int(match["threads"])
            french = (f"ftlab\u00a0: appareil {match['device']}, {match['dtype']}, "
                      f"{n} thread{'s' * (n != 1)}")  # the word of the notebook bar
            block.children = [nodes.Text(text.replace(match.group(0), french))]


def _code(text: str, lexer: str = "bash") -> str:
    """A code block like Sphinx's, so that it gets a copy button."""
    return (f'<div class="highlight-{lexer} notranslate"><div class="highlight"><pre>'
            f"{html.escape(text)}</pre></div></div>")


def run_box(config, docname: str, language: str) -> str:
    """The "Run it locally" box: clone, ``make lab``, or pip; as HTML."""
    words = messages(language)
    repo = (config.ftsite_repository_url or "").rstrip("/")
    if repo:
        folder = repo.rsplit("/", 1)[-1].removesuffix(".git") or "repo"
        commands = f"git clone {repo}\ncd {folder}"
        clone = f'<p>{html.escape(words["run_clone"])}</p>{_code(commands)}'
    else:
        clone = f'<p>{html.escape(words["run_here"])}</p>'
    pip = ("python3 -m venv .venv\n"
           ".venv/bin/pip install -r requirements.txt\n"
           ".venv/bin/pip install --no-deps -e .\n"
           f".venv/bin/jupyter lab {docname}.ipynb")
    return (
        '<details class="ftsite-run-locally">'
        f'<summary>{html.escape(words["run_title"])}</summary>'
        f"{clone}"
        f'<p>{html.escape(words["run_make"])}</p>{_code("make lab")}'
        f'<p>{html.escape(words["run_pip"])}</p>{_code(pip)}'
        f'<p>{words["run_note"]}</p>'
        "</details>"
    )


class NotebookBar(SphinxPostTransform):
    """Put the download link, the run box and the execution line under a notebook's title."""

    default_priority = 900  # after myst-nb's own post-transforms
    formats = ("html",)  # the HTML and EPUB builders

    def run(self, **kwargs) -> None:
        env, docname = self.env, self.env.docname
        if not is_notebook(env, docname):
            return
        section = next(iter(self.document.findall(nodes.section)), None)
        if section is None or not isinstance(section[0], nodes.title):
            return
        language = self.config.language or "en"
        words = messages(language)
        parts = ['<div class="ftsite-notebook-bar">',
                 f'<p class="ftsite-execution">{html.escape(execution_line(env, docname, self.document, language))}</p>']
        if self.app.builder.name == "html":  # an e-book cannot serve the .ipynb file
            name = Path(docname).name + ".ipynb"
            parts.append(f'<p class="ftsite-download"><a class="reference download" href="{html.escape(name)}" '
                         f'download="{html.escape(name)}" type="application/x-ipynb+json">'
                         f'{html.escape(words["download"])}</a></p>')
        parts.append(run_box(self.config, docname, language))
        parts.append("</div>")
        if language.startswith("fr"):
            translate_device_lines(self.document)
        section.insert(1, nodes.raw("", "".join(parts), format="html"))


def copy_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """Copy each notebook's source next to its page: ``notebooks/x.html`` -> ``notebooks/x.ipynb``."""
    if exception is not None or app.builder.name != "html":
        return
    for docname in sorted(app.env.found_docs):
        if is_notebook(app.env, docname):
            target = Path(app.outdir) / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(app.env.doc2path(docname), target)


def repository_url(srcdir: Path) -> str:
    """Where readers can clone the course: the CI's repository, else git's ``origin`` if public.

    ``FTSITE_REPOSITORY_URL`` wins; GitHub Actions and Read the Docs say which repository
    they build; otherwise the ``origin`` remote of the clone being built, when it is an
    http(s) or ``git@host:owner/name`` address (a local path means nothing to a reader).
    """
    if os.environ.get("FTSITE_REPOSITORY_URL"):
        return os.environ["FTSITE_REPOSITORY_URL"]
    if os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    if os.environ.get("READTHEDOCS_GIT_CLONE_URL", "").startswith("https://"):
        return os.environ["READTHEDOCS_GIT_CLONE_URL"]
    try:
        origin = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=srcdir,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    ssh = re.fullmatch(r"git@([\w.-]+):(.+)", origin)
    if ssh:
        origin = f"https://{ssh[1]}/{ssh[2]}"
    origin = re.sub(r"^https://[^/@]+@", "https://", origin)  # never publish a token
    return origin.removesuffix(".git") if origin.startswith("https://") else ""


def _fill_repository_url(app: Sphinx, config) -> None:
    if not config.ftsite_repository_url:
        config.ftsite_repository_url = repository_url(Path(app.srcdir))


def setup(app: Sphinx) -> dict:
    # Where readers clone the course from (empty: found by repository_url()).
    app.add_config_value("ftsite_repository_url", "", "html")
    app.connect("config-inited", _fill_repository_url)
    app.add_post_transform(NotebookBar)
    app.connect("build-finished", copy_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
