"""Figures and tables in both languages at once.

A notebook executes ONCE and its outputs appear on the English AND the French page. So
every figure or table that contains words is rendered twice, and displayed as::

    <div class="ftlab-i18n">
      <div class="ftlab-i18n-en" lang="en">...English version...</div>
      <div class="ftlab-i18n-fr" lang="fr">...French version...</div>
    </div>

(in one line); the site's CSS shows the version of the page's language. Jupyter, and
any viewer without that CSS, falls back to ``image/png`` / ``text/plain`` in English.

Words are given as pairs: ``T("loss", "perte")`` or simply ``("loss", "perte")``; a plain
string is used for both languages. French versions use French typography: decimal comma
in tick labels and tables, a narrow no-break space before ``%``.

Printed lines are bilingual too: ``ftlab.say("vocabulary: {n:,} tokens",
"vocabulaire : {n:,} jetons", n=len(tok))`` formats the values of each version with its
language's numbers (``1,323`` / ``1 323``, ``0.5`` / ``0,5``, ``92%`` / ``92 %``).

Example::

    ftlab.plot_loss(ckpt.history, title=T("Pretraining", "Préentraînement"))

    def draw(ax, t):                       # any figure: t(...) picks the language
        ax.bar(["en", "fr"], [1, 2])
        ax.set_ylabel(t(("count", "nombre")))
    ftlab.figure(draw, alt=T("A bar chart", "Un diagramme en barres"))
"""

from __future__ import annotations

import base64
import html
import io
import re
import string
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

__all__ = [
    "T",
    "LANGS",
    "pick",
    "Bilingual",
    "bilingual",
    "figure",
    "plot_loss",
    "plot_lines",
    "plot_bars",
    "table",
    "results_table",
    "say",
    "fmt",
]

#: The two languages of the site, in the order of the html output.
LANGS = ("en", "fr")

_NNBSP = "\u202f"  # narrow no-break space, before % in French


class T(NamedTuple):
    """A text in English and in French, e.g. ``T("loss", "perte")``.

    Introduced in notebooks/pretraining.ipynb.
    """

    en: str  # the English text
    fr: str  # the French text


def pick(label, lang: str):
    """The text of ``label`` in ``lang`` ("en" or "fr"): a pair gives one side, a string itself.

    Introduced in notebooks/first-look.ipynb.
    """
    if label is None:
        return None
    if isinstance(label, (tuple, list)) and len(label) == 2:
        return label[LANGS.index(lang)]
    return str(label)


def _number(x: float, lang: str, digits: int = 2, percent: bool = False) -> str:
    """A number in the language's typography: 0.92 / 0,92 ; 92.0% / 92,0 %."""
    text = f"{x * 100:.{max(0, digits - 1)}f}" if percent else f"{x:.{digits}f}"
    if lang == "fr":
        text = text.replace(".", ",")
        return text + (_NNBSP + "%" if percent else "")
    return text + ("%" if percent else "")


