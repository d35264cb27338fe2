"""Shared fixtures: a tiny random SmolLM3 and a tokenizer with SmolLM3's special tokens, built offline, and one
`trl sft` launch whose outputs several slow tests read; the pytest-xdist groups."""

import json
import os
import subprocess
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRACKIO_DIR", "/tmp/trl_smol_tests_trackio")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402

from trl_smol.testing import save_tiny_smollm3, tiny_smollm3_model, tiny_smollm3_tokenizer  # noqa: E402


@pytest.fixture
def tiny_tokenizer():
    return tiny_smollm3_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return tiny_smollm3_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny SmolLM3 checkpoint on disk (no chat template, like SmolLM3-3B-Base)."""
    return save_tiny_smollm3(tmp_path_factory.mktemp("tiny-smollm3"))


@pytest.fixture
def chat_rows():
    return [
        {"messages": [{"role": "user", "content": f"What is {i}+{i}?"}, {"role": "assistant", "content": str(2 * i)}]}
        for i in range(16)
    ]


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored afterwards. The tiny model's matrices are so small that thread
    hand-offs cost more than the math on a busy machine; use it with `pytestmark = pytest.mark.usefixtures(...)`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- one `trl sft` launch, read by several tests ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_trl_sft_run(tmp_path_factory, tiny_model_dir):
    """The stock `trl sft` on the tiny SmolLM3, launched once for the tests that only read what it leaves: the banner,
    the saved tokenizer and model card, and the trackio store. 4 steps, samples every 2, the `cpu` memory preset,
    trackio into a project and run of its own, no checkpoint (the final save writes the model and its card).

    The tests that use it run on one xdist worker (`pytest_collection_modifyitems` below): the launch is made once.
    The console test (tests/test_console.py) keeps its own launch: it reads stdout and stderr as one stream."""
    folder = tmp_path_factory.mktemp("shared-trl-sft")
    data = folder / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
        for i in range(64)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = {
        "model_name_or_path": str(tiny_model_dir),
        "datasets": [{"path": "json", "data_files": str(data)}],
        "output_dir": str(folder / "out"),
        "max_steps": 4,
        "per_device_train_batch_size": 2,
        "bf16": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "sample_prompts": ["What is 3+1?", "What is 5+1?", "Say hi."],
        "sample_max_new_tokens": 8,
        "sample_every_n_steps": 2,
        "memory_preset": "cpu",
        "report_to": "trackio",
        "project": "trl-smol-readback",
        "run_name": "tiny-run",
        "seed": 3,
    }
    recipe_path = folder / "recipe.yaml"
    recipe_path.write_text(json.dumps(recipe))  # JSON is YAML
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRACKIO_DIR": str(folder / "trackio")}
    env.pop("TRL_SMOL_DISABLE", None)
    trl = os.path.join(os.path.dirname(sys.executable), "trl")
    result = subprocess.run(
        [trl, "sft", "--config", str(recipe_path)], capture_output=True, text=True, env=env, timeout=600
    )
    return types.SimpleNamespace(result=result, output_dir=folder / "out", recipe=recipe, env=env)


# The README's test command runs the tests on 2 pytest-xdist workers (`-n 2 --dist loadgroup`); these groups each run
# on one worker:
# - the tests that read one run made once per session or module (a fixture): on one worker it is made once;
# - the runs of several processes: torchrun and accelerate meet on port 29500 by default, so two at once would collide.
XDIST_GROUP_OF_FIXTURE = {
    "shared_trl_sft_run": "shared_trl_sft_run",
    "finished_run": "finished_run",
    "wheel": "wheel",
    "fsdp2_report": "fsdp2_report",
    "zero3_and_ddp": "distributed",
}
DISTRIBUTED_TESTS = {
    "test_two_cpu_processes_train_once_and_write_once",
    "test_two_process_run_writes_each_step_and_prompt_once",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        groups = [group for name, group in XDIST_GROUP_OF_FIXTURE.items() if name in fixtures]
        if getattr(item, "originalname", None) in DISTRIBUTED_TESTS:
            groups.append("distributed")
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))
