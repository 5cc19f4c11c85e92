"""Documentation that runs and stays complete.

* Every ``python`` code block of README.md and docs/*.md executes, each in a fresh
  namespace. A block that must not run is fenced ````` ``` {.python .no-run} `````
  (mkdocs' attribute syntax; ```` ```python no-run ```` works too): keep those rare.
* Every docstring example (``>>>``) in the package passes, as ``python -m doctest``
  would run it.
* Every public name has a numpydoc docstring with the sections its signature and body
  call for (Parameters, Returns, Raises).
* The site's navigation lists every page, including experiments and benchmarks.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import importlib
import inspect
import pkgutil
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import cvxlpgd

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")


# ---- code blocks -------------------------------------------------------------------------


def code_blocks(path: Path) -> list[tuple[int, str, str]]:
    """``(line, info string, code)`` for every fenced block of a Markdown file."""
    blocks, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent, start = match["fence"], match["indent"], i
        body = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence)
            and lines[i].strip() == fence[0] * len(lines[i].strip())
        ):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append((start + 1, match["info"], "\n".join(body) + "\n"))
        i += 1
    return blocks


def runnable(info: str) -> bool:
    """Python blocks run unless marked no-run (``{.python .no-run}`` or ``python no-run``)."""
    if info.startswith("{"):
        classes = re.findall(r"\.([\w-]+)", info)
        return bool(classes) and classes[0] in ("python", "py") and "no-run" not in classes
    words = info.split()
    return bool(words) and words[0] in ("python", "py") and "no-run" not in words[1:]


def is_python(info: str) -> bool:
    return runnable(info) or "python" in info


BLOCKS = [
    pytest.param(path, line, code, id=f"{path.relative_to(ROOT)}:{line}")
    for path in PAGES
    for line, info, code in code_blocks(path)
    if runnable(info)
]


def test_the_block_parser_and_the_no_run_convention(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\na = 1\n```\n``` {.python .no-run}\nb = 2\n```\n"
        "!!! note\n    ```python\n    c = 3\n    ```\n```bash\nls\n```\n"
        "````markdown\n```python\nd = 4\n```\n````\n"
    )
    found = [(info, code) for _, info, code in code_blocks(page)]
    assert found == [
        ("python", "a = 1\n"),
        ("{.python .no-run}", "b = 2\n"),
        ("python", "c = 3\n"),
        ("bash", "ls\n"),
        ("markdown", "```python\nd = 4\n```\n"),
    ]
    assert [runnable(info) for info, _ in found] == [True, False, True, False, False]
    assert runnable("python no-run") is False and runnable("py") is True


def test_every_page_has_runnable_code_and_no_run_blocks_are_rare():
    total = sum(1 for path in PAGES for _, info, _ in code_blocks(path) if is_python(info))
    skipped = sum(
        1
        for path in PAGES
        for _, info, _ in code_blocks(path)
        if is_python(info) and not runnable(info)
    )
    assert len(BLOCKS) >= 15
    assert skipped <= max(2, total // 10), f"{skipped} of {total} python blocks are no-run"


@pytest.mark.parametrize("path, line, code", BLOCKS)
def test_code_block_runs(path, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with warnings.catch_warnings():
        exec(compile(code, f"{path.name}:{line}", "exec"), {"__name__": "__docs__"})
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


# ---- doctests ----------------------------------------------------------------------------


def package_modules() -> list[str]:
    names = ["cvxlpgd"]
    for info in pkgutil.walk_packages(cvxlpgd.__path__, prefix="cvxlpgd."):
        names.append(info.name)
    return sorted(names)


def doctests_of(name: str):
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


DOCTEST_MODULES = [name for name in package_modules() if doctests_of(name)]


def test_the_documented_examples_are_found():
    assert {"cvxlpgd.torch.layer", "cvxlpgd.diagnostics.compare"} <= set(DOCTEST_MODULES)


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctests_of(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


# ---- numpydoc sections -------------------------------------------------------------------

PUBLIC_MODULES = [
    "cvxlpgd",
    "cvxlpgd.torch.layer",
    "cvxlpgd.diagnostics",
    "cvxlpgd.errors",
    "cvxlpgd.engine.batch",
    "cvxlpgd.solvers.parallel",
    "cvxlpgd.lpgd.formulas",
    "cvxlpgd.engine.exact",
    "cvxlpgd.problem.compile",
    "cvxlpgd.problem.cones",
    "cvxlpgd.solvers",
    "cvxlpgd.solvers.base",
    "cvxlpgd.solvers.scs_backend",
    "cvxlpgd.solvers.clarabel_backend",
    "cvxlpgd.solvers.ecos_backend",
    "cvxlpgd.demo",
    "cvxlpgd.__main__",
    "cvxlpgd.engine.fallback",
    "cvxlpgd.engine.solver_args",
    "cvxlpgd.engine.tolerances",
    "cvxlpgd.engine.catalog",
    "cvxlpgd.torch.persistence",
]
_SECTION = re.compile(r"^[ \t]*([A-Z]\w*(?: \w+)?)[ \t]*\n[ \t]*-{3,}[ \t]*$", re.M)


def sections(doc: str | None) -> set[str]:
    return set(_SECTION.findall(doc or ""))


def body_facts(function) -> tuple[bool, bool]:
    """Whether the function's own body returns a value and raises an exception."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    except (OSError, TypeError, SyntaxError):
        return False, False
    returns = raises = False
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # nested definitions document themselves
        if (
            isinstance(node, ast.Return)
            and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
        ):
            returns = True
        if isinstance(node, ast.Raise) and node.exc is not None:
            raises = True
        stack.extend(ast.iter_child_nodes(node))
    return returns, raises


