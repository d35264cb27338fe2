"""The demo: a real pretrained model in the SmolLM3 architecture (built on first use) and its generated data set.

```bash
trl sft --config recipes/smollm3_demo.yaml   # trains trl-smol/SmolLM3-demo-135M on recipes/data/smollm3_demo.jsonl
python -m trl_smol.demo.data                 # regenerates that data set
```

`trl-smol/SmolLM3-demo-135M` is not a Hub id: the plugin resolves it to a local checkpoint. In any other script,
[`materialize_demo_model`] returns that checkpoint's folder (built on first use), which `from_pretrained` loads:

```python
from transformers import AutoModelForCausalLM
from trl_smol.demo import materialize_demo_model

model = AutoModelForCausalLM.from_pretrained(materialize_demo_model())
```
"""

from .model import DEMO_MODEL_ID, cache_dir, demo_model_dir, materialize_demo_model

__all__ = ["DEMO_MODEL_ID", "cache_dir", "demo_model_dir", "materialize_demo_model"]
