"""`trl-smol render`: examples of a recipe as the trainer will see them, trained tokens highlighted.

```bash
trl-smol render --config recipe.yaml -n 3
```

First every row of the train split goes through the trainer's validation (an invalid row is the error training
would stop with; with `invalid_rows: drop` the dropped rows are counted), and the number of rows checked is printed.
Then, for `n` training examples from `--start`, it shows the rendered text (trained tokens highlighted, the part cut by
`max_length` struck through), the token counts, and warnings: cut by `max_length`, cut to nothing trainable, an empty
assistant turn, or a reasoning mode that disagrees with the content. Nothing is trained and no model is loaded: the
recipe's data files, tokenizer, chat template, `chat_template_kwargs`, validation and `assistant_only_loss` are
applied exactly as `trl sft` and [`SmolSFTTrainer`] apply them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .arguments import non_negative_int, one_line_errors, recipe_parser

if TYPE_CHECKING:
    from ..config import SmolSFTConfig


@dataclass
class RenderedExample:
    """One example as the trainer sees it: `labels` is -100 where no loss is taken; tokens `keep_from:keep_to`
    survive truncation by `max_length`."""

    row: int
    input_ids: list[int]
    labels: list[int]
    keep_from: int
    keep_to: int
    warnings: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.keep_to - self.keep_from

    @property
    def trained(self) -> int:
        return sum(label != -100 for label in self.labels[self.keep_from : self.keep_to])

    def is_cut(self, position: int) -> bool:
        return not self.keep_from <= position < self.keep_to


def reasoning_mode(messages: list[dict[str, Any]], template_kwargs: dict[str, Any]) -> str:
    """The SmolLM3 reasoning mode of a conversation: `enable_thinking`, overridden by a flag in the system prompt."""
    enable = template_kwargs.get("enable_thinking")
    mode = "/no_think" if enable is False else "/think"
    first = messages[0] if messages else {}
    system = first.get("content") if first.get("role") == "system" else None
    if isinstance(system, str):
        if "/no_think" in system:
            mode = "/no_think"
        elif "/think" in system:
            mode = "/think"
    return mode


def example_warnings(
    messages: list[dict[str, Any]], template_kwargs: dict[str, Any], rendered: RenderedExample, drop: bool = False
):
    """Warnings for one example (see the module docstring); `drop`: the run's `invalid_rows` is `drop`."""
    found = []
    total = len(rendered.input_ids)
    if rendered.kept < total:
        trained_total = sum(label != -100 for label in rendered.labels)
        lost = trained_total - rendered.trained
        found.append(f"cut by max_length: {total - rendered.kept} of {total} tokens dropped, {lost} of them trained")
    if rendered.trained == 0 and rendered.kept < total:
        found.append(
            "cut to nothing by max_length: no trained token is left ("
            + ("TRL drops the row)" if drop else "training stops at this row with `invalid_rows: error`)")
        )
    elif rendered.trained == 0:
        found.append("no trained tokens: this example contributes no loss (TRL drops it)")
    mode = reasoning_mode(messages, template_kwargs)
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        content = message.get("content") or ""
        if not content.strip() and not message.get("tool_calls") and not message.get("reasoning_content"):
            found.append(f"empty assistant turn: messages[{i}]")
        has_thoughts = "<think>" in content and content.split("<think>", 1)[1].split("</think>", 1)[0].strip() != ""
        if mode == "/no_think" and (has_thoughts or message.get("reasoning_content")):
            found.append(f"messages[{i}] has reasoning but the mode is /no_think (an empty think block is rendered)")
        if mode == "/think" and not has_thoughts and not message.get("reasoning_content"):
            found.append(f"messages[{i}] has no <think> reasoning but the mode is /think")
    return found


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="Recipe (YAML) as given to `trl sft --config`.")
    parser.add_argument(
        "-n", "--num-examples", type=non_negative_int, default=3, help="How many training examples to show (0: none)."
    )
    parser.add_argument(
        "--start",
        type=non_negative_int,
        default=0,
        help="Index (from 0) of the first example to show; rows are numbered from 1, as in training's errors.",
    )


