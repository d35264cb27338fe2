"""Sample prompts: strings, message lists, objects with per-prompt template kwargs and checks, or a `.jsonl`/`.txt`
file.

```python
from trl_smol.samples import load_prompts

prompts = load_prompts(["What is 7 plus 5?", {"messages": [{"role": "user", "content": "Hi"}],
                                              "chat_template_kwargs": {"enable_thinking": False}}])
prompts = load_prompts("recipes/prompts/smollm3_demo.jsonl")   # a bad line raises SamplePromptError naming it
prompts = load_prompts(["What is 7 plus 5?"], checks=["stops"])  # checks on every prompt (the recipe's sample_checks)
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hub import missing_path_message
from .checks import CheckSpecError, SampleCheck, keyed, parse_checks

PROMPT_FILE_SUFFIXES = (".jsonl", ".txt")


class SamplePromptError(ValueError):
    """A prompt list or prompt file that cannot be used; raised before training starts."""


@dataclass
class SamplePrompt:
    """One conversation to complete, with its chat-template kwargs, where it came from (for error messages), its
    checks by result key (see [`trl_smol.samples.checks`]) and the row as written (what user checks receive)."""

    messages: list[dict[str, Any]]
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    checks: dict[str, SampleCheck] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The last user message: what the console and the tables show as the prompt."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return str(message["content"])
        return str(self.messages[-1]["content"])


def load_prompts(
    prompts: str | os.PathLike | Sequence[Any], checks: Sequence[Any] | None = None
) -> list[SamplePrompt]:
    """Normalise `prompts` (see [`SampleGenerationCallback`]) into [`SamplePrompt`]s, or raise `SamplePromptError`.

    A string that ends in `.jsonl` or `.txt` and has no whitespace is a path. In a `.txt` file each non-empty line is
    one user message; in a `.jsonl` file each line is a JSON string, message list, or object with `messages` (or
    `prompt`) and optional `chat_template_kwargs` and `checks`. A `datasets.Dataset` (a held-out split) gives one
    prompt per row from those columns. `checks` (a recipe's `sample_checks`) apply to every prompt, after its own.
    """
    try:
        common = parse_checks(checks, "sample_checks")
    except CheckSpecError as error:
        raise SamplePromptError(str(error)) from None
    if isinstance(prompts, (str, os.PathLike)):
        prompts = [prompts]
    if hasattr(prompts, "column_names") and hasattr(prompts, "features"):  # a `datasets.Dataset`
        prompts = [
            _to_prompt(_dataset_row(row), f"dataset row {number}", common) for number, row in enumerate(prompts, 1)
        ]
        if not prompts:
            raise SamplePromptError("The sample prompt dataset has no rows: give at least one prompt.")
        return prompts
    if not isinstance(prompts, Sequence) or not prompts:
        raise SamplePromptError(
            "sample_prompts is empty: give at least one prompt, or a .jsonl/.txt file with one prompt per line."
        )
    loaded: list[SamplePrompt] = []
    for position, item in enumerate(prompts):
        if _is_prompt_path(item):
            loaded.extend(_read_prompt_file(Path(item), common))
        else:
            loaded.append(_to_prompt(item, f"sample_prompts[{position}]", common))
    return loaded


def _dataset_row(row: dict[str, Any]) -> dict[str, Any]:
    """A dataset row as a prompt object: its prompt columns, without the `None`s Arrow writes for keys a row lacks
    (a check object of one row has the keys of every row's checks; other columns, such as `source`, are not read)."""

    def present(value: Any) -> Any:
        return {key: item for key, item in value.items() if item is not None} if isinstance(value, dict) else value

    item = {key: row[key] for key in ("messages", "prompt", "chat_template_kwargs") if row.get(key) is not None}
    if "chat_template_kwargs" in item:
        item["chat_template_kwargs"] = present(item["chat_template_kwargs"])
    if row.get("checks") is not None:
        item["checks"] = [present(check) for check in row["checks"]]
    return item


def _is_prompt_path(item: Any) -> bool:
    if isinstance(item, os.PathLike):
        return True
    return isinstance(item, str) and item.endswith(PROMPT_FILE_SUFFIXES) and not any(c.isspace() for c in item)


def _read_prompt_file(path: Path, common: list[SampleCheck]) -> list[SamplePrompt]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        where = missing_path_message("sample_prompts", str(path))
        raise SamplePromptError(f"{where}. Fix the path, or run from the folder it is relative to.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SamplePromptError(f"Cannot read the sample prompt file {path}: {error}.") from error
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        if path.suffix == ".txt":
            prompts.append(_to_prompt(line.strip(), source, common))
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise SamplePromptError(f"{source}: not valid JSON ({error.msg}, column {error.colno}).") from error
        prompts.append(_to_prompt(item, source, common))
    if not prompts:
        raise SamplePromptError(f"The sample prompt file {path} has no prompts: write one prompt per line.")
    return prompts


def _to_prompt(item: Any, source: str, common: list[SampleCheck] = ()) -> SamplePrompt:
    kwargs: Any = {}
    checks = list(common)
    row = item if isinstance(item, dict) else None
    if isinstance(item, dict):
        unknown = set(item) - {"messages", "prompt", "chat_template_kwargs", "checks"}
        if unknown or ("messages" in item) == ("prompt" in item):
            raise SamplePromptError(
                f"{source}: a prompt object needs exactly one of `messages` or `prompt`, plus optional "
                f"`chat_template_kwargs` and `checks`; got keys {sorted(item)}."
            )
        try:
            checks = parse_checks(item.get("checks"), "checks") + checks
        except CheckSpecError as error:
            raise SamplePromptError(f"{source}: {error}") from None
        kwargs = item.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise SamplePromptError(
                f"{source}: `chat_template_kwargs` must be an object, got {type(kwargs).__name__}."
            )
        item = item.get("messages", item.get("prompt"))
    if isinstance(item, str):
        if not item.strip():
            raise SamplePromptError(f"{source}: the prompt is an empty string.")
        messages = [{"role": "user", "content": item}]
        return SamplePrompt(messages, dict(kwargs), source, keyed(checks), row or {"messages": messages})
    if isinstance(item, list) and item:
        for turn, message in enumerate(item):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str) and "content" in message):
                raise SamplePromptError(
                    f"{source}: message {turn} must be an object with `role` and `content`, got {message!r}."
                )
        messages = [dict(message) for message in item]
        return SamplePrompt(messages, dict(kwargs), source, keyed(checks), row or {"messages": messages})
    raise SamplePromptError(
        f"{source}: a prompt must be a string, a non-empty list of messages, or an object with `messages`; got "
        f"{item!r}."
    )
