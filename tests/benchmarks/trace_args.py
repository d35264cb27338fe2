"""Follow the training arguments through `SmolSFTTrainer.__init__`: the plugin files whose functions receive them.

    HF_HUB_OFFLINE=1 python tests/benchmarks/trace_args.py

A stop is a call into a plugin function that has the config object among its arguments; consecutive calls in one file
are one stop. docs/architecture.md quotes the result (a tiny SmolLM3, `memory_preset: cpu`, sample prompts).
"""

import os
import sys
import tempfile

from datasets import Dataset

import trl_smol
from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.testing import save_tiny_smollm3

root = os.path.dirname(trl_smol.__file__)
tmp = tempfile.mkdtemp()
model_dir = save_tiny_smollm3(os.path.join(tmp, "m"), chat_template=SMOLLM3_CHAT_TEMPLATE, num_hidden_layers=4)
args = SmolSFTConfig(
    output_dir=os.path.join(tmp, "out"), bf16=False, report_to="none", memory_preset="cpu", sample_prompts=["Hi"]
)
rows = Dataset.from_list(
    [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
)
stops = []


def tracer(frame, event, arg):
    if event != "call":
        return None
    path = frame.f_code.co_filename
    if path.startswith(root) and any(value is args for value in frame.f_locals.values()):
        name = os.path.relpath(path, root)
        if not stops or stops[-1] != name:
            stops.append(name)
    return None


sys.settrace(tracer)
trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=rows)
sys.settrace(None)
seen, back = [], 0
for name in stops:
    if name in seen:
        back += 1
    seen.append(name)
print(f"{len(stops)} stops in {len(set(stops))} files, {back} returning to a file already visited")
print(" -> ".join(stops))
