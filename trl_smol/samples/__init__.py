"""Sample generation during training: prompts, one generation pass, and its outputs (jsonl, console, trackers).

```python
from trl_smol.samples import SampleGenerationCallback

trainer = SFTTrainer(..., callbacks=[SampleGenerationCallback("prompts.jsonl", every_n_steps=100)])
```
"""

from .callback import SampleGenerationCallback
from .generation import SampleGenerator, split_thinking
from .outputs import SAMPLES_FILE, SampleOutputs, read_samples
from .prompts import SamplePrompt, SamplePromptError, load_prompts

__all__ = [
    "SAMPLES_FILE",
    "SampleGenerationCallback",
    "SampleGenerator",
    "SampleOutputs",
    "SamplePrompt",
    "SamplePromptError",
    "load_prompts",
    "read_samples",
    "split_thinking",
]
