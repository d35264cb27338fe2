"""The versions CI tests with, and the newest releases that trl-smol allows (docs/ci.md).

python .ci/deps.py freeze > constraints/tested.txt
    Pins every distribution that `trl-smol[dev,deepspeed]` needs, directly or through another package, at the
    version installed here (run it in the environment the suite passed in). `.ci/run` installs with
    `-c constraints/tested.txt` (lane 1).

python .ci/deps.py newest PINS
    Lane 2's plan. Asks pip (`install --dry-run --upgrade --report`) which releases a new install of the
    dependencies in pyproject.toml would get today, within the project's ranges, with torch held at the tested
    version (the CPU build on this machine's disk). Prints each one that differs from constraints/tested.txt
    (`name tested -> newest`, one a line) and writes them as `name==version` lines to PINS; PINS stays empty
    when the newest releases are the tested ones.

VENV/bin/python .ci/deps.py scripts
    Writes into the virtual environment's bin/ the console scripts (`trl`, `trl-smol`, `accelerate`, ...) of the
    project's distributions that it sees only through `--system-site-packages`, so that the tests' `trl`, found
    next to `sys.executable`, runs the virtual environment's Python and the newest releases installed there.
"""

import json
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution, distributions
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "tested.txt"
EXTRAS = ("dev", "deepspeed")  # what `.ci/run` installs
HELD = "torch"  # installed from this machine's disk first; a resolved torch would be a CUDA build of several GB


def normalize(name: str) -> str:
    """PEP 503: `PyYAML` and `pyyaml`, `huggingface_hub` and `huggingface-hub` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements_of_the_project() -> list[Requirement]:
    table = project()
    strings = list(table["dependencies"])
    for extra in EXTRAS:
        strings += table["optional-dependencies"][extra]
    return [Requirement(string) for string in strings]


def installed_closure() -> dict[str, str]:
    """Name -> installed version of every distribution the project's requirements pull in, transitively."""
    pinned: dict[str, str] = {}
    pending = [(requirement, "") for requirement in requirements_of_the_project()]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = normalize(requirement.name)
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            sys.exit(f"deps.py: {requirement} is required but not installed: install the project first")
        pinned.setdefault(name, dist.version)
        # A distribution is walked once per extra it is asked for (`huggingface-hub[hf_xet]`, say).
        for asked in ("", *sorted(requirement.extras)):
            key = f"{name}[{asked}]"
            if key in pinned:
                continue
            pinned[key] = ""
            pending += [(Requirement(line), asked) for line in dist.requires or []]
    return {name: version for name, version in pinned.items() if "[" not in name}


def freeze() -> None:
    print("# The versions the test suite passes with; `.ci/run` installs with -c constraints/tested.txt (docs/ci.md).")
    print("# Refresh, where the suite passed: python .ci/deps.py freeze > constraints/tested.txt")
    for name, version in sorted(installed_closure().items()):
        # `2.13.0+cpu` -> `2.13.0`: the constraint matches the local CPU build and names the release.
        print(f"{name}=={version.split('+')[0]}")


def tested() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version
    return pins


def newest(pins_path: Path) -> None:
    versions = tested()
    wanted = [string for string in project()["dependencies"] if normalize(Requirement(string).name) != HELD]
    with tempfile.TemporaryDirectory() as tmp:
        hold, report = Path(tmp) / "hold.txt", Path(tmp) / "report.json"
        hold.write_text(f"{HELD}=={versions[HELD]}\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--upgrade", "--quiet", "--quiet"]
        command += ["--report", str(report), "-c", str(hold), *wanted]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"deps.py: pip could not resolve the newest releases (exit {done.returncode}; its output above)")
        install = json.loads(report.read_text())["install"]
    lines = []
    for item in sorted(install, key=lambda item: normalize(item["metadata"]["name"])):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        print(f"{name} {versions.get(normalize(name), '(new)')} -> {version}")
        lines.append(f"{name}=={version}\n")
    pins_path.write_text("".join(lines))


def scripts() -> None:
    if sys.prefix == sys.base_prefix:
        sys.exit("deps.py scripts: run it with a virtual environment's Python")
    bin_dir = Path(sys.executable).parent
    wanted = {*tested(), "trl-smol"}
    seen = set()
    for dist in distributions():  # in sys.path order: the virtual environment's own first
        name = normalize(dist.metadata["Name"])
        if name in seen or name not in wanted:
            continue
        seen.add(name)
        for entry in dist.entry_points.select(group="console_scripts"):
            script = bin_dir / entry.name
            if script.exists():
                continue  # installed into the virtual environment with its distribution
            call = f"from {entry.module} import {entry.attr.split('.')[0]}\nsys.exit({entry.attr}())"
            script.write_text(f"#!{sys.executable}\nimport sys\n{call}\n")
            script.chmod(0o755)


if __name__ == "__main__":
    if sys.argv[1:] == ["freeze"]:
        freeze()
    elif len(sys.argv) == 3 and sys.argv[1] == "newest":
        newest(Path(sys.argv[2]))
    elif sys.argv[1:] == ["scripts"]:
        scripts()
    else:
        sys.exit(__doc__)