def load_recipe(config_path: str, extra: list[str] | None = None):
    """Parse a recipe like `trl sft` does: (script_args, training_args, model_args, dataset_args)."""
    parser = recipe_parser()
    return parser.parse_args_and_config(["--config", config_path, *(extra or [])], fail_with_unknown_args=False)[:4]


def load_train_split(script_args, dataset_args):
    """The training split, loaded as `trl sft` loads it with the plugin (a mixture through its `get_dataset`)."""
    from datasets import load_dataset

    from ..data import get_dataset

    if dataset_args.datasets:
        dataset = get_dataset(dataset_args)
    elif script_args.dataset_name:
        dataset = load_dataset(
            script_args.dataset_name, name=script_args.dataset_config, streaming=script_args.dataset_streaming
        )
    else:
        raise ValueError("The recipe sets neither `datasets` nor `dataset_name`: there is nothing to render.")
    return dataset[script_args.dataset_train_split]


def render_examples(
    dataset, tokenizer, args: SmolSFTConfig, *, start: int = 0, count: int = 3, template_applied: bool | None = None
):
    """Validate, template and tokenize `count` rows from `start` like the trainer; returns (rows, RenderedExample).

    `template_applied`: the plugin put its SmolLM3 template on `tokenizer` for this run (then the fixed `today` date
    applies, as in training); `None` decides from the tokenizer's template.
    """
    from datasets import Dataset

    from ..data import prepare_conversations, tokenize_conversations

    if isinstance(dataset, Dataset):
        rows = dataset.select(range(start, min(start + count, len(dataset))))
    else:
        rows = Dataset.from_list(list(dataset.skip(start).take(count)))
    if "messages" not in rows.column_names and "conversations" not in rows.column_names:
        raise ValueError(f"The dataset has no `messages` column (columns: {', '.join(rows.column_names)}).")
    rows = rows.add_column("_row", list(range(start, start + len(rows))))
    name = "train"
    defaults = None if template_applied is None else args.template_defaults(template_applied)
    prepared = prepare_conversations(  # row numbers in errors count from `start`, as in training
        rows, args=args, dataset_name=name, processing_class=tokenizer, template_defaults=defaults, row_offset=start
    )
    # check_truncation=False: a row cut to nothing trainable is shown, with a warning, instead of stopping here.
    tokenized = tokenize_conversations(prepared, tokenizer, args=args, dataset_name=name, check_truncation=False)
    results = []
    for example in tokenized:
        total = len(example["input_ids"])
        keep_from, keep_to = 0, total
        if args.max_length is not None and not args.packing:  # as TRL truncates (packing splits instead)
            if args.truncation_mode == "keep_end":
                keep_from = max(0, total - args.max_length)
            else:
                keep_to = min(total, args.max_length)
        rendered = RenderedExample(example["_row"], example["input_ids"], example["labels"], keep_from, keep_to)
        template_kwargs = {k: v for k, v in (example.get("chat_template_kwargs") or {}).items() if v is not None}
        rendered.warnings = example_warnings(
            example["messages"], template_kwargs, rendered, drop=args.invalid_rows == "drop"
        )
        results.append((example, rendered))
    return results


