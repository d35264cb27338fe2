"""The demo: a real pretrained model in the SmolLM3 architecture (built on first use) and its generated data set.

```bash
trl sft --config recipes/smollm3_demo.yaml   # trains trl-smol/SmolLM3-demo-135M on recipes/data/smollm3_demo.jsonl
python -m trl_smol.demo.data                 # regenerates that data set
```
"""

from .model import DEMO_MODEL_ID, cache_dir, demo_model_dir, materialize_demo_model

__all__ = ["DEMO_MODEL_ID", "cache_dir", "demo_model_dir", "materialize_demo_model"]
