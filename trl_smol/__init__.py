"""trl-smol: supervised fine-tuning of SmolLM3 inside the stock TRL flow.

```python
from trl_smol import SmolSFTConfig, SmolSFTTrainer

trainer = SmolSFTTrainer(model="HuggingFaceTB/SmolLM3-3B-Base", args=SmolSFTConfig(...), train_dataset=dataset)
trainer.train()
```

The course's Python example differs from the course in two lines: the import, and `smoltalk2_train`:

```python
from trl_smol import SFTConfig, SFTTrainer, smoltalk2_train

trainer = SFTTrainer(model=model, args=SFTConfig(...), train_dataset=smoltalk2_train(dataset))
```

Names are resolved lazily (PEP 562) so that `import trl_smol.hook`, which runs at every interpreter start-up through
the package's `.pth` file, stays free of torch and transformers imports.

Where things live: `hook` (the one piece of magic: entering `trl sft`), `config`, `parser`, `plan` (the resolved run),
`trainer`, `templating/`, `data/`, `samples/`, `memory/`, `callbacks/` (the registry), `trackers`, `model_card`,
`commands/` (the `trl-smol` console commands), `demo/`, `testing` (a tiny SmolLM3 for tests).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0.dev0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "SmolSFTConfig": "trl_smol.config",
    "SmolSFTTrainer": "trl_smol.trainer",
    # Aliases so that course code written for TRL runs after swapping the import line.
    "SFTConfig": "trl_smol.config",
    "SFTTrainer": "trl_smol.trainer",
    "SMOLLM3_CHAT_TEMPLATE": "trl_smol.templating",
    "SampleGenerationCallback": "trl_smol.samples",
    "MemoryMonitorCallback": "trl_smol.memory",
    "RunPlan": "trl_smol.plan",
    "smoltalk2_train": "trl_smol.data",
}
_ALIASES = {"SFTConfig": "SmolSFTConfig", "SFTTrainer": "SmolSFTTrainer"}

__all__ = [
    "MemoryMonitorCallback",
    "RunPlan",
    "SFTConfig",
    "SFTTrainer",
    "SMOLLM3_CHAT_TEMPLATE",
    "SampleGenerationCallback",
    "SmolSFTConfig",
    "SmolSFTTrainer",
    "__version__",
    "smoltalk2_train",
]

if TYPE_CHECKING:
    from .config import SmolSFTConfig
    from .data import smoltalk2_train
    from .memory import MemoryMonitorCallback
    from .plan import RunPlan
    from .samples import SampleGenerationCallback
    from .templating import SMOLLM3_CHAT_TEMPLATE
    from .trainer import SmolSFTTrainer


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trl_smol' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
