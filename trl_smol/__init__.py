"""trl-smol: supervised fine-tuning of SmolLM3 inside the stock TRL flow.

```python
from trl_smol import SmolSFTConfig, SmolSFTTrainer

trainer = SmolSFTTrainer(model="HuggingFaceTB/SmolLM3-3B-Base", args=SmolSFTConfig(...), train_dataset=dataset)
trainer.train()
```

Names are resolved lazily (PEP 562) so that `import trl_smol._bootstrap`, which runs at every interpreter start-up
through the package's `.pth` file, stays free of torch and transformers imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "SmolSFTConfig": "trl_smol.config",
    "SmolSFTTrainer": "trl_smol.trainer",
    # Aliases so that course code written for TRL runs after swapping the import line.
    "SFTConfig": "trl_smol.config",
    "SFTTrainer": "trl_smol.trainer",
    "SMOLLM3_CHAT_TEMPLATE": "trl_smol.chat_template",
    "SampleGenerationCallback": "trl_smol.callbacks.samples",
    "MemoryMonitorCallback": "trl_smol.callbacks.memory",
}
_ALIASES = {"SFTConfig": "SmolSFTConfig", "SFTTrainer": "SmolSFTTrainer"}

__all__ = [
    "MemoryMonitorCallback",
    "SFTConfig",
    "SFTTrainer",
    "SMOLLM3_CHAT_TEMPLATE",
    "SampleGenerationCallback",
    "SmolSFTConfig",
    "SmolSFTTrainer",
    "__version__",
]

if TYPE_CHECKING:
    from .callbacks.memory import MemoryMonitorCallback
    from .callbacks.samples import SampleGenerationCallback
    from .chat_template import SMOLLM3_CHAT_TEMPLATE
    from .config import SmolSFTConfig
    from .trainer import SmolSFTTrainer


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trl_smol' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
