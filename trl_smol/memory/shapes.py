"""The shape of a model, read from its `config.json` (or known offline for SmolLM3-3B), for the memory estimate.

```python
from trl_smol.memory.shapes import model_shape

shape = model_shape("HuggingFaceTB/SmolLM3-3B-Base")   # known offline; any hub id, local path, config or model
shape.num_parameters
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ModelShapeError(ValueError):
    """A model whose shape cannot be read: not a known id, not a local directory, config.json not readable."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that memory depends on."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = True
    head_dim: int | None = None
    name: str = "model"

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self._head_dim

    @property
    def _head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection in one layer."""
        h, i, q = self.hidden_size, self.intermediate_size, self.num_attention_heads * self._head_dim
        return {
            "q_proj": (h, q),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def projection_params(self) -> int:
        return self.num_hidden_layers * sum(a * b for a, b in self.projection_shapes().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def norm_params(self) -> int:
        return (2 * self.num_hidden_layers + 1) * self.hidden_size

    @property
    def num_parameters(self) -> int:
        return self.projection_params + self.embedding_params + self.norm_params

    def lora_params(self, r: int, target_modules: Any = "all-linear") -> int:
        shapes = self.projection_shapes()
        targets = _lora_targets(target_modules)
        return self.num_hidden_layers * sum(r * (shapes[name][0] + shapes[name][1]) for name in targets)

    @classmethod
    def from_config(cls, config: Any, name: str | None = None) -> ModelShape:
        get = config.get if isinstance(config, dict) else (lambda key, default=None: getattr(config, key, default))
        if isinstance(config, dict) and "text_config" in config:
            return cls.from_config(config["text_config"], name)
        if not isinstance(config, dict) and hasattr(config, "get_text_config"):
            config = config.get_text_config()
            get = lambda key, default=None: getattr(config, key, default)  # noqa: E731
        try:
            return cls(
                hidden_size=int(get("hidden_size")),
                intermediate_size=int(get("intermediate_size")),
                num_hidden_layers=int(get("num_hidden_layers")),
                num_attention_heads=int(get("num_attention_heads")),
                num_key_value_heads=int(get("num_key_value_heads") or get("num_attention_heads")),
                vocab_size=int(get("vocab_size")),
                tie_word_embeddings=bool(get("tie_word_embeddings", False)),
                head_dim=get("head_dim"),
                name=name or get("_name_or_path") or get("model_type") or "model",
            )
        except (TypeError, ValueError) as error:
            raise ModelShapeError(
                f"The config of `{name or 'the model'}` lacks a decoder size field ({error}); the estimator needs "
                "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size."
            ) from error


SMOLLM3_3B = ModelShape(2048, 11008, 36, 16, 4, 128256, True, 128, "HuggingFaceTB/SmolLM3-3B")
SMOLLM3_DEMO = ModelShape(576, 1536, 30, 9, 3, 49152, True, 64, "trl-smol/SmolLM3-demo-135M")
KNOWN_MODELS: dict[str, ModelShape] = {
    "HuggingFaceTB/SmolLM3-3B": SMOLLM3_3B,
    "HuggingFaceTB/SmolLM3-3B-Base": SMOLLM3_3B,
    "trl-smol/SmolLM3-demo-135M": SMOLLM3_DEMO,
}


def _lora_targets(target_modules: Any) -> tuple[str, ...]:
    if target_modules is None or target_modules == "all-linear":
        return PROJECTIONS
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    targets = tuple(name for name in PROJECTIONS if any(str(t).endswith(name) for t in target_modules))
    return targets or PROJECTIONS[:3:2]  # PEFT's default for Llama-like models: q_proj, v_proj


def model_shape(model: Any) -> ModelShape:
    """Read the shape of `model`: a ModelShape, config, model object, local directory, known id or cached hub id."""
    if isinstance(model, ModelShape):
        return model
    if hasattr(model, "config") and not isinstance(model, (str, dict)):
        config = model.config
        return ModelShape.from_config(config, getattr(config, "_name_or_path", None))
    if not isinstance(model, (str, os.PathLike)):
        return ModelShape.from_config(model)
    name = os.fspath(model)
    if os.path.isdir(name):
        path = os.path.join(name, "config.json")
        if not os.path.isfile(path):
            raise ModelShapeError(f"`{name}` is a directory without config.json; point to a model checkpoint.")
        with open(path) as file:
            return ModelShape.from_config(json.load(file), name)
    if name in KNOWN_MODELS:
        cached = _cached_hub_config(name)  # what will load: a cached copy wins over the published shape
        return ModelShape.from_config(cached, name) if cached is not None else KNOWN_MODELS[name]
    return ModelShape.from_config(_read_hub_config(name), name)


def _cached_hub_config(name: str) -> dict[str, Any] | None:
    """The config.json of hub id `name` from the local Hugging Face cache, without the network; None if absent."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(name, "config.json")
        if not isinstance(path, str):
            return None
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _read_hub_config(name: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    try:
        with open(hf_hub_download(name, "config.json")) as file:
            return json.load(file)
    except Exception as error:  # offline, private, missing or not a repo id: one answer for all
        known = ", ".join(KNOWN_MODELS)
        raise ModelShapeError(
            f"Cannot read the config.json of `{name}` ({type(error).__name__}): it is not a local directory, not a "
            f"model the estimator knows ({known}), and the hub copy is not reachable or not cached. Pass a local "
            f"checkpoint directory (with config.json) instead."
        ) from error
