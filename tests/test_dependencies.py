"""Every third-party package the library imports is declared in pyproject.toml, in `dependencies` or an extra.

Imports are read with `ast` from every module of `trl_smol`, at module level and inside functions alike, and mapped
to the distributions that provide them with `importlib.metadata.packages_distributions()`.
"""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trl_smol"


def normalize(name: str) -> str:
    """PEP 503 normalisation: `PyYAML` and `huggingface_hub` compare as `pyyaml` and `huggingface-hub`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {normalize(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group()) for requirement in requirements}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level name of each absolute import outside the standard library -> the modules importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "trl_smol":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_walk_finds_imports_at_module_level_and_inside_functions():
    imports = third_party_imports()
    assert "trl_smol/memory/hardware.py" in imports["psutil"]  # module level
    assert "trl_smol/testing.py" in imports["tokenizers"]  # inside a function
    assert "os" not in imports and "trl_smol" not in imports


def test_every_imported_package_is_declared():
    declared = declared_distributions()
    providers = packages_distributions()
    missing = []
    for name, importers in sorted(third_party_imports().items()):
        # A package that is not installed here (an optional one) is looked up by its import name.
        distributions = {normalize(distribution) for distribution in providers.get(name, [name])}
        if not distributions & declared:
            missing.append(f"{name} ({', '.join(sorted(distributions))}), imported by {', '.join(sorted(importers))}")
    assert not missing, "declare in pyproject.toml [project] dependencies or an extra:\n" + "\n".join(missing)


def test_constraints_pin_every_declared_dependency_within_its_range():
    """CI installs with `-c constraints/tested.txt` (docs/ci.md): a range in pyproject.toml that excludes the tested
    version, or a new dependency without a pin, fails here rather than in the install."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints" / "tested.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalize(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tested_extras = project["optional-dependencies"]["dev"] + project["optional-dependencies"]["deepspeed"]
    problems = []
    for requirement in map(Requirement, project["dependencies"] + tested_extras):
        version = pins.get(normalize(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not pinned")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: tested {version}, pyproject.toml asks {requirement.specifier}")
    assert not problems, "refresh with `python .ci/deps.py freeze > constraints/tested.txt`:\n" + "\n".join(problems)
