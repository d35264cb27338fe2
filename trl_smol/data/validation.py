"""Conversation data checked before tokenization, with the chat-template kwargs defaults merged into every row.

[`prepare_conversations`] runs before TRL tokenizes a dataset: it checks every conversation (an error names the
dataset, row and field; `invalid_rows="drop"` removes bad rows and prints a count per reason), and merges the config's
`chat_template_kwargs` (and, under the SmolLM3 template, the stable `today`) under each example's own.

```python
from trl_smol.data import prepare_conversations

dataset = prepare_conversations(dataset, args=args, dataset_name="train", processing_class=tokenizer)
```
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datasets import Dataset, IterableDataset
from transformers.utils import logging

from ..templating import SMOLLM3_TEMPLATE_KWARGS, is_smollm3_template

if TYPE_CHECKING:
    from ..config import SmolSFTConfig

logger = logging.get_logger(__name__)

ROLES = ("system", "user", "assistant", "tool")
# Column that carries the reason a row is invalid between the check and the drop (`invalid_rows="drop"`).
_REASON_COLUMN = "_trl_smol_invalid_reason"


class InvalidConversationError(ValueError):
    """A conversation that cannot be rendered as intended; the message names the dataset, row and field."""


@dataclass(frozen=True)
class RowProblem:
    """Why one row is invalid: `reason` is the short key counted when rows are dropped, `field` where it is."""

    reason: str
    field: str
    detail: str


def _clean_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Arrow stores a struct column with every key in every row; a None value means "not set in this row"."""
    return {key: value for key, value in (kwargs or {}).items() if value is not None}


def check_template_kwargs(kwargs: dict[str, Any] | None, *, strict: bool, field: str) -> RowProblem | None:
    """Check keys and types of chat-template kwargs; unknown keys only count when `strict` (the SmolLM3 template)."""
    for key, value in _clean_kwargs(kwargs).items():
        expected = SMOLLM3_TEMPLATE_KWARGS.get(key)
        if expected is None:
            if strict:
                known = ", ".join(SMOLLM3_TEMPLATE_KWARGS)
                return RowProblem("unknown chat_template_kwargs key", f"{field}.{key}", f"unknown key; known: {known}")
            continue
        if not isinstance(value, expected):
            wanted = " or ".join(t.__name__ for t in expected)
            return RowProblem(
                "chat_template_kwargs of wrong type",
                f"{field}.{key}",
                f"expected {wanted}, got {type(value).__name__} {value!r:.60}",
            )
    return None


