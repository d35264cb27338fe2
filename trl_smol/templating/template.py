"""The SmolLM3 chat template shipped with trl-smol, and how the trainer puts it on a tokenizer.

[`SMOLLM3_CHAT_TEMPLATE`] renders every input the released SmolLM3-3B template handles to the same text (and the
same assistant masks), and adds what the released one drops: the standard `tools=` argument, assistant `tool_calls`,
`reasoning_content`, a fixed `today` date and `close_system_turn`. Its `{% generation %}` span covers each whole
assistant turn, `<|im_end|>` included, so `assistant_only_loss=True` trains the model to stop.

```python
from trl_smol import SMOLLM3_CHAT_TEMPLATE
from trl_smol.templating import apply_smollm3_template

apply_smollm3_template(tokenizer)  # template + a pad token distinct from the stop token
messages = [{"role": "user", "content": "Hi"}]
text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, today="08 July 2025")
```
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

SMOLLM3_CHAT_TEMPLATE: str = (files("trl_smol.templating") / "smollm3.jinja").read_text(encoding="utf-8")

# The stop token of every SmolLM3 turn; the trainer makes it the eos token for chat training.
END_OF_TURN = "<|im_end|>"
START_OF_TURN = "<|im_start|>"

# Keyword arguments the SmolLM3 template reads, with the types a dataset or recipe may give them.
SMOLLM3_TEMPLATE_KWARGS: dict[str, tuple[type, ...]] = {
    "enable_thinking": (bool,),
    "xml_tools": (list,),
    "python_tools": (list,),
    "custom_instructions": (str,),
    "today": (str,),
    "close_system_turn": (bool,),
}

# Pad tokens to try, best first: SmolLM3's dedicated one, then end-of-text tokens of related vocabularies.
_PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|endoftext|>", "<|end_of_text|>", "<|pad|>", "<pad>")


def is_smollm3_template(chat_template: Any) -> bool:
    """Whether `chat_template` is the template shipped with this package."""
    return isinstance(chat_template, str) and chat_template == SMOLLM3_CHAT_TEMPLATE


def _pad_token_for(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    avoid = {tokenizer.eos_token, END_OF_TURN, START_OF_TURN}
    current = tokenizer.pad_token
    if _PAD_CANDIDATES[0] in vocab:
        return _PAD_CANDIDATES[0]
    if current is not None and current not in avoid:
        return current
    for candidate in (*_PAD_CANDIDATES[1:], *tokenizer.all_special_tokens):
        if candidate in vocab and candidate not in avoid and candidate != tokenizer.bos_token:
            return candidate
    raise ValueError(
        f"No pad token distinct from the stop tokens ({', '.join(sorted(t for t in avoid if t))}) exists in the "
        f"vocabulary of {type(tokenizer).__name__}, and trl-smol does not add tokens. Set `pad_token` in the recipe "
        "to a token of the vocabulary that never appears in the data."
    )


def apply_smollm3_template(tokenizer: Any) -> None:
    """Put [`SMOLLM3_CHAT_TEMPLATE`] on `tokenizer` with a pad token that is neither the eos nor `<|im_end|>`.

    The pad token is SmolLM3's `<|finetune_right_pad_id|>` when the vocabulary has it, else an existing special token
    (`<|endoftext|>`, ...). The vocabulary is never changed: a tokenizer without `<|im_start|>` / `<|im_end|>` as
    single tokens cannot learn the format, and raises.
    """
    vocab = tokenizer.get_vocab()
    missing = [token for token in (START_OF_TURN, END_OF_TURN) if token not in vocab]
    if missing:
        raise ValueError(
            f"The SmolLM3 chat template needs {' and '.join(missing)} as tokens, but the vocabulary of "
            f"{type(tokenizer).__name__} lacks them. Use a SmolLM3 tokenizer, or set `smol_chat_template: keep` to "
            "train with the tokenizer's own template."
        )
    tokenizer.chat_template = SMOLLM3_CHAT_TEMPLATE
    tokenizer.pad_token = _pad_token_for(tokenizer)


def canonical_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages whose tool-call `arguments` given as JSON strings are re-serialised like the template's `tojson`.

    A dict and a JSON string then render to the same text, however the string was spaced. Messages without tool
    calls are returned as they are (no copy).
    """
    out = messages
    for index, message in enumerate(messages):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if not calls:
            continue
        new_calls = []
        for call in calls:
            function = call.get("function") or call
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                arguments = json.dumps(json.loads(arguments), ensure_ascii=False)
                function = {**function, "arguments": arguments}
                call = {**call, "function": function} if call.get("function") else function
            new_calls.append(call)
        if out is messages:
            out = list(messages)
        out[index] = {**message, "tool_calls": new_calls}
    return out
