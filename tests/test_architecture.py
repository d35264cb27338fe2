"""The package layout keeps its architecture: layers without cycles, small modules, one piece of magic, old import
paths kept for one release. docs/architecture.md describes the layers."""

import ast
import importlib
import shutil
import subprocess
import sys
import warnings
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
    assert "1 kept, 0 broken" in result.stdout


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


# Old path -> (a name, the new module that defines it).
MOVED = {
    "trl_smol.presets": ("TIERS", "trl_smol.memory.tiers"),
    "trl_smol.memory_estimate": ("estimate_memory", "trl_smol.memory.estimate"),
    "trl_smol.hardware": ("detect_hardware", "trl_smol.memory.hardware"),
    "trl_smol.chat_template": ("apply_smollm3_template", "trl_smol.templating.template"),
    "trl_smol.mixtures": ("smoltalk2_mixture", "trl_smol.data.mixtures"),
    "trl_smol.course": ("MissingSplitError", "trl_smol.data.smoltalk2"),
    "trl_smol.integration": ("detect_role", "trl_smol.launch"),
    "trl_smol.render": ("render_examples", "trl_smol.commands.render"),
    "trl_smol.doctor": ("run", "trl_smol.commands.doctor"),
    "trl_smol.estimate": ("run", "trl_smol.commands.estimate"),
    "trl_smol.cli": ("main", "trl_smol.commands"),
    "trl_smol.demo_data": ("demo_rows", "trl_smol.demo.data"),
    "trl_smol.callbacks.samples": ("SampleGenerationCallback", "trl_smol.samples.callback"),
    "trl_smol.callbacks.memory": ("peak_rss", "trl_smol.memory.measure"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_paths_still_work_with_a_notice(old):
    name, new = MOVED[old]
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, FutureWarning) and new.rsplit(".", 1)[0] in str(w.message) for w in caught)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