class Bilingual:
    """Something displayed in both languages; its html has the ``ftlab-i18n`` shape above.

    ``en_html`` / ``fr_html`` are the two versions; ``png`` (bytes, English) and ``text``
    (English) are the fallbacks for viewers without the site's CSS. Introduced in
    notebooks/first-look.ipynb.
    """

    def __init__(self, en_html: str, fr_html: str, png: bytes | None = None, text: str = ""):
        self.en_html = en_html  # html of the English version
        self.fr_html = fr_html  # html of the French version
        self.png = png  # English PNG (figures only)
        self.text = text  # English plain text

    @property
    def html(self) -> str:
        """The html of both versions, wrapped in the ``ftlab-i18n`` divs."""
        return (
            '<div class="ftlab-i18n">'
            f'<div class="ftlab-i18n-en" lang="en">{self.en_html}</div>'
            f'<div class="ftlab-i18n-fr" lang="fr">{self.fr_html}</div>'
            "</div>"
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle: dict[str, Any] = {"text/html": self.html, "text/plain": self.text or "<bilingual output>"}
        if self.png is not None:
            bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        return bundle

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text or "<bilingual output>"


# ------------------------------------------------------------------------------------
# Printed lines
# ------------------------------------------------------------------------------------


def french_numbers(text: str) -> str:
    """A number formatted by Python, written the French way: ``1,234.5`` -> ``1 234,5``,
    ``92.0%`` -> ``92,0 %`` (narrow no-break spaces, as the glued numbers of the prose)."""
    text = text.replace(",", _NNBSP).replace(".", ",")
    return re.sub(r"(?<=\d)%", _NNBSP + "%", text)


class _LangFormatter(string.Formatter):
    """``str.format`` whose numbers follow the typography of one language."""

    def __init__(self, lang: str):
        self.lang = lang

    def format_field(self, value, format_spec: str) -> str:
        if self.lang == "fr" and isinstance(value, (list, tuple)) and not format_spec and any(
                isinstance(v, float) for v in value) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            # a list of decimal numbers: decimal commas, so « ; » separates the items
            inside = " ; ".join(french_numbers(repr(v)) for v in value)
            return f"[{inside}]" if isinstance(value, list) else f"({inside})"
        text = super().format_field(value, format_spec)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:  # numpy and torch scalars
            import numbers

            numeric = numeric or (isinstance(value, numbers.Number) and not isinstance(value, bool))
        except ImportError:  # pragma: no cover
            pass
        if self.lang == "fr" and numeric:
            return french_numbers(text)
        return text


def fmt(template: str, lang: str, /, *args, **values) -> str:
    """``template.format(*args, **values)`` with the numbers of ``lang`` ("en" or "fr").

    ``fmt("{n:,} tokens", "fr", n=1323)`` -> ``"1 323 tokens"``. Introduced in notebooks/chat-templates.ipynb.
    """
    return _LangFormatter(lang).format(template, *args, **values)


def say(en: str, fr: str, /, *args, **values) -> Bilingual:
    """A printed line (or several) in both languages, like ``print`` but bilingual.

    ``en`` and ``fr`` are ``str.format`` templates filled with the same values; each
    version writes numbers in its language's typography (and the French template gets
    its no-break spaces before « : ; ? ! »). Jupyter shows the English text;
    the site shows the page's language. Example::

        ftlab.say("vocabulary: {n:,} tokens", "vocabulaire : {n:,} jetons", n=len(tok))

    Introduced in notebooks/chat-templates.ipynb.
    """
    fr = re.sub(r" ([:;?!»])", "\u00a0\\1", fr).replace("« ", "«\u00a0")  # espaces insécables
    texts = {"en": fmt(en, "en", *args, **values), "fr": fmt(fr, "fr", *args, **values)}
    return Bilingual(*(f'<pre class="ftlab-say">{html.escape(texts[lang])}</pre>' for lang in LANGS),
                     text=texts["en"])


# ------------------------------------------------------------------------------------
# Any two displayable objects
# ------------------------------------------------------------------------------------


def _png_img(png: bytes, alt: str | None) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt or "", quote=True)}" style="max-width:100%"/>'


def _html_of(obj, lang: str) -> tuple[str, bytes | None, str]:
    """(html, png or None, plain text) of one displayable object."""
    if isinstance(obj, Bilingual):
        return (obj.en_html if lang == "en" else obj.fr_html), obj.png, obj.text
    if isinstance(obj, str):
        return f"<p>{html.escape(obj)}</p>", None, obj
    try:
        from matplotlib.figure import Figure

        if isinstance(obj, Figure):
            png = _fig_png(obj)
            return _png_img(png, None), png, "<figure>"
    except ImportError:  # pragma: no cover
        pass
    text = repr(obj)
    if hasattr(obj, "_repr_mimebundle_"):
        bundle = obj._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        text = bundle.get("text/plain", text)
        if "text/html" in bundle:
            return bundle["text/html"], None, text
        if "image/png" in bundle:
            png = bundle["image/png"]
            png = base64.b64decode(png) if isinstance(png, str) else png
            return _png_img(png, text), png, text
    if hasattr(obj, "_repr_html_") and obj._repr_html_() is not None:
        return obj._repr_html_(), None, text
    if hasattr(obj, "_repr_png_") and obj._repr_png_() is not None:
        png = obj._repr_png_()
        return _png_img(png, text), png, text
    return f"<pre>{html.escape(text)}</pre>", None, text