def check_every_row(dataset, tokenizer, args: SmolSFTConfig, *, template_applied: bool | None = None) -> str:
    """Run the trainer's validation over the whole train split; returns the line saying how many rows were checked.

    Raises what training would raise on the first invalid row ([`InvalidConversationError`]) with `invalid_rows:
    error`; with `drop`, the dropped rows are counted in a table, as in training. A streamed split is not read
    through: only the rows shown are checked.
    """
    from datasets import Dataset

    from ..data import prepare_conversations, tokenize_conversations
    from ..data.tokenization import cut_to_nothing

    columns = set(dataset.column_names or [])
    if not columns & {"messages", "conversations"}:
        raise ValueError(f"The dataset has no `messages` column (columns: {', '.join(sorted(columns))}).")
    if not isinstance(dataset, Dataset):
        return "Streamed train split: only the rows shown were checked."
    defaults = None if template_applied is None else args.template_defaults(template_applied)
    prepared = prepare_conversations(
        dataset, args=args, dataset_name="train", processing_class=tokenizer, template_defaults=defaults
    )
    dropped = len(dataset) - len(prepared)
    # Tokenized as training does: a row that max_length cuts to nothing trainable stops here as it stops training
    # (RowCutToNothingError), or with `invalid_rows: drop` is counted among the rows TRL drops.
    tokenized = tokenize_conversations(prepared, tokenizer, args=args, dataset_name="train")
    cut = 0
    if args.assistant_only_loss and not args.packing:
        cut = sum(
            cut_to_nothing(labels, args.max_length, args.truncation_mode) is not None for labels in tokenized["labels"]
        )
    line = f"Checked all {len(dataset)} rows of the train split: "
    problems = [f"{dropped} invalid, dropped (invalid_rows: drop)"] if dropped else []
    if cut:
        problems.append(f"{cut} cut to nothing by max_length={args.max_length}, dropped by TRL (invalid_rows: drop)")
    return line + ("; ".join(problems) + "." if problems else "every row is valid.")


def _styled(tokenizer, rendered: RenderedExample):
    from rich.text import Text

    def style_at(position: int) -> str:
        style = "bold green" if rendered.labels[position] != -100 else "dim"
        return style + " strike red" if rendered.is_cut(position) else style

    # Runs of tokens with one style are decoded together: a character split over byte-level tokens (an emoji) would
    # print as replacement characters token by token.
    text, start = Text(), 0
    for position in range(1, len(rendered.input_ids) + 1):
        if position == len(rendered.input_ids) or style_at(position) != style_at(start):
            text.append(tokenizer.decode(rendered.input_ids[start:position]), style=style_at(start))
            start = position
    return text


@one_line_errors("render")
def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel
    from transformers import AutoTokenizer

    from ..models import model_type_of, resolve_model_name
    from ..templating import apply_smollm3_template, smollm3_template_reason

    console = Console()
    script_args, training_args, model_args, dataset_args = load_recipe(args.config)
    model_name = resolve_model_name(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_name, trust_remote_code=training_args.trust_remote_code)
    reason = smollm3_template_reason(
        tokenizer,
        model_name,
        training_args.smol_chat_template,
        model_type=model_type_of(model_name, trust_remote_code=training_args.trust_remote_code),
        chat_template_path=training_args.chat_template_path,
        assistant_only_loss=training_args.assistant_only_loss,
    )
    if reason is not None:
        apply_smollm3_template(tokenizer)
    template = f"SmolLM3 ({reason})" if reason else "the tokenizer's own"
    loss = "assistant turns only" if training_args.assistant_only_loss else "every token"
    console.print(
        f"[bold]{args.config}[/]: model {model_args.model_name_or_path}, chat template: {template}, loss on {loss}, "
        f"max_length {training_args.max_length}, packing {training_args.packing}"
    )
    console.print("Legend: [bold green]trained[/] [dim]not trained[/] [strike red]cut by max_length[/]")
    dataset = load_train_split(script_args, dataset_args)
    console.print(check_every_row(dataset, tokenizer, training_args, template_applied=bool(reason)))
    results = render_examples(
        dataset, tokenizer, training_args, start=args.start, count=args.num_examples, template_applied=bool(reason)
    )
    for _, rendered in results:
        counts = f"{len(rendered.input_ids)} tokens, {rendered.kept} kept, {rendered.trained} trained"
        console.print(Panel(_styled(tokenizer, rendered), title=f"row {rendered.row + 1}", subtitle=counts))
        for warning in rendered.warnings:
            console.print(f"[yellow]warning[/] row {rendered.row + 1}: {warning}")
    if not results:
        console.print("[yellow]No rows to show.[/]")
    return 0
