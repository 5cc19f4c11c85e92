"""The architecture the folders promise: the core (problem, lpgd, engine, solvers)
imports no deep-learning framework, and ``import cvxlpgd`` loads the torch layer only
when a torch name is used. Checked in fresh interpreters."""

import subprocess
import sys

CORE = [
    "cvxlpgd.problem.compile",
    "cvxlpgd.problem.template",
    "cvxlpgd.problem.readouts",
    "cvxlpgd.lpgd.backward",
    "cvxlpgd.lpgd.zero_gradient",
    "cvxlpgd.engine.batch",
    "cvxlpgd.engine.exact",
    "cvxlpgd.engine.catalog",
    "cvxlpgd.engine.options",
    "cvxlpgd.solvers",
]

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_core_imports_without_torch():
    result = run(BLOCK_TORCH + "".join(f"import {m}\n" for m in CORE) + "print('ok')")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_torch_front_end_needs_torch():
    """The block above works: the torch layer's import fails under it."""
    result = run(BLOCK_TORCH + "import cvxlpgd.torch.layer")
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_import_cvxlpgd_loads_the_torch_layer_lazily():
    result = run(
        "import sys, cvxlpgd\n"
        "print('torch' in sys.modules, 'jax' in sys.modules)\n"
        "layer = cvxlpgd.CvxpyLayer\n"
        "print('torch' in sys.modules, layer.__module__)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False", "True", "cvxlpgd.torch.layer"]
