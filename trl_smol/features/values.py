"""The checks of recipe values, shared by `trl sft`, `trl-smol doctor`, `render` and `estimate`.

A [`Rule`] says which values a setting accepts, in words and as a test. A feature lists the rules of its own fields in
`Feature.rules` (checked by `Feature.check_arguments`); [`TRL_RULES`] are TRL's and PEFT's values that TRL does not
check itself but the plugin relies on (the memory estimate, the preset, truncation). Every entry point raises the
same one-line [`RecipeValueError`]:

```python
check_values(args, {"max_length": whole_number(1, null="null (no truncation)")})
# RecipeValueError: max_length=-1 is not valid; use a whole number >= 1, or null (no truncation).
```

`trl sft` and `trl-smol render` check the recipe and the command line in the recipe parser, before any dataclass is
built (trl_smol/parser.py); `trl-smol doctor` reads the recipe with the same parser; `trl-smol estimate` checks its
flags with the rules of the recipe keys they stand for; `SmolSFTConfig` checks [`trl_rules`] before TRL's
`__post_init__` and each feature's rules after it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class RecipeValueError(ValueError):
    """A setting's value that the run cannot use: one line naming the key, the value and what is accepted."""

    def __init__(self, key: str, value: Any, accepted: str, hint: str = ""):
        self.key, self.value, self.accepted = key, value, accepted
        super().__init__(f"{key}={value!r} is not valid{hint}; use {accepted}.")


@dataclass(frozen=True)
class Rule:
    """The values one setting accepts: `accepted` in words (completing "use ..."), `test` the check, `parse` how a
    command-line flag's text becomes a value (`trl-smol estimate`)."""

    accepted: str
    test: Callable[[Any], bool]
    parse: Callable[[str], Any] = str
    hint: Callable[[Any], str] | None = None  # e.g. the closest valid name

    def check(self, key: str, value: Any) -> None:
        if not self.test(value):
            raise RecipeValueError(key, value, self.accepted, self.hint(value) if self.hint else "")

    def from_text(self, key: str, text: str) -> Any:
        """A flag's value, converted and checked like the recipe key `key`."""
        try:
            value = self.parse(text)
        except ValueError:
            raise RecipeValueError(key, text, self.accepted) from None
        self.check(key, value)
        return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parser(convert: Callable[[str], Any], null: str | None) -> Callable[[str], Any]:
    """A flag's text as a value: `null`/`none` is None where the setting accepts it, else `convert(text)`."""
    return lambda text: None if null and text.strip().lower() in ("null", "none") else convert(text)


def whole_number(minimum: int, *, null: str | None = None, note: str = "") -> Rule:
    """A whole number >= `minimum`; `null`: what None means, when it is accepted."""
    accepted = f"a whole number >= {minimum}{note}" + (f", or {null}" if null else "")
    test = lambda v: (v is None and null is not None) or (_is_int(v) and v >= minimum)  # noqa: E731
    return Rule(accepted, test, _parser(int, null))


def number(*, above: float | None = None, at_least: float | None = None, below: float | None = None,
           at_most: float | None = None, null: str | None = None) -> Rule:  # fmt: skip
    """A finite number within the bounds given; `null`: what None means, when it is accepted."""
    bounds = [
        f"> {above:g}" if above is not None else "",
        f">= {at_least:g}" if at_least is not None else "",
        f"< {below:g}" if below is not None else "",
        f"<= {at_most:g}" if at_most is not None else "",
    ]

    def test(value: Any) -> bool:
        if value is None:
            return null is not None
        return (
            _is_number(value)
            and (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (below is None or value < below)
            and (at_most is None or value <= at_most)
        )

    accepted = "a number " + " and ".join(bound for bound in bounds if bound) + (f", or {null}" if null else "")
    return Rule(accepted, test, _parser(float, null))


def one_of(choices: Iterable[str], what: str = "") -> Rule:
    """One of `choices` (`what`: where they come from, e.g. transformers' OptimizerNames)."""
    names = tuple(choices)

    def closest(value: Any) -> str:
        close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""

    accepted = f"one of {what + ': ' if what else ''}{', '.join(names)}"
    return Rule(accepted, lambda v: str(getattr(v, "value", v)) in names, hint=closest)


def optimizer() -> Rule:
    """A name of transformers' `OptimizerNames` (what `optim` accepts)."""
    from transformers.training_args import OptimizerNames

    return one_of((name.value for name in OptimizerNames), "transformers' optimizers (OptimizerNames)")


_TRL_RULES: dict[str, Rule] = {}


def trl_rules() -> Mapping[str, Rule]:
    """TRL's and PEFT's settings the plugin checks: TRL trains `max_length: -1` with one token cut from each row, and
    transformers' own optimizer check comes after the recipe is read, with a traceback."""
    if not _TRL_RULES:  # built on first use: the optimizer names come from transformers
        _TRL_RULES.update(
            max_length=whole_number(1, null="null (no truncation)"),
            per_device_train_batch_size=whole_number(1),
            gradient_accumulation_steps=whole_number(1),
            optim=optimizer(),
            lora_r=whole_number(1),
            lora_dropout=number(at_least=0, below=1),
        )
    return _TRL_RULES


def check_values(args: Any, rules: Mapping[str, Rule]) -> None:
    """Raise [`RecipeValueError`] for the first setting of `rules` whose value on `args` it does not accept (settings
    that `args` does not have are skipped: a namespace of another script's dataclasses)."""
    missing = object()
    for key, rule in rules.items():
        value = getattr(args, key, missing)
        if value is not missing:
            rule.check(key, value)


def check_recipe_values(args: Any, features: Iterable[Any]) -> None:
    """Every check of the recipe's values: TRL's (see [`trl_rules`]), then each feature's `check_arguments`."""
    check_values(args, trl_rules())
    for feature in features:
        feature.check_arguments(args)


def find_rule(key: str, features: Iterable[Any]) -> Rule | None:
    """The rule of setting `key`: TRL's or the feature's that owns it."""
    if key in trl_rules():
        return trl_rules()[key]
    return next((feature.rules[key] for feature in features if key in feature.rules), None)


def text_not_accepted(key: str, text: str, kind: str, features: Iterable[Any]) -> RecipeValueError:
    """The error for a value that the parser could not convert (`sample_every_n_steps: often` for an int): the rule's
    words when the setting has one, else the type's (`kind`: `int`, `float`, `bool`, or the accepted values in
    words, e.g. argparse's choices)."""
    rule = find_rule(key, features)
    accepted = (
        rule.accepted
        if rule
        else {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(kind, kind)
    )
    return RecipeValueError(key, text, accepted)
