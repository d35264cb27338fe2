"""The package layout keeps its architecture: layers without cycles, small modules, one piece of magic, the 0.1
import paths gone (0.3.0). docs/architecture.md describes the layers."""

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trl_smol"
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layer_contracts_hold():
    """import-linter's layer contract (pyproject.toml): features never import the trainer or the hook, and
    foundations import no features."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([lint], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_only_the_hook_touches_another_librarys_objects():
    """wrapt (post-import hooks) is imported by `trl_smol/hook.py` alone, and no module sets attributes on objects
    with `object.__setattr__` (state lives in declared fields and the run plan)."""
    importers = []
    for path in modules():
        source = path.read_text()
        tree = ast.parse(source)
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if "wrapt" in names:
            importers.append(path.name)
        assert "object.__setattr__" not in source, path
    assert importers == ["hook.py"]


# The 0.1 module paths, removed in 0.3.0 (docs/architecture.md says where each went).
REMOVED = [
    "trl_smol._deprecated",
    "trl_smol.presets",
    "trl_smol.memory_estimate",
    "trl_smol.hardware",
    "trl_smol.chat_template",
    "trl_smol.mixtures",
    "trl_smol.course",
    "trl_smol.integration",
    "trl_smol.render",
    "trl_smol.doctor",
    "trl_smol.estimate",
    "trl_smol.cli",
    "trl_smol.demo_data",
    "trl_smol.callbacks.samples",
    "trl_smol.callbacks.memory",
]


@pytest.mark.parametrize("old", REMOVED)
def test_old_import_paths_are_gone(old):
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
