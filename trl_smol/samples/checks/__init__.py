"""Checks on sample prompts: score each answer of a sample pass, so that the samples are a measurement.

A prompt row carries `checks`, a list of check names or objects; a recipe's `sample_checks` adds checks to every
prompt:

```json
{"prompt": "What is 7 plus 5?", "checks": ["stops", {"name": "expected", "value": "12"}]}
```

Built-in checks ([`BUILTIN_CHECKS`]): `expected`, `regex`, `startswith`, `json`, `tool_call`, `think`, `stops`. Other
packages register checks under the `trl_smol.sample_checks` entry-point group, as callbacks register under
`trl_smol.callbacks`: a callable `check(prompt_row, completion, **keys) -> bool | float`, where `prompt_row` is the
prompt as written, `completion` the answer after any think block, and `keys` the check object's other keys.

A check gives true/false or a score in [0, 1]; a score passes at [`PASS_SCORE`] (0.5) or more. A sample passes when
every check passes. See docs/samples.md.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transformers.utils import logging

from ...callbacks import registered_entry_points
from ..scores import pass_scores
from .builtin import BUILTIN_CHECKS, BuiltinCheck, CheckSpecError, parse_json_answer, parse_tool_calls

logger = logging.get_logger(__name__)

CHECKS_ENTRY_POINT_GROUP = "trl_smol.sample_checks"
PASS_SCORE = 0.5
# Per-pass metrics are `samples/pass_rate`, `samples/seconds` and `samples/<check>`: a check may not take those names.
RESERVED_NAMES = ("pass_rate", "seconds")

Result = bool | float


@dataclass(frozen=True)
class SampleCheck:
    """One check of one prompt: its name, the spec as written (for equality and messages), and what runs."""

    name: str
    spec: dict[str, Any]
    run: Callable[[dict[str, Any], dict[str, Any]], Any] = field(compare=False, repr=False)


def registered_checks() -> dict[str, Any]:
    """Installed user checks by name, from every package's `trl_smol.sample_checks` entry points."""
    return registered_entry_points(CHECKS_ENTRY_POINT_GROUP)


def parse_checks(specs: Any, where: str = "checks") -> list[SampleCheck]:
    """[`SampleCheck`]s from a list of specs (names or objects with `name`); `CheckSpecError` names the bad one by
    its position in `where`. User checks are loaded here, so a missing package fails before training."""
    if specs is None:
        return []
    if isinstance(specs, (str, dict)):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise CheckSpecError(f"`{where}` is a list of check names or objects; got {specs!r}.")
    return [_parse_one(spec, f"{where}[{position}]") for position, spec in enumerate(specs)]


def _parse_one(spec: Any, where: str) -> SampleCheck:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise CheckSpecError(
            f'{where}: a check is a name or an object with `name`, e.g. "stops" or {{"name": "regex", "pattern": '
            f'"^\\\\d+$"}}; got {spec!r}.'
        )
    name, options = spec["name"], {key: value for key, value in spec.items() if key != "name"}
    try:
        if name in BUILTIN_CHECKS:
            return SampleCheck(name, dict(spec), _builtin(BUILTIN_CHECKS[name], options))
        return SampleCheck(name, dict(spec), _user_check(name, options))
    except CheckSpecError as error:
        raise CheckSpecError(f"{where}: {error}") from None


