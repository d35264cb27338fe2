"""Offline stand-ins for hub downloads: a SmolTalk2-shaped dataset and models placed in the local caches.

They let tests (and users without network) run the exact commands that would download `HuggingFaceTB/smoltalk2` and
`HuggingFaceTB/SmolLM3-3B-Base`: the files are put where a download would have left them, and `HF_HUB_OFFLINE=1`
with `HF_DATASETS_OFFLINE=1` makes the libraries read them from there.

```python
from trl_smol.testing import save_tiny_smollm3
from smoltalk2_data import install_model_in_hub_cache, install_smoltalk2_in_cache

install_smoltalk2_in_cache(f"{hf_home}/datasets", rows_per_split=4)   # load_dataset("HuggingFaceTB/smoltalk2", "SFT")
install_model_in_hub_cache(save_tiny_smollm3(tmp), "HuggingFaceTB/SmolLM3-3B-Base", f"{hf_home}/hub")
```
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trl_smol.data.mixtures import SMOLTALK2_ID, SMOLTALK2_SFT_CONFIG, SMOLTALK2_SFT_SPLITS, is_think_split

_TOPICS = ["the sea", "prime numbers", "a red kite", "tea", "Paris", "bicycles", "the moon", "sorting lists"]


def smoltalk2_rows(split: str, n: int, custom_instructions: bool = True) -> list[dict[str, Any]]:
    """`n` conversations shaped like SmolTalk2's `SFT` rows: `messages`, `chat_template_kwargs`, `source`.

    Reasoning splits (`*_think`) carry a `<think>` block in the assistant turn and `enable_thinking=True`, as in the
    real data; with `custom_instructions`, every third row has custom instructions (the real data moved system prompts
    there).
    """
    think = is_think_split(split)
    rows = []
    for i in range(n):
        topic = _TOPICS[i % len(_TOPICS)]
        answer = f"Here is a short note about {topic}: it is item {i} of {split.split('_')[0]}."
        if think:
            answer = f"<think>\nThe user asks about {topic}. Keep it short.\n</think>\n\n{answer}"
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Tell me about {topic}, please ({i})."},
                    {"role": "assistant", "content": answer},
                ],
                "chat_template_kwargs": {
                    "custom_instructions": "Answer in one sentence." if custom_instructions and i % 3 == 0 else None,
                    "enable_thinking": think,
                    "python_tools": None,
                    "xml_tools": None,
                },
                "source": split,
            }
        )
    return rows


def write_smoltalk2_repo(
    root: str | os.PathLike,
    rows_per_split: int = 4,
    splits: Iterable[str] | None = None,
    custom_instructions: bool = True,
) -> Path:
    """Write a local copy laid out like the hub repository: `README.md` with the `SFT` config, a parquet per split.

    `load_dataset(str(root), "SFT", split=...)` reads it directly.
    """
    from datasets import Dataset

    root = Path(root)
    splits = list(splits or SMOLTALK2_SFT_SPLITS)
    (root / SMOLTALK2_SFT_CONFIG).mkdir(parents=True, exist_ok=True)
    for split in splits:
        target = root / SMOLTALK2_SFT_CONFIG / f"{split}-00000-of-00001.parquet"
        rows = smoltalk2_rows(split, rows_per_split, custom_instructions)
        Dataset.from_list(rows).to_parquet(str(target))
    entries = "".join(f"  - split: {split}\n    path: {SMOLTALK2_SFT_CONFIG}/{split}-*\n" for split in splits)
    card = f"---\nconfigs:\n- config_name: {SMOLTALK2_SFT_CONFIG}\n  data_files:\n{entries}---\n"
    card += "# SmolTalk2-shaped offline fixture (trl-smol)\n"
    (root / "README.md").write_text(card)
    return root


def install_smoltalk2_in_cache(
    datasets_cache: str | os.PathLike,
    rows_per_split: int = 4,
    splits: Iterable[str] | None = None,
    repo_id: str = SMOLTALK2_ID,
    custom_instructions: bool = True,
) -> Path:
    """Prepare a SmolTalk2-shaped `SFT` config in a `datasets` cache, where `load_dataset(repo_id, "SFT")` left it.

    With `HF_DATASETS_OFFLINE=1` and this cache (`HF_DATASETS_CACHE`, or `$HF_HOME/datasets`), `load_dataset`,
    `get_dataset_split_names` and TRL's `get_dataset` resolve `repo_id` from it, as after a real download.
    Returns the prepared directory.
    """
    from datasets.load import dataset_module_factory, get_dataset_builder_class

    namespace, name = repo_id.split("/")
    datasets_cache = Path(datasets_cache)
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_smoltalk2_repo(Path(tmp) / name, rows_per_split, splits, custom_instructions)
        module = dataset_module_factory(str(repo))
        builder_kwargs = {**module.builder_kwargs, "dataset_name": name}
        builder_cls = get_dataset_builder_class(module)
        staging = Path(tmp) / "cache"
        builder = builder_cls(
            cache_dir=str(staging), config_name=SMOLTALK2_SFT_CONFIG, hash=module.hash, **builder_kwargs
        )
        builder.download_and_prepare()
        # A hub download prepares into `<namespace>___<name>/<config>/<version>/<hash>`: move it there.
        target = datasets_cache / f"{namespace}___{name}"
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / name), str(target))
    return target / Path(builder.cache_dir).relative_to(staging / name)


def install_model_in_hub_cache(
    model_dir: str | os.PathLike, repo_id: str, hub_cache: str | os.PathLike, revision: str = "0" * 40
) -> Path:
    """Copy a saved model into the hub cache layout (`models--org--name/snapshots/<rev>`, `refs/main`).

    With `HF_HUB_OFFLINE=1` and `HF_HUB_CACHE` (or `$HF_HOME/hub`) pointing there, `from_pretrained(repo_id)` loads it
    as if it had been downloaded. Returns the snapshot directory.
    """
    repo_dir = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(model_dir, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot
