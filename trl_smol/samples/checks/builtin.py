"""The built-in sample checks, one class each: built from a check spec's keys (checked there, before training), then
called on each sample row (`completion`, `thinking`, `enable_thinking`, `stopped`: see [`SampleGenerator`]).

They read what SmolLM3 writes: the answer after any `<think>...</think>` block is the row's `completion`, the block's
text its `thinking` (`None` without a block); the generation stopped at `<|im_end|>` when `stopped` is true.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any


class CheckSpecError(ValueError):
    """A check spec that cannot be used (unknown name, a missing or wrong key); the caller names the prompt."""


class BuiltinCheck:
    """A built-in check: `name`, the spec keys it takes (`__init__`'s keyword arguments), and `__call__`."""

    name: str

    def __call__(self, sample: dict[str, Any]) -> bool:
        raise NotImplementedError


def _need_str(name: str, key: str, value: Any, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise CheckSpecError(f"check `{name}` needs `{key}`, a non-empty string, e.g. {example}; got {value!r}.")
    return value


class Expected(BuiltinCheck):
    """The answer equals `value`: exactly (as generated, surrounding whitespace aside), or with `normalize: true`
    after folding case, removing punctuation and collapsing whitespace (`"The answer: 12."` == `"the answer 12"`)."""

    name = "expected"

    def __init__(self, value: Any = None, normalize: bool = False):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            raise CheckSpecError(
                f'check `expected` needs `value`, the reference answer (a string or a number), e.g. {{"name": '
                f'"expected", "value": "12", "normalize": true}}; got {value!r}.'
            )
        if not isinstance(normalize, bool):
            raise CheckSpecError(f"check `expected`: `normalize` is true or false; got {normalize!r}.")
        self.normalize = normalize
        self.value = self._form(str(value))

    def _form(self, text: str) -> str:
        if not self.normalize:
            return text.strip()
        text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
        return " ".join(text.split())

    def __call__(self, sample: dict[str, Any]) -> bool:
        return self._form(sample["completion"]) == self.value


class Regex(BuiltinCheck):
    """`pattern` is found in the answer (`re.search`): anchor it with `^`/`$` to match the whole answer; inline flags
    such as `(?i)`, `(?m)` or `(?s)` set case-insensitive, multi-line or dot-all matching."""

    name = "regex"

    def __init__(self, pattern: Any = None):
        _need_str(self.name, "pattern", pattern, '{"name": "regex", "pattern": "^\\\\d+$"}')
        try:
            self.pattern = re.compile(pattern)
        except re.error as error:
            raise CheckSpecError(
                f"check `regex`: `pattern` {pattern!r} is not a regular expression: {error}."
            ) from None

    def __call__(self, sample: dict[str, Any]) -> bool:
        return self.pattern.search(sample["completion"]) is not None


class StartsWith(BuiltinCheck):
    """The answer starts with `prefix` (leading whitespace aside)."""

    name = "startswith"

    def __init__(self, prefix: Any = None):
        self.prefix = _need_str(self.name, "prefix", prefix, '{"name": "startswith", "prefix": "The answer"}')

    def __call__(self, sample: dict[str, Any]) -> bool:
        return sample["completion"].startswith(self.prefix)


_FENCED = re.compile(r"```[A-Za-z]*\n(?P<body>.*?)\n?```", re.DOTALL)


def parse_json_answer(text: str) -> tuple[bool, Any]:
    """`(True, value)` if the answer is JSON, alone or as the one fenced code block it holds; else `(False, None)`."""
    candidates = [text.strip()]
    fenced = _FENCED.fullmatch(text.strip())
    if fenced:
        candidates.append(fenced.group("body"))
    for candidate in candidates:
        try:
            return True, json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return False, None


class Json(BuiltinCheck):
    """The answer is JSON (alone, or as one ```json fenced block) and, with `schema`, valid against that JSON schema
    (any draft `jsonschema` knows; `$schema` picks one, else the latest)."""

    name = "json"

    def __init__(self, schema: Any = None):
        self.validator = None
        if schema is None:
            return
        if not isinstance(schema, (dict, bool)):
            raise CheckSpecError(f"check `json`: `schema` is a JSON schema (an object); got {schema!r}.")
        from jsonschema import SchemaError, validators

        cls = validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as error:
            where = "/".join(str(part) for part in error.path) or "the top level"
            raise CheckSpecError(
                f"check `json`: `schema` is not a valid JSON schema (at {where}: {error.message})."
            ) from None
        self.validator = cls(schema)

    def __call__(self, sample: dict[str, Any]) -> bool:
        parsed, value = parse_json_answer(sample["completion"])
        return parsed and (self.validator is None or self.validator.is_valid(value))


_TOOL_CALL = re.compile(r"<tool_call>(?P<body>.*?)</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The tool calls of an answer in SmolLM3's format, as the chat template writes them:
    `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` (`arguments` as a JSON string is parsed too).
    `None` when any block does not parse, lacks a name, or is left open (cut at the token limit)."""
    calls = []
    for match in _TOOL_CALL.finditer(text):
        try:
            call = json.loads(match.group("body"))
        except json.JSONDecodeError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                return None
        calls.append({"name": call["name"], "arguments": arguments})
    if text.count("<tool_call>") != len(calls):
        return None  # an unclosed block: the call was cut off
    return calls


class ToolCall(BuiltinCheck):
    """The answer holds tool calls in SmolLM3's format that all parse, one of which names `tool` (with exactly
    `arguments`, when given)."""

    name = "tool_call"

    def __init__(self, tool: Any = None, arguments: Any = None):
        self.tool = _need_str(self.name, "tool", tool, '{"name": "tool_call", "tool": "get_weather"}')
        if arguments is not None and not isinstance(arguments, dict):
            raise CheckSpecError(f"check `tool_call`: `arguments` is an object of argument values; got {arguments!r}.")
        self.arguments = arguments

    def __call__(self, sample: dict[str, Any]) -> bool:
        calls = parse_tool_calls(sample["completion"])
        if not calls:
            return False
        return any(
            call["name"] == self.tool and (self.arguments is None or call["arguments"] == self.arguments)
            for call in calls
        )


class Think(BuiltinCheck):
    """The reasoning mode as SmolLM3's template writes it. Think mode: the answer begins with a closed `<think>`
    block holding some text, and an answer follows it. No-think mode (`enable_thinking: false`, or `/no_think` in
    the system prompt): the template already wrote the empty `<think>\\n\\n</think>` block, so the answer has no
    reasoning (an empty block is accepted). In both modes a further `<think>` or `</think>` in the answer fails."""

    name = "think"

    def __call__(self, sample: dict[str, Any]) -> bool:
        answer, thinking = sample["completion"], sample["thinking"]
        if "<think>" in answer or "</think>" in answer:
            return False
        if sample["enable_thinking"]:
            return bool(thinking and thinking.strip()) and bool(answer.strip())
        return not (thinking or "").strip()


class Stops(BuiltinCheck):
    """The model ended its answer with its stop token (`<|im_end|>`) within `sample_max_new_tokens`."""

    name = "stops"

    def __call__(self, sample: dict[str, Any]) -> bool:
        return bool(sample["stopped"])


BUILTIN_CHECKS: dict[str, type[BuiltinCheck]] = {
    check.name: check for check in (Expected, Regex, StartsWith, Json, ToolCall, Think, Stops)
}
