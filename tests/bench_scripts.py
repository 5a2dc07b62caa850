"""The benchmark scripts of ``scripts/`` as modules, for their tests (``from bench_scripts import load_script``;
``tests/`` is on ``sys.path`` in pytest's rootdir import mode)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` loaded afresh as the module ``<name>_script`` (registered in ``sys.modules``: dataclasses
    look their module up while a class is made)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
