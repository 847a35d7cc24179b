"""Rates with their counts and their uncertainty.

A rate measured on a handful of questions says little: 2 right out of 4 is "50 %", and so
is 200 out of 400, but the first is compatible with anything from 15 % to 85 %. Every rate
the course compares is a :class:`Rate`: the count ``k`` out of ``n``, shown as
"47.5% (19/40)" in English and "47,5 % (19/40)" in French, with its 95 % Wilson interval.

Introduced in notebooks/real-model.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Rate", "wilson_interval", "rate", "claim"]

#: z for a two-sided 95 % interval of the normal distribution.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k/n`` (95 % by default), as fractions.

    Unlike the textbook ``p ± z·sqrt(p(1-p)/n)``, it never leaves [0, 1] and stays honest
    at 0/n and n/n (Wilson, 1927; the interval recommended by Brown, Cai and DasGupta, 2001).
    ``n == 0`` gives ``(0.0, 1.0)``: nothing is known. Introduced in notebooks/real-model.ipynb.
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _pct(x: float, lang: str, digits: int) -> str:
    text = f"{100 * x:.{digits}f}"
    if digits and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(".", ",") + "\u202f%" if lang == "fr" else text + "%"


@dataclass(frozen=True)
class Rate:
    """``k`` successes out of ``n`` trials, e.g. ``Rate(19, 40)``.

    ``float(rate)`` is the fraction; :meth:`text` writes "47.5% (19/40)" or
    "47,5 % (19/40)"; :meth:`interval` is the 95 % Wilson interval. Two rates whose
    intervals overlap are not shown to differ by this test (:meth:`differs_from`).
    Introduced in notebooks/real-model.ipynb.
    """

    k: int  # successes
    n: int  # trials

    def __post_init__(self):
        if self.n < 0 or not 0 <= self.k <= max(self.n, 0):
            raise ValueError(f"Rate needs 0 <= k <= n, got k={self.k}, n={self.n}")

    @classmethod
    def of(cls, flags) -> "Rate":
        """The rate of True values in an iterable of booleans."""
        flags = [bool(f) for f in flags]
        return cls(sum(flags), len(flags))

    @property
    def value(self) -> float:
        """The fraction k/n (0.0 when n is 0)."""
        return self.k / self.n if self.n else 0.0

    def __float__(self) -> float:
        return self.value

    def interval(self) -> tuple[float, float]:
        """The 95 % Wilson interval, as fractions."""
        return wilson_interval(self.k, self.n)

    def differs_from(self, other: "Rate") -> bool:
        """True when the two 95 % intervals do not overlap: a difference this test can see.

        Conservative on purpose (non-overlapping intervals imply a significant difference, not
        the other way round); an overlap means "this size of test cannot tell them apart"."""
        lo, hi = self.interval()
        olo, ohi = other.interval()
        return hi < olo or ohi < lo

    def text(self, lang: str = "en", digits: int = 1, interval: bool = False) -> str:
        """"47.5% (19/40)" / "47,5 % (19/40)"; with ``interval=True``, the 95 % interval too:
        "47.5% (19/40; 95% CI 32.9–62.5%)" / "47,5 % (19/40 ; IC à 95 % 32,9–62,5 %)"."""
        base = _pct(self.value, lang, digits)
        if not interval:
            return f"{base} ({self.k}/{self.n})"
        lo, hi = self.interval()
        lo_s, hi_s = _pct(lo, lang, digits), _pct(hi, lang, digits)
        if lang == "fr":
            return f"{base} ({self.k}/{self.n}\u202f; IC à 95\u202f% {lo_s.replace(chr(0x202f) + '%', '')}–{hi_s})"
        return f"{base} ({self.k}/{self.n}; 95% CI {lo_s.rstrip('%')}–{hi_s})"

    def pair(self, digits: int = 1, interval: bool = False) -> tuple[str, str]:
        """(English text, French text): a table cell that :func:`ftlab.table` translates."""
        return self.text("en", digits, interval), self.text("fr", digits, interval)

    def glue(self, name: str) -> None:
        """Glue the parts of the rate for the prose (myst-nb): ``{name}_pct`` (percent, a float),
        ``{name}_k`` and ``{name}_n`` (ints), ``{name}_lo`` and ``{name}_hi`` (the 95 % interval,
        in percent). In a page: ``:glue:text:`/notebooks/x.ipynb::{name}_pct:.0f` percent
        (:glue:text:`/notebooks/x.ipynb::{name}_k:d`/:glue:text:`/notebooks/x.ipynb::{name}_n:d`)``."""
        from myst_nb import glue

        lo, hi = self.interval()
        for part, value in (("pct", 100 * self.value), ("k", self.k), ("n", self.n), ("lo", 100 * lo), ("hi", 100 * hi)):
            glue(f"{name}_{part}", value, display=False)

    def __str__(self) -> str:
        return self.text("en")


def rate(flags) -> Rate:
    """Shortcut for :meth:`Rate.of`: ``ftlab.rate(r.stopped for r in replies)``.

    Introduced in notebooks/real-model.ipynb.
    """
    return Rate.of(flags)


def claim(holds: bool, says: str) -> None:
    """Check that a sentence of the course's text holds for the measurement just made.

    The notebooks' hidden cells call it after each measurement that the prose describes, e.g.
    ``claim(long.differs_from(short), "docs/sft.rst says the long run goes further: update it")``.
    In the site's build (``tools/execute.py`` sets ``FTLAB_STRICT_CLAIMS=1``), a claim that
    does not hold stops the notebook with ``AssertionError(says)``: the build fails instead of
    publishing a false sentence. In a reader's own run (``make lab``, another CPU, another
    thread count, ``FTLAB_MODEL``) the lab models may come out slightly different: the claim
    prints which sentence does not hold for this run, and the notebook goes on.
    Introduced in notebooks/sft.ipynb.
    """
    import os

    from .real import real_model_id

    if holds:
        return
    if os.environ.get("FTLAB_STRICT_CLAIMS") == "1" and real_model_id() is None:
        raise AssertionError(says)
    model = f" (FTLAB_MODEL={real_model_id()})" if real_model_id() else ""
    print(f"ftlab: in this run{model}, a sentence of the text does not hold: {says}")