def _check_tool_calls(calls: Any, where: str) -> RowProblem | None:
    if not isinstance(calls, list):
        return RowProblem("invalid tool_calls", where, f"expected a list of calls, got {type(calls).__name__}")
    for k, call in enumerate(calls):
        function = (call.get("function") or call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return RowProblem("invalid tool_calls", f"{where}[{k}]", "a call needs a function `name` (a string)")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as error:
                return RowProblem("invalid tool_calls", f"{where}[{k}].arguments", f"not valid JSON ({error})")
        if arguments is not None and not isinstance(arguments, dict):
            return RowProblem(
                "invalid tool_calls", f"{where}[{k}].arguments", f"expected a JSON object, got {arguments!r:.60}"
            )
    return None


def check_conversation(
    messages: Any, template_kwargs: Any = None, tools: Any = None, *, strict_kwargs: bool = True
) -> RowProblem | None:
    """The first problem of one conversation, or `None` when the SmolLM3 template renders it as intended.

    ```python
    >>> check_conversation([{"role": "bot", "content": "Hi"}])
    RowProblem(reason='unknown role', field='messages[0].role', detail="'bot' is not one of system, user, ...")
    ```
    """
    if not isinstance(messages, list) or not messages:
        return RowProblem("missing messages", "messages", "the row has no `messages` list")
    has_assistant = False
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            return RowProblem(
                "message is not a dict", where, f"expected a dict with role and content, got {message!r:.60}"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            return RowProblem("message without role", f"{where}.role", "missing")
        if role not in ROLES:
            return RowProblem("unknown role", f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
        calls = message.get("tool_calls")
        content = message.get("content")
        if content is None and not (role == "assistant" and calls):
            return RowProblem("message without content", f"{where}.content", "missing (only a tool call may omit it)")
        if content is not None and not isinstance(content, str):
            # The template renders non-string content as "": the message would silently be trained as empty.
            return RowProblem("content is not a string", f"{where}.content", f"got {type(content).__name__}")
        if calls is not None:
            problem = _check_tool_calls(calls, f"{where}.tool_calls")
            if problem is not None:
                return problem
        has_assistant = has_assistant or role == "assistant"
    if not has_assistant:
        return RowProblem("no assistant turn", "messages", "nothing to train on: no message has role 'assistant'")
    if template_kwargs is not None and not isinstance(template_kwargs, dict):
        return RowProblem("chat_template_kwargs of wrong type", "chat_template_kwargs", "expected a dict")
    problem = check_template_kwargs(template_kwargs, strict=strict_kwargs, field="chat_template_kwargs")
    if problem is not None:
        return problem
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            return RowProblem("invalid tools", "tools", f"not valid JSON ({error})")
    if tools is not None and not isinstance(tools, list):
        return RowProblem("invalid tools", "tools", f"expected a list of schemas, got {type(tools).__name__}")
    return None


def row_label(index: int) -> str:
    """How messages name a row: counted from 1, as lines of a file are (row N of a JSON-lines file without blank
    lines is its line N). `index` is the row's 0-based index in the dataset."""
    return f"row {index + 1}"


def _error(dataset_name: str, row: int, problem: RowProblem) -> InvalidConversationError:
    return InvalidConversationError(
        f"Dataset '{dataset_name}', {row_label(row)}, field `{problem.field}`: {problem.reason}: {problem.detail}. "
        "Fix the data, or set `invalid_rows: drop` to skip such rows (a count per reason is printed)."
    )


def _print_dropped(dataset_name: str, counts: Counter, first_rows: dict[str, int], total: int) -> None:
    from accelerate import PartialState
    from rich.console import Console
    from rich.table import Table

    if not PartialState().is_main_process:
        return
    table = Table(title=f"trl-smol: dropped {sum(counts.values())} of {total} rows of dataset '{dataset_name}'")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    table.add_column("first row", justify="right")
    for reason, count in counts.most_common():
        table.add_row(reason, str(count), str(first_rows[reason] + 1))  # 0-based indices, shown counted from 1
    Console(stderr=True).print(table)


def _strict_kwargs(args: SmolSFTConfig, processing_class: Any) -> bool:
    # Unknown kwargs are an error only for the SmolLM3 template; another template may read other names.
    if processing_class is not None:
        return is_smollm3_template(getattr(processing_class, "chat_template", None))
    return args.smol_chat_template == "smollm3"


def prepare_conversations(
    dataset: Dataset | IterableDataset,
    *,
    args: SmolSFTConfig,
    dataset_name: str = "train",
    processing_class: Any = None,
    template_defaults: dict[str, Any] | None = None,
    row_offset: int = 0,
) -> Dataset | IterableDataset:
    """Validate conversations and merge `template_defaults` under each example's own chat-template kwargs.

    `template_defaults` defaults to `args.template_defaults(...)` with the fixed `today` date when the tokenizer
    carries the plugin's SmolLM3 template; `SmolSFTTrainer` passes its run plan's (the date only when the plugin
    applies its template in this run).

    A malformed row raises [`InvalidConversationError`] naming the dataset, row (counted from 1, plus `row_offset`
    for a dataset that starts further into the data) and field, or with
    `args.invalid_rows="drop"` is removed, with a count per reason printed. Datasets that are not conversational
    (no `messages` column; ShareGPT-style `conversations` are converted first) or already tokenized are returned
    unchanged. `processing_class`, when given, tells whether the SmolLM3 template is in use (then unknown
    `chat_template_kwargs` keys are errors).
    """
    columns = list(dataset.column_names or [])
    if "conversations" in columns and "messages" not in columns:
        from trl.data_utils import maybe_convert_to_chatml

        dataset = dataset.map(maybe_convert_to_chatml, remove_columns="conversations")
        columns = list(dataset.column_names or [])
    if "messages" not in columns or "input_ids" in columns:
        return dataset

    strict = _strict_kwargs(args, processing_class)
    defaults = args.template_defaults(smollm3_template=strict) if template_defaults is None else template_defaults
    problem = check_template_kwargs(defaults, strict=strict, field="chat_template_kwargs")
    if problem is not None:
        raise ValueError(f"`{problem.field}` in the config: {problem.reason}: {problem.detail}.")

    drop = args.invalid_rows == "drop"
    is_map_style = isinstance(dataset, Dataset)
    input_columns = [name for name in ("messages", "chat_template_kwargs", "tools") if name in columns]

    def check_batch(*batch_and_indices: list) -> dict[str, list]:
        *batch, indices = batch_and_indices
        messages, kwargs, tools = conversation_columns(input_columns, batch)
        merged, reasons = [], []
        for row, row_messages, row_kwargs, row_tools in zip(indices, messages, kwargs, tools, strict=True):
            problem = check_conversation(row_messages, row_kwargs, row_tools, strict_kwargs=strict)
            row += row_offset
            if problem is not None and not drop:
                raise _error(dataset_name, row, problem)
            if problem is not None and not is_map_style:  # streamed: no count at the end, so say it per row
                where = f"{row_label(row)} of dataset '{dataset_name}'"
                logger.warning(f"Dropping {where}: {problem.reason} ({problem.field}).")
            reasons.append(None if problem is None else problem.reason)
            merged.append({**defaults, **_clean_kwargs(row_kwargs if isinstance(row_kwargs, dict) else None)})
        output: dict[str, list] = {"chat_template_kwargs": merged}
        if drop:
            output[_REASON_COLUMN] = reasons
        return output

    map_kwargs: dict[str, Any] = {}
    if is_map_style:
        map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Checking conversations ({dataset_name})"}
    dataset = dataset.map(check_batch, batched=True, with_indices=True, input_columns=input_columns, **map_kwargs)
    if not drop or (is_map_style and _REASON_COLUMN not in dataset.column_names):  # no row, so no batch was checked
        return dataset

    if is_map_style:
        reasons = dataset[_REASON_COLUMN]
        counts = Counter(reason for reason in reasons if reason is not None)
        if counts:
            first_rows: dict[str, int] = {}
            for row, reason in enumerate(reasons):
                if reason is not None:
                    first_rows.setdefault(reason, row)
            _print_dropped(dataset_name, counts, first_rows, len(reasons))
            map_kwargs["desc"] = f"Dropping invalid rows ({dataset_name})"
            dataset = dataset.filter(_is_valid, batched=True, input_columns=[_REASON_COLUMN], **map_kwargs)
        return dataset.remove_columns(_REASON_COLUMN)
    dataset = dataset.filter(_is_valid, batched=True, input_columns=[_REASON_COLUMN])
    return dataset.remove_columns(_REASON_COLUMN)


def conversation_columns(input_columns: list[str], batch: list[list]) -> tuple[list, list, list]:
    """`messages`, `chat_template_kwargs` and `tools` of a batched `map` over `input_columns` (`None` per row for a
    column the dataset lacks)."""
    values = dict(zip(input_columns, batch, strict=True))
    messages = values["messages"]
    missing = [None] * len(messages)
    return messages, values.get("chat_template_kwargs") or missing, values.get("tools") or missing


def _is_valid(reasons: list[str | None]) -> list[bool]:
    return [reason is None for reason in reasons]
