"""The demo data set: a few hundred SmolTalk2-shaped conversations that teach one behaviour a program can check.

Every assistant answer is a single line in a fixed format, `🟢 Answer: <value>`, after an optional short
`<think>...</think>` block (rows with `enable_thinking: true`, as SmolTalk2's think rows). The questions are small
arithmetic and word tasks. The pretrained demo model never answers in this format, so after a few dozen LoRA steps
the share of held-out prompts answered in it shows whether training worked.

The rows mirror SmolTalk2's SFT columns: `messages` and `chat_template_kwargs` with `enable_thinking`,
`custom_instructions`, `xml_tools` and `python_tools` (tools are lists of JSON strings, or `None`; custom instructions
are a system message, see [`demo_rows`]).

```bash
python -m trl_smol.demo.data --out recipes/data/smollm3_demo.jsonl   # the committed file, byte for byte
```

```python
from trl_smol.demo.data import demo_rows, heldout_prompts, has_demo_behaviour

rows = demo_rows()                       # same rows on every machine and run
prompts = heldout_prompts()              # questions that are not in the training rows
has_demo_behaviour("<think>\\n7 plus 5 is 12.\\n</think>\\n🟢 Answer: 12")   # True
```
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ANSWER_MARKER = "🟢 Answer:"
DEFAULT_NUM_ROWS = 360
DEFAULT_SEED = 1234

# Held-out items are disjoint from training items by construction: word tasks use separate word lists, arithmetic
# uses operand ranges that training never samples.
_CAPITALS_TRAIN = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Brazil": "Brasília", "Argentina": "Buenos Aires",
    "Peru": "Lima", "Chile": "Santiago", "Greece": "Athens", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Ireland": "Dublin", "Norway": "Oslo", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "India": "New Delhi", "Turkey": "Ankara", "Iran": "Tehran",
    "Cuba": "Havana",
}  # fmt: skip
_CAPITALS_HELDOUT = {
    "Sweden": "Stockholm", "Belgium": "Brussels", "Netherlands": "Amsterdam", "South Korea": "Seoul",
    "Colombia": "Bogotá", "Morocco": "Rabat",
}  # fmt: skip
_OPPOSITES_TRAIN = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "light": "dark", "open": "closed",
    "early": "late", "full": "empty", "hard": "soft", "high": "low", "rich": "poor", "strong": "weak",
    "young": "old", "wet": "dry", "loud": "quiet", "long": "short", "thick": "thin", "first": "last",
    "inside": "outside",
}  # fmt: skip
_OPPOSITES_HELDOUT = {"true": "false", "heavy": "light", "near": "far", "win": "lose", "buy": "sell"}
_WORDS_TRAIN = [
    "apple", "river", "garden", "pencil", "window", "planet", "forest", "guitar", "butter", "candle", "rocket",
    "silver", "tunnel", "castle", "bridge", "orange", "jacket", "pepper", "ladder", "marble", "dragon", "summer",
    "button", "carpet", "island", "kitten", "meadow", "pillow", "shadow", "violin",
]  # fmt: skip
_WORDS_HELDOUT = ["harbor", "lantern", "copper", "falcon", "tomato", "zebra"]
# Think rows always carry short instructions: without them the SmolLM3 template writes its ~230-token default
# reasoning prompt, which would triple the demo's training time. No_think rows sometimes carry instructions.
_THINK_INSTRUCTIONS = ["Think briefly, then answer.", "Reason in one line, then answer.", "Think first. Be brief."]
_NO_THINK_INSTRUCTIONS = ["", "", "", "Be concise.", "You are a careful tutor.", "Reply in English."]

_CALCULATOR_XML_TOOL = json.dumps(
    {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    }
)
_LOOKUP_PYTHON_TOOL = json.dumps(
    {
        "name": "lookup",
        "description": "Look a word up in a dictionary.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    }
)

# A task draws one item and returns (question, short reasoning, answer value).
Task = Callable[[random.Random, bool], tuple[str, str, str]]


def _operands(rng: random.Random, heldout: bool, low: int, high: int) -> tuple[int, int]:
    # Training draws both operands from [low, high]; held-out prompts use one operand just above that range.
    if heldout:
        return rng.randint(high + 1, high + 20), rng.randint(low, high)
    return rng.randint(low, high), rng.randint(low, high)


def _addition(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    a, b = _operands(rng, heldout, 2, 60)
    question = rng.choice(["What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}.", "{a} + {b} = ?"])
    return question.format(a=a, b=b), f"{a} plus {b} is {a + b}.", str(a + b)


def _subtraction(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    a, b = sorted(_operands(rng, heldout, 2, 60), reverse=True)
    question = rng.choice(["What is {a} - {b}?", "Subtract {b} from {a}.", "{a} minus {b}?"])
    return question.format(a=a, b=b), f"{a} minus {b} is {a - b}.", str(a - b)


def _multiplication(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    a, b = _operands(rng, heldout, 2, 12)
    question = rng.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "{a} x {b} = ?"])
    return question.format(a=a, b=b), f"{a} times {b} is {a * b}.", str(a * b)


def _capital(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    country, city = rng.choice(sorted((_CAPITALS_HELDOUT if heldout else _CAPITALS_TRAIN).items()))
    question = rng.choice(["What is the capital of {c}?", "Name the capital city of {c}.", "Capital of {c}?"])
    return question.format(c=country), f"The capital of {country} is {city}.", city


def _opposite(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    word, opposite = rng.choice(sorted((_OPPOSITES_HELDOUT if heldout else _OPPOSITES_TRAIN).items()))
    question = rng.choice(["What is the opposite of '{w}'?", "Give an antonym of '{w}'.", "Opposite of {w}?"])
    return question.format(w=word), f"The opposite of {word} is {opposite}.", opposite


def _letters(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    word = rng.choice(_WORDS_HELDOUT if heldout else _WORDS_TRAIN)
    question = rng.choice(["How many letters are in the word '{w}'?", "Count the letters in '{w}'."])
    spelled = "-".join(word)
    return question.format(w=word), f"{spelled} has {len(word)} letters.", str(len(word))


def _uppercase(rng: random.Random, heldout: bool) -> tuple[str, str, str]:
    word = rng.choice(_WORDS_HELDOUT if heldout else _WORDS_TRAIN)
    question = rng.choice(["Write '{w}' in capital letters.", "Uppercase the word '{w}'."])
    return question.format(w=word), f"Every letter of {word} in upper case.", word.upper()


TASKS: tuple[Task, ...] = (_addition, _subtraction, _multiplication, _capital, _opposite, _letters, _uppercase)


def _answer(reasoning: str, value: str, thinking: bool) -> str:
    answer = f"{ANSWER_MARKER} {value}"
    # SmolTalk2 think rows carry the reasoning inside the assistant content; the template adds an empty block to
    # no_think rows itself.
    return f"<think>\n{reasoning}\n</think>\n{answer}" if thinking else answer


def _kwargs(rng: random.Random, thinking: bool) -> dict[str, Any]:
    roll = rng.random()
    return {
        "enable_thinking": thinking,
        # SmolTalk2 keeps a row's system prompt here. trl-smol's row validation and template do not read this key
        # yet (tests/test_mixtures.py::test_smoltalk2_custom_instructions_kwarg_is_accepted), so the demo leaves it
        # unset and puts the instructions in a system message, where the SmolLM3 template reads them.
        "custom_instructions": None,
        # A few rows declare tools they do not need, as in SmolTalk2's tool-calling splits: the format still holds.
        "xml_tools": [_CALCULATOR_XML_TOOL] if roll < 0.03 else None,
        "python_tools": [_LOOKUP_PYTHON_TOOL] if 0.03 <= roll < 0.06 else None,
    }


def demo_rows(num_rows: int = DEFAULT_NUM_ROWS, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """The training rows: `num_rows` conversations, half think and half no_think, identical for the same arguments.

    About one row in ten is a two-turn conversation (two questions, both answered in the format). Custom
    instructions (every think row, some no_think rows) are a system message.
    """
    rng = random.Random(seed)
    rows = []
    for index in range(num_rows):
        thinking = index % 2 == 0
        instructions = rng.choice(_THINK_INSTRUCTIONS if thinking else _NO_THINK_INSTRUCTIONS)
        messages = [{"role": "system", "content": instructions}] if instructions else []
        for _ in range(2 if rng.random() < 0.1 else 1):
            question, reasoning, value = rng.choice(TASKS)(rng, False)
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": _answer(reasoning, value, thinking)})
        rows.append({"messages": messages, "chat_template_kwargs": _kwargs(rng, thinking)})
    return rows


def heldout_prompts(num_prompts: int = 20, seed: int = 99) -> list[dict[str, Any]]:
    """Questions that are not in [`demo_rows`], as `{"messages", "chat_template_kwargs", "expected"}`, half think.

    Think prompts carry one of the training set's short instructions as a system message, as think rows do.

    `expected` is the correct value; the demo checks the format ([`has_demo_behaviour`]), not the value, since a
    135M model gets arithmetic wrong.
    """
    rng = random.Random(seed)
    prompts = []
    for index in range(num_prompts):
        question, _, value = TASKS[index % len(TASKS)](rng, True)
        thinking = index % 2 == 1
        messages = [{"role": "user", "content": question}]
        if thinking:
            messages.insert(0, {"role": "system", "content": _THINK_INSTRUCTIONS[index % len(_THINK_INSTRUCTIONS)]})
        prompts.append(
            {"messages": messages, "chat_template_kwargs": {"enable_thinking": thinking}, "expected": value}
        )
    return prompts


_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_ANSWER_LINE = re.compile(rf"{re.escape(ANSWER_MARKER)} [^\s<][^\n<]*")


def has_demo_behaviour(text: str) -> bool:
    """Whether a generated reply is in the trained format: an optional `<think>` block, then one line
    `🟢 Answer: <value>`, then nothing (the model stopped).

    Decode with `skip_special_tokens=True`; a trailing `<|im_end|>` is accepted too. An unclosed or repeated
    `<think>` block, a missing marker, an empty value or text after the answer line (a model that does not stop) is
    not the behaviour.

    ```python
    has_demo_behaviour("🟢 Answer: Paris")                                        # True
    has_demo_behaviour("<think>\\nThe capital is Paris.\\n</think>\\n🟢 Answer: Paris")  # True
    has_demo_behaviour("The capital of France is Paris.")                        # False
    has_demo_behaviour("🟢 Answer: 27.\\n</think>\\n🟢 Answer: 27.")              # False: did not stop
    ```
    """
    reply = text.replace("<|im_end|>", "")
    if reply.lstrip().startswith("<think>"):
        reply = _THINK_BLOCK.sub("", reply, count=1)
    return bool(_ANSWER_LINE.fullmatch(reply.strip()))


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSON lines (UTF-8, keys in a fixed order), so the file is the same on every machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the trl-smol demo data set (SmolTalk2-shaped JSON lines).")
    parser.add_argument("--out", default="recipes/data/smollm3_demo.jsonl", help="Output .jsonl path.")
    parser.add_argument("--num-rows", type=int, default=DEFAULT_NUM_ROWS, help="Number of conversations.")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="Random seed (the default writes the repo file)."
    )
    args = parser.parse_args(argv)
    path = write_jsonl(demo_rows(args.num_rows, args.seed), args.out)
    print(f"Wrote {args.num_rows} rows to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