def _builtin(cls: type[BuiltinCheck], options: dict[str, Any]) -> Callable:
    parameters = inspect.signature(cls.__init__).parameters.values()
    allowed = [p.name for p in parameters if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(f"`{name}`" for name in allowed) or "no other keys"
        raise CheckSpecError(f"check `{cls.name}` takes {takes}; unknown: {', '.join(unknown)}.")
    check = cls(**options)
    return lambda prompt_row, sample: check(sample)


def _user_check(name: str, options: dict[str, Any]) -> Callable:
    registry = registered_checks()
    if name not in registry:
        known = sorted(BUILTIN_CHECKS) + sorted(registry)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        installed = ", ".join(sorted(registry)) or "none"
        raise CheckSpecError(
            f"unknown check `{name}`.{hint} Built-in: {', '.join(sorted(BUILTIN_CHECKS))}; installed: {installed}. "
            f"Packages register checks under the `{CHECKS_ENTRY_POINT_GROUP}` entry-point group."
        )
    if name in RESERVED_NAMES:
        raise CheckSpecError(f"check `{name}` ({registry[name].value}) shares its name with a metric; rename it.")
    try:
        function = registry[name].load()
    except Exception as error:  # noqa: BLE001 - any import failure of another package, named with its cause
        raise CheckSpecError(f"check `{name}` ({registry[name].value}) cannot be loaded: {error!r}.") from None
    if not callable(function):
        raise CheckSpecError(f"check `{name}` ({registry[name].value}) is not callable.")
    try:
        inspect.signature(function).bind({}, "", **options)
    except TypeError as error:
        keys = ", ".join(f"`{key}`" for key in options) or "no keys"
        raise CheckSpecError(
            f"check `{name}` ({registry[name].value}) is called as check(prompt_row, completion, **keys) with "
            f"{keys}: {error}."
        ) from None
    except ValueError:  # a callable without an inspectable signature: its call will tell
        pass
    return lambda prompt_row, sample: function(prompt_row, sample["completion"], **options)


def keyed(checks: list[SampleCheck]) -> dict[str, SampleCheck]:
    """Checks by the key their results get: the name, then `name#2`, `name#3` for further checks of that name. The
    same spec twice (a row's own and the recipe's `sample_checks`) counts once."""
    unique: list[SampleCheck] = []
    for check in checks:
        if check not in unique:
            unique.append(check)
    by_key: dict[str, SampleCheck] = {}
    for check in unique:
        count = sum(1 for other in by_key.values() if other.name == check.name)
        by_key[check.name if count == 0 else f"{check.name}#{count + 1}"] = check
    return by_key


def passes(result: Result) -> bool:
    """Whether one check's result passes: true, or a score of at least [`PASS_SCORE`]."""
    return result is True or (not isinstance(result, bool) and result >= PASS_SCORE)


def score(checks: dict[str, SampleCheck], prompt_row: dict[str, Any], sample: dict[str, Any], where: str):
    """`(results, passed)` of one sample: each check's result by key, and whether all passed (`None` without
    checks). A check that raises or returns something other than a bool or a score in [0, 1] fails, with an error
    in the log naming it and the prompt: training goes on."""
    results: dict[str, Result] = {}
    for key, check in checks.items():
        try:
            results[key] = _as_result(check.run(prompt_row, sample))
        except Exception as error:  # noqa: BLE001 - a broken check must not end a training run
            logger.error(
                f"Sample check `{key}` on {where} at step {sample.get('step')} failed, counted as failed: {error}"
            )
            results[key] = False
    return results, (all(passes(result) for result in results.values()) if results else None)


def _as_result(value: Any) -> Result:
    value = value.item() if hasattr(value, "item") else value  # numpy and torch scalars
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not math.isnan(value) and 0 <= value <= 1:
        return float(value)
    raise TypeError(f"returned {value!r}, not true/false or a score in [0, 1]")


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """A pass's figures as the trackers log them: `pass_rate` and each check's mean, `{}` when no row has checks;
    [`PassScores.metrics`] of [`pass_scores`], so that the card and `trl-smol samples` show the same figures
    (`trl_smol.samples.scores` has the rules)."""
    return pass_scores(rows).metrics()


__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS_ENTRY_POINT_GROUP",
    "PASS_SCORE",
    "CheckSpecError",
    "SampleCheck",
    "keyed",
    "parse_checks",
    "parse_json_answer",
    "parse_tool_calls",
    "passes",
    "registered_checks",
    "score",
    "summarize",
]
