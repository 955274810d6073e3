"""Showing the library's real code in a notebook: :func:`source` renders a function's or class's source, highlighted,
straight from the installed module (so the book can never show code that is not the code that ran)."""
from __future__ import annotations

import inspect
import textwrap


class Source:
    """A highlighted code block in Jupyter (HTML via Pygments), plain text elsewhere."""

    def __init__(self, code: str, title: str):
        self.code, self.title = code, title

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
        fmt = HtmlFormatter(noclasses=True, style="default")
        return (f"<div style='font-size:0.85em;color:#555'>{self.title}</div>"
                + highlight(self.code, PythonLexer(), fmt))

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"

    def __str__(self) -> str:
        return self.code


def source(obj, *, start: str | None = None) -> Source:
    """The source of ``obj`` (function, method, class), dedented, titled with where it lives.

    ``start``: begin at the first line containing this text (e.g. a method's ``def loss``)."""
    try:
        code = inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise TypeError(f"no source available for {obj!r}: {e}") from None
    code = textwrap.dedent(code)
    if start is not None:
        lines = code.splitlines()
        at = next((i for i, ln in enumerate(lines) if start in ln), None)
        if at is None:
            raise ValueError(f"{start!r} does not occur in the source of {getattr(obj, '__qualname__', obj)}")
        code = textwrap.dedent("\n".join(lines[at:]))
    mod = inspect.getmodule(obj)
    where = f"{mod.__name__ if mod else '?'}.{getattr(obj, '__qualname__', getattr(obj, '__name__', ''))}"
    try:
        line = inspect.getsourcelines(obj)[1]
        where += f" (line {line})"
    except (TypeError, OSError):
        pass
    return Source(code.rstrip() + "\n", where)