def bilingual(en_obj, fr_obj) -> Bilingual:
    """Show ``en_obj`` on the English page and ``fr_obj`` on the French one.

    Works with strings, pandas DataFrames, matplotlib figures and anything with an html
    or png representation. Introduced in notebooks/first-look.ipynb.
    """
    en_html, en_png, en_text = _html_of(en_obj, "en")
    fr_html, _fr_png, _ = _html_of(fr_obj, "fr")
    return Bilingual(en_html, fr_html, en_png, en_text)


# ------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------


class _Translator:
    """Passed to a figure's draw function: ``t(("loss", "perte"))`` -> the text in ``t.lang``."""

    def __init__(self, lang: str):
        self.lang = lang  # "en" or "fr"

    def __call__(self, label):
        return pick(label, self.lang)

    def num(self, x: float, digits: int = 2, percent: bool = False) -> str:
        """A number in this language's typography (decimal comma in French)."""
        return _number(x, self.lang, digits, percent)


def _fig_png(fig, dpi: int = 100) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _french_ticks(fig) -> None:
    """Decimal comma in the tick labels of every linear axis (French typography)."""
    from matplotlib.ticker import ScalarFormatter

    class _Comma(ScalarFormatter):
        def __call__(self, x, pos=None):
            return super().__call__(x, pos).replace(".", ",")

    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "linear" and isinstance(axis.get_major_formatter(), ScalarFormatter):
                axis.set_major_formatter(_Comma())


