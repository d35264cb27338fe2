"""Shared fixtures: a tiny random SmolLM3 and a tokenizer with SmolLM3's special tokens, built offline."""

import os

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
