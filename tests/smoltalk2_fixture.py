"""Pytest fixtures: an offline Hugging Face home where SmolTalk2 and SmolLM3-3B-Base resolve as if downloaded.

`offline_hf_home` holds `datasets/` (SmolTalk2's `SFT` config, 4 rows per split, prepared like a real
`load_dataset("HuggingFaceTB/smoltalk2", "SFT")`) and `hub/` (a tiny random SmolLM3 under the id
`HuggingFaceTB/SmolLM3-3B-Base`, without a chat template like the real Base tokenizer). Point `HF_HOME` at it in a
subprocess, or use `smoltalk2_cache` to make this process's `datasets` read it.
"""

import os

import pytest
from smoltalk2_data import install_model_in_hub_cache, install_smoltalk2_in_cache

from trl_smol.testing import save_tiny_smollm3

__all__ = ["BASE_MODEL_ID", "offline_env", "offline_hf_home", "smoltalk2_cache"]

BASE_MODEL_ID = "HuggingFaceTB/SmolLM3-3B-Base"
ROWS_PER_SPLIT = 4


@pytest.fixture(scope="session")
def offline_hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    # Like the real data, every third row carries its system prompt as `chat_template_kwargs.custom_instructions`.
    install_smoltalk2_in_cache(home / "datasets", rows_per_split=ROWS_PER_SPLIT)
    model_dir = save_tiny_smollm3(tmp_path_factory.mktemp("tiny-base"))
    install_model_in_hub_cache(model_dir, BASE_MODEL_ID, home / "hub")
    return home


@pytest.fixture
def smoltalk2_cache(offline_hf_home, monkeypatch):
    """This process's `datasets` reads the offline cache (the library reads HF_DATASETS_CACHE at call time)."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(offline_hf_home / "datasets"))
    return offline_hf_home / "datasets"


def offline_env(hf_home, **extra) -> dict:
    """Environment of a subprocess that reads models and datasets only from `hf_home`."""
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **extra)
    for key in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(key, None)
    return env
