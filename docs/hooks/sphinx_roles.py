"""MkDocs hook: render the Sphinx roles of the package's docstrings as plain code.

The docstrings are numpydoc with Sphinx cross-reference roles (:func:`name`), so that
they read well in ``help()`` and in Sphinx-style tools; mkdocstrings renders such a
role verbatim, as ``:func:`` followed by a code span. This hook drops the role prefix
and resolves the ``~`` shorthand (``~a.b.C`` shows as ``C``), leaving the code span.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const|term):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")


def on_page_content(html: str, **kwargs) -> str:
    """Strip Sphinx role prefixes from the rendered page."""
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))
