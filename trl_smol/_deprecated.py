"""Old import paths of 0.1, kept for one release (removed in 0.3.0). CHANGELOG.md lists every move.

```python
# trl_smol/presets.py
from trl_smol._deprecated import moved

__getattr__ = moved(__name__, "trl_smol.memory")
```
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved(old: str, *new: str) -> Callable[[str], Any]:
    """Warn once that `old` moved, and return a module `__getattr__` that finds its names in the `new` modules."""
    warnings.warn(
        f"`{old}` moved to `{'`, `'.join(new)}` in trl-smol 0.2.0; the old path goes in 0.3.0.",
        FutureWarning,
        stacklevel=3,
    )

    def __getattr__(name: str) -> Any:
        for module_name in new:
            module = importlib.import_module(module_name)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {', '.join(new)})")

    return __getattr__