def figure(draw: Callable, alt=None, figsize: tuple[float, float] = (6.0, 3.5), nrows: int = 1, ncols: int = 1,
           dpi: int = 100) -> Bilingual:
    """Draw a matplotlib figure once per language and display both.

    ``draw(ax, t)`` draws on ``ax`` (an array of axes if ``nrows``/``ncols`` > 1) and
    uses ``t(("English", "Français"))`` for every text, ``t.lang`` for anything else.
    ``alt`` is the image description read by screen readers (a pair). Each version is an
    inline PNG ``<img>``. Introduced in notebooks/pretraining.ipynb.
    """
    from matplotlib.figure import Figure

    versions: dict[str, tuple[str, bytes]] = {}
    for lang in LANGS:
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=True)
        draw(axes, _Translator(lang))
        if lang == "fr":
            _french_ticks(fig)
        png = _fig_png(fig, dpi)
        versions[lang] = (_png_img(png, pick(alt, lang)), png)
    return Bilingual(versions["en"][0], versions["fr"][0], versions["en"][1], pick(alt, "en") or "<figure>")


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Moving average over the last ``window`` values (window <= 1: unchanged)."""
    if window <= 1:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_lines(series: Mapping, xlabel=None, ylabel=None, title=None, logy: bool = False, alt=None,
               figsize: tuple[float, float] = (6.0, 3.5), marker: str | None = None) -> Bilingual:
    """Line plot of several curves: ``series = {("train", "entraînement"): (xs, ys), ...}``.

    Keys are labels (pairs or strings) shown in the legend. Introduced in notebooks/pretraining.ipynb.
    """

    def draw(ax, t):
        for label, (xs, ys) in series.items():
            ax.plot(list(xs), list(ys), label=t(label), marker=marker)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(t(xlabel) or "")
        ax.set_ylabel(t(ylabel) or "")
        if title is not None:
            ax.set_title(t(title))
        if len(series) > 1:
            ax.legend()
        ax.grid(alpha=0.3)

    return figure(draw, alt=alt if alt is not None else title, figsize=figsize)


def plot_loss(history, title=None, smooth: int = 1, logy: bool = False, xlabel=T("step", "étape"),
              ylabel=T("loss", "perte"), alt=None, figsize: tuple[float, float] = (6.0, 3.5)) -> Bilingual:
    """The loss curve of a training: ``history`` is ``[(step, loss), ...]`` (e.g.
    ``ckpt.history``) or a dict ``{label: history}`` for several curves.

    ``smooth`` averages over that many steps. Introduced in notebooks/pretraining.ipynb.
    """
    histories = history if isinstance(history, Mapping) else {T("loss", "perte"): history}
    series = {}
    for label, h in histories.items():
        steps = [s for s, _ in h]
        series[label] = (steps, _smooth([v for _, v in h], smooth))
    default_alt = T("Loss curve: loss against training step", "Courbe de perte : perte en fonction de l’étape d’entraînement")
    return plot_lines(series, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy,
                      alt=alt if alt is not None else (title if title is not None else default_alt), figsize=figsize)


def plot_bars(values: Mapping, ylabel=None, title=None, percent: bool = False, alt=None,
              figsize: tuple[float, float] = (6.0, 3.5)) -> Bilingual:
    """Bar chart of ``{label: value}`` (labels are pairs or strings), values written on the bars.

    ``percent=True`` shows fractions (0.92) as percentages. Introduced in notebooks/pretraining.ipynb.
    """

    def draw(ax, t):
        names = [t(k) for k in values]
        vals = [float(v) for v in values.values()]
        bars = ax.bar(names, vals, color="#4C72B0")
        for b, v in zip(bars, vals):
            ax.annotate(t.num(v, 2, percent), (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=9)
        if percent:
            ax.set_ylim(0, max(1.0, max(vals, default=0) * 1.1))
            ax.yaxis.set_major_formatter(lambda x, pos: t.num(x, 1, True))
        ax.set_ylabel(t(ylabel) or "")
        if title is not None:
            ax.set_title(t(title))
        ax.grid(axis="y", alpha=0.3)

    return figure(draw, alt=alt if alt is not None else title, figsize=figsize)


# ------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------


def _cell(value, lang: str, digits: int, percent: bool):
    if isinstance(value, T) or (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return pick(value, lang)
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return _number(value, lang, digits, percent)
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.bool_):
            return "✓" if value else "✗"
        if isinstance(value, np.floating):
            return _number(float(value), lang, digits, percent)
    except ImportError:  # pragma: no cover
        pass
    return value


def table(df, columns: Mapping | None = None, caption=None, digits: int = 2, percent: Iterable[str] = (),
          index: bool = False) -> Bilingual:
    """A pandas DataFrame as a table in both languages.

    ``columns`` renames (and orders) columns: ``{"acc": T("accuracy", "exactitude")}``.
    Cells that are pairs are translated; floats get ``digits`` decimals (decimal comma in
    French); columns listed in ``percent`` show fractions as percentages with one decimal
    fewer (0.9375 -> 93.8% / 93,8 %); booleans show as ✓ / ✗. Introduced in notebooks/first-look.ipynb.
    """
    import pandas as pd

    df = pd.DataFrame(df)
    percent = set(percent)
    cols = list(columns) if columns else list(df.columns)
    for c in cols:  # a column the data lacks (e.g. a model's reply without it) shows empty
        if c not in df.columns:
            df[c] = ""
    out = {}
    for lang in LANGS:
        view = pd.DataFrame(
            {
                pick(columns[c], lang) if columns else str(c): [_cell(v, lang, digits, c in percent) for v in df[c].tolist()]
                for c in cols
            },
            index=df.index,
        )
        body = view.to_html(index=index, escape=True, border=0, classes="ftlab-table")
        cap = pick(caption, lang)
        if cap:  # insert the caption right after the opening <table ...> tag
            body = body.replace(">", f"><caption>{html.escape(cap)}</caption>", 1)
        out[lang] = (body, view)
    text = out["en"][1].to_string(index=index)
    if caption is not None:
        text = f"{pick(caption, 'en')}\n{text}"
    return Bilingual(out["en"][0], out["fr"][0], None, text)


def results_table(rows: Sequence[Mapping] | Mapping, columns: Mapping | None = None, caption=None, digits: int = 2,
                  percent: Iterable[str] = ()) -> Bilingual:
    """A small results table from a list of dicts (one per row), in both languages.

    Example::

        ftlab.results_table(
            [{"model": T("base", "base"), "acc": 0.0}, {"model": "SFT", "acc": 0.94}],
            columns={"model": T("model", "modèle"), "acc": T("held-out accuracy", "exactitude (test)")},
            percent=["acc"])

    A single dict ``{column: value}`` gives a one-row table. Introduced in notebooks/pretraining.ipynb.
    """
    import pandas as pd

    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    return table(pd.DataFrame(rows), columns=columns, caption=caption, digits=digits, percent=percent)
