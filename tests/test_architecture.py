"""The layering and hygiene rules of ../shared/STYLE.md, checked by the tools that own them, on every CI run.

- import-linter (`lint-imports`, contracts in pyproject.toml): the layers, a torch-free runtime, engines reached only
  through the backend protocol, and no import cycles between sibling modules.
- ruff (rules in pyproject.toml), including PLC2701: no module imports another module's private names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `pip install -e '.[dev]'` (scripts/setup_env.sh) provides it")
    return found


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: import-linter finds the package by importing it; the copy in `root` must win over the checkout
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root)}
    return subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=root, capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def _summary(stdout: str) -> str:
    return next((line for line in stdout.splitlines() if line.startswith("Contracts:")), "no summary")


def test_import_contracts_are_kept() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 broken" in _summary(proc.stdout) or "broken" not in _summary(proc.stdout)


def test_a_runtime_module_that_imports_torch_breaks_the_contract(tmp_path: Path) -> None:
    """The contracts bite: the same check on a copy of the package whose runtime reaches torch fails and names it."""
    shutil.copytree(ROOT / "lighthead_edge", tmp_path / "lighthead_edge",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    draw = tmp_path / "lighthead_edge" / "runtime" / "draw.py"
    draw.write_text(draw.read_text() + "\nfrom lighthead_edge.modeling import detector  # noqa\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "lighthead_edge.runtime.draw -> lighthead_edge.modeling.detector" in proc.stdout, proc.stdout[-3000:]


def test_ruff_is_clean() -> None:
    proc = subprocess.run([_tool("ruff"), "check", "lighthead_edge", "scripts", "tests", "calibration"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
