"""MkDocs hook: render the pages' TeX to MathML when the site is built.

``pymdownx.arithmatex`` (generic mode) leaves each formula as ``\\(...\\)`` in a
``<span class="arithmatex">`` or ``\\[...\\]`` in a ``<div class="arithmatex">``; this
hook replaces the TeX by MathML (``latex2mathml``), which browsers display natively.
The site therefore shows its mathematics without JavaScript and without an internet
connection. ``aligned`` blocks are converted as ``split`` (the same layout; the
converter knows only the latter). A backslash that ends a source line is TeX's control
space (``\\ `` followed by the line break): the converter would print it as a literal
backslash, so it is passed on as ``\\ ``. A formula the converter cannot render (an
error, an alignment ``&``, a line break or a backslash left in the output) fails the
build, naming the page.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.S)
_DISPLAY = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.S)
#: A control space written as a backslash at the end of a line (an odd run of
#: backslashes before the line break; ``\\\\`` is TeX's own line break).
_CONTROL_SPACE_AT_EOL = re.compile(r"(?<!\\)((?:\\\\)*)\\[ \t]*\n")
#: A token that shows a backslash: TeX the converter did not understand.
_LITERAL_BACKSLASH = re.compile(r"<m(?:i|o|n|text)[^>]*>[^<]*\\")


def normalize(tex: str) -> str:
    """The formula as the converter reads it: ``aligned`` as ``split``, and a backslash
    that ends a line as the control space it is in TeX (``\\ ``)."""
    tex = _CONTROL_SPACE_AT_EOL.sub(lambda m: m.group(1) + "\\ ", tex)
    return tex.replace("{aligned}", "{split}")


def _renderer(display: str, page):
    def render(match: re.Match) -> str:
        tex = normalize(html.unescape(match.group(1)))
        try:
            mathml = convert(tex, display=display)
        except Exception as err:  # a converter error is a bug in the page: say where
            raise ValueError(f"{page.file.src_path}: cannot render {tex!r}: {err}") from err
        if any(mark in mathml for mark in ("<merror", "<mi>&amp;</mi>", "<mi>&</mi>",
                                           'linebreak="newline"')) \
                or _LITERAL_BACKSLASH.search(mathml):
            raise ValueError(f"{page.file.src_path}: cannot render {tex!r}")
        tag = "div" if display == "block" else "span"
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'
    return render


def on_page_content(html_text: str, page, **kwargs) -> str:
    """Replace every arithmatex formula of a page by MathML."""
    html_text = _DISPLAY.sub(_renderer("block", page), html_text)
    return _INLINE.sub(_renderer("inline", page), html_text)
