"""Sample generation during training: prompts, one generation pass, and its outputs (jsonl, console, trackers).

```python
from trl_smol.samples import SampleGenerationCallback

trainer = SFTTrainer(..., callbacks=[SampleGenerationCallback("prompts.jsonl", every_n_steps=100, checks=["stops"])])
```

Checks on the prompts (`trl_smol.samples.checks`) score every answer: pass rates per pass, in evaluations too.
"""

from .callback import SampleGenerationCallback
from .checks import BUILTIN_CHECKS, CHECKS_ENTRY_POINT_GROUP, PASS_SCORE, parse_checks, registered_checks, summarize
from .generation import SampleGenerator, split_thinking
from .outputs import SAMPLES_FILE, SampleOutputs, read_samples
from .prompts import SamplePrompt, SamplePromptError, load_prompts

__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS_ENTRY_POINT_GROUP",
    "PASS_SCORE",
    "SAMPLES_FILE",
    "SampleGenerationCallback",
    "SampleGenerator",
    "SampleOutputs",
    "SamplePrompt",
    "SamplePromptError",
    "load_prompts",
    "parse_checks",
    "read_samples",
    "registered_checks",
    "split_thinking",
    "summarize",
]
