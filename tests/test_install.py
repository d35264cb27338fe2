"""The built wheel, installed with pip into a new virtual environment, activates the plugin in the stock `trl sft`."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(command, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: the build backend (hatchling) comes with the dev extras, so no index is needed here.
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)]
    result = run(command)
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("trl_smol-*.whl")
    return path


def test_wheel_ships_the_pth_hook_the_template_and_the_entry_points(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "trl_smol.pth" in names  # at the top of site-packages
    assert "trl_smol/templating/smollm3.jinja" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[trl_smol.callbacks]" in text and "samples = " in text and "memory = " in text
    assert "trl-smol = trl_smol.commands:main" in text


def test_pip_install_into_a_new_venv_activates_the_plugin(wheel, tmp_path):
    venv = tmp_path / "venv"
    # The venv reuses this machine's torch/trl/transformers (installing them again would take minutes and network);
    # trl-smol itself comes only from the wheel, installed by pip into the venv's own site-packages.
    assert run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)]).returncode == 0
    python = venv / "bin" / "python"
    # trl's console script lives with the system's trl; run it with the venv's interpreter.
    trl = [str(python), os.path.join(os.path.dirname(sys.executable), "trl")]
    result = run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)])
    assert result.returncode == 0, result.stderr[-2000:]
    # The .pth hook runs while the venv's own site-packages is the only one on sys.path, so what it imports (wrapt)
    # must be in the venv, as in any real venv; the system copy would only be added after it.
    import wrapt

    pip_install = [str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed"]
    result = run([*pip_install, f"wrapt=={wrapt.__version__}"])
    assert result.returncode == 0, result.stderr[-2000:]

    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    pth = (Path(site) / "trl_smol.pth").read_text().strip()
    assert pth == "import trl_smol.hook as _trl_smol_hook; _trl_smol_hook.bootstrap()"
    where = run([str(python), "-c", "import trl_smol; print(trl_smol.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(site), where  # the installed copy, not the source tree

    help_text = run([*trl, "sft", "--help"], cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "--memory_preset" in help_text.stdout and "--sample_prompts" in help_text.stdout

    listing = run([str(venv / "bin" / "trl-smol"), "callbacks"], cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "samples" in listing.stdout and "memory" in listing.stdout