def function_problems(name: str, function) -> list[str]:
    doc = inspect.getdoc(function)
    if not doc:
        return [f"{name}: no docstring"]
    found, problems = sections(doc), []
    signature = inspect.signature(function)
    if [p for p in signature.parameters if p not in ("self", "cls")] and "Parameters" not in found:
        problems.append(f"{name}: no Parameters section")
    returns, raises = body_facts(function)
    annotated = signature.return_annotation not in (inspect.Signature.empty, None, "None")
    if (returns or annotated) and not {"Returns", "Yields"} & found:
        problems.append(f"{name}: no Returns section")
    if raises and "Raises" not in found:
        problems.append(f"{name}: no Raises section")
    return problems


def class_problems(name: str, cls, with_methods: bool) -> list[str]:
    if not cls.__doc__:
        return [f"{name}: no docstring"]
    found, problems = sections(cls.__doc__), []
    if dataclasses.is_dataclass(cls):
        if dataclasses.fields(cls) and not {"Attributes", "Parameters"} & found:
            problems.append(f"{name}: dataclass without Attributes or Parameters section")
    elif "__init__" in vars(cls) and not getattr(cls, "_is_protocol", False):
        init = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        if init and "Parameters" not in found | sections(cls.__init__.__doc__):
            problems.append(f"{name}: no Parameters section")
    if with_methods:
        for attr, value in vars(cls).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, property):
                if not value.__doc__:
                    problems.append(f"{name}.{attr}: property without docstring")
            elif isinstance(value, (classmethod, staticmethod)):
                problems += function_problems(f"{name}.{attr}", value.__func__)
            elif inspect.isfunction(value):
                problems += function_problems(f"{name}.{attr}", value)
    return problems


def public_objects(module_name: str):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for attr in names:
        obj = getattr(module, attr)
        if module_name != "cvxlpgd" and getattr(obj, "__module__", None) != module_name:
            continue  # imported from elsewhere: checked where it is defined
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module_name}.{attr}", obj


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_numpydoc_docstrings(module_name):
    """Module docstring; functions: Parameters / Returns / Raises as their signature and
    body require; classes: Parameters (or Attributes for dataclasses); the exported
    classes (``cvxlpgd.__all__``) also for their public methods and properties."""
    module = importlib.import_module(module_name)
    problems = [] if module.__doc__ else [f"{module_name}: no module docstring"]
    exported = [getattr(cvxlpgd, n) for n in cvxlpgd.__all__]
    exported = {obj for obj in exported if inspect.isclass(obj)}
    for name, obj in public_objects(module_name):
        if inspect.isclass(obj):
            problems += class_problems(name, obj, with_methods=obj in exported)
        else:
            problems += function_problems(name, obj)
    assert not problems, "\n".join(problems)


def test_the_numpydoc_check_has_teeth():
    def undocumented(x):
        if x:
            raise ValueError(x)
        return x

    def documented(x):
        """Do it.

        Parameters
        ----------
        x : int
            The value.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            When x is truthy.
        """
        if x:
            raise ValueError(x)
        return x

    assert function_problems("f", undocumented) == ["f: no docstring"]
    assert function_problems("f", documented) == []
    documented.__doc__ = documented.__doc__.split("Raises")[0]
    assert function_problems("f", documented) == ["f: no Raises section"]


# ---- site ---------------------------------------------------------------------------------


def test_navigation_lists_every_page_and_the_hook_is_not_a_page():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r":\s*([\w-]+\.md)\s*$", config, re.M))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"experiments.md", "benchmarks.md", "api.md", "errors.md", "lpgd.md"} <= nav
    assert pages == nav, f"not in nav: {pages - nav}; missing files: {nav - pages}"
    assert "docs/hooks/sphinx_roles.py" in config and "hooks/" in config


def test_api_reference_covers_the_exports():
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in cvxlpgd.__all__:
        if name != "SOLVERS":
            assert f"::: cvxlpgd.{name}" in api, name


def test_readme_starts_with_the_install_and_demo_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert "pip install torch==2.13.0 && pip install -e . && python -m cvxlpgd demo" in first
    assert 'pip install -e ".[test]" && python -m pytest -q' in first
