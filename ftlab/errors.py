"""The one exception ftlab raises on purpose.

When something is wrong with the *setup* (a wrong ``FTLAB_MODEL``, an unknown preset,
an unusable ``FTLAB_DEVICE``), ftlab raises :class:`FtlabError` with a message that says
what was wrong and what to do, instead of a long traceback from deep inside a library.
"""

from __future__ import annotations

__all__ = ["FtlabError", "short_traceback"]


class FtlabError(RuntimeError):
    """A setup problem explained in one message: what was wrong and what to do.

    Raised ``from None`` where it replaces a library error, so a notebook shows the
    message and not a wall of traceback. Introduced in notebooks/first-look.ipynb.
    """


def short_traceback(fn):
    """Decorator for public helpers: an :class:`FtlabError` raised anywhere inside ``fn``
    reaches the notebook with a two-line traceback (the caller's line and this one)
    instead of every frame of ftlab it went through. Internal; introduced with :class:`FtlabError` in notebooks/first-look.ipynb."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FtlabError as exc:
            raise exc.with_traceback(None) from None

    return wrapper
