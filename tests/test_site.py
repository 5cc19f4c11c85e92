"""The documentation site stands alone: it builds, shows its mathematics without the
internet, names default values, and refers to nothing outside the repository."""

import inspect
import re
import shutil
import subprocess
import sys
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import pytest

import cvxlpgd
from cvxlpgd.diagnostics import compare
from cvxlpgd.engine.options import DEFAULT_SOLVER, DEFAULT_TAU
from cvxlpgd.lpgd import zero_gradient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists():
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def visible_text(html: str) -> str:
    """A page without code, scripts and MathML (where backslashes are legitimate)."""
    return re.sub(
        r"<pre.*?</pre>|<code.*?</code>|<script.*?</script>|<math.*?</math>", "", html, flags=re.S
    )


def test_mathematics_is_rendered_at_build_time(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = visible_text(page.read_text(encoding="utf-8"))
        leftover = re.findall(r"\\[a-zA-Z]+|\\\(|\\\[|\$\$", text)
        assert not leftover, f"{page.relative_to(site)}: unrendered TeX {leftover[:5]}"
    lpgd = (site / "lpgd" / "index.html").read_text(encoding="utf-8")
    assert lpgd.count("<math") > 40
    assert "<mtable" in lpgd  # the aligned primal/dual block keeps its alignment
    assert "<mi>&amp;</mi>" not in lpgd and "<mi>&</mi>" not in lpgd


#: TeX a reader would see as text: a command (``\\frac``), a spacing command (``\\,``,
#: ``\\;``, ``\\!``, ``\\:``, ``\\ ``), math delimiters.
_TEX_LEFT = re.compile(r"\\[a-zA-Z]+|\\[,;:! ]|\\\(|\\\[|\$\$")


def test_no_tex_is_shown_as_text(site):
    """Outside MathML, code and scripts no TeX command is left; inside MathML no token
    shows a backslash (the converter prints TeX it does not understand literally, e.g.
    a control space written as a backslash at the end of a line, as in the data
    gradient G(x, y) on the LPGD page)."""
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        outside = re.sub(r"<[^>]+>", "", visible_text(html))
        assert not _TEX_LEFT.findall(outside), (
            f"{page.relative_to(site)}: TeX outside math {_TEX_LEFT.findall(outside)[:5]}"
        )
        for math in re.findall(r"<math.*?</math>", html, flags=re.S):
            tokens = re.findall(r"<m(?:i|o|n|text)\b[^>]*>([^<]*)</m", math)
            shown = [token for token in tokens if "\\" in token]
            assert not shown, f"{page.relative_to(site)}: a backslash shown in {shown[:3]}"
    # The formula that showed it renders its four partial derivatives, no backslash.
    lpgd = (site / "lpgd" / "index.html").read_text(encoding="utf-8")
    gradient = next(
        m for m in re.findall(r'<div class="arithmatex">.*?</div>', lpgd, re.S) if "<mi>G</mi>" in m
    )
    assert gradient.count("&#x02202;") == 8 and "\\" not in gradient  # ∂, 4 fractions


def test_a_backslash_ending_a_line_of_tex_is_a_control_space():
    spec = spec_from_file_location("docs_math_hook", ROOT / "docs" / "hooks" / "math.py")
    hook = module_from_spec(spec)
    spec.loader.exec_module(hook)
    assert hook.normalize("a,\\\nb") == "a,\\ b"
    assert hook.normalize("a,\\  \nb") == "a,\\ b"
    assert hook.normalize("a\\\\\nb") == "a\\\\\nb"  # TeX's line break stays
    assert hook.normalize("a\\\\\\\nb") == "a\\\\\\ b"  # a line break, then a control space
    assert hook.normalize("\\begin{aligned}x\\end{aligned}") == "\\begin{split}x\\end{split}"


def test_display_formulas_scroll_sideways_only(site):
    """Chromium lays a MathML line out a few pixels taller than its box, which showed a
    vertical scroll bar on display formulas under the theme's ``overflow: auto``."""
    css = (site / "stylesheets" / "math.css").read_text(encoding="utf-8")
    assert re.search(r"div\.arithmatex\s*\{[^}]*overflow-y:\s*hidden", css)
    assert re.search(r"div\.arithmatex\s*\{[^}]*overflow-x:\s*auto", css)
    for name in ("lpgd", "diagnostics"):
        assert "stylesheets/math.css" in (site / name / "index.html").read_text(encoding="utf-8")


def test_the_site_loads_no_script_style_or_font_from_the_internet(site):
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        external = re.findall(
            r'<script[^>]+src="https?://[^"]+"|<link[^>]+href="https?://'
            r'[^"]+"[^>]*>',
            html,
        )
        external = [tag for tag in external if 'rel="canonical"' not in tag]
        assert not external, f"{page.relative_to(site)}: {external[:3]}"
        assert "fonts.googleapis" not in html and "mathjax" not in html.lower()


def test_api_signatures_show_default_values_not_constant_names(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    constants = re.findall(
        r'<span class="o">=</span>\s*<span class="n">([A-Z][A-Z0-9_]+)</span>', api
    )
    assert not constants, f"signatures show constant names: {sorted(set(constants))}"
    assert re.search(r'tau</span>.{0,200}?<span class="mf">0.1</span>', api, re.S)
    # The literal defaults agree with the constants other modules use.
    layer_defaults = inspect.signature(cvxlpgd.CvxpyLayer).parameters
    assert layer_defaults["tau"].default == DEFAULT_TAU
    assert layer_defaults["solver"].default == DEFAULT_SOLVER
    assert (
        inspect.signature(cvxlpgd.compare_gradients).parameters["taus"].default
        == compare.DEFAULT_TAUS
    )
    for function in (zero_gradient.zero_gradient_report, zero_gradient.warn_if_zero_gradient):
        if "atol" in inspect.signature(function).parameters:
            assert inspect.signature(function).parameters["atol"].default == zero_gradient.ZERO_ATOL


def test_nothing_refers_to_files_outside_the_repository():
    files = [
        ROOT / "README.md",
        ROOT / "mkdocs.yml",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("docs/**/*.py"),
        *ROOT.glob("cvxlpgd/**/*.py"),
        *ROOT.glob("examples/**/*.py"),
        *ROOT.glob("benchmarks/**/*.py"),
    ]
    assert len(files) > 30
    outside = re.compile(r"\.\./shared|/work/shared|DESIGN\.md|PAPER\.md")
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in files
        for match in [outside.search(path.read_text(encoding="utf-8"))]
        if match
    ]
    assert not offenders


def test_the_campaign_table_on_the_benchmarks_page_is_the_stored_one():
    """Every row and the verdict of the differential campaign shown in the docs come from
    benchmarks/results/differential.txt, verbatim."""
    stored = (ROOT / "benchmarks" / "results" / "differential.txt").read_text().splitlines()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    section = page.split("{ #differential }", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in stored if line.startswith("|") or line.startswith("Verdict")]
    shown = [line for line in section if line.startswith("|") or line.startswith("Verdict")]
    assert rows and shown == rows
