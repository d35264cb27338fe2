"""What to do with a malformed conversation (`invalid_rows`): stop naming it, or drop it and count.

```yaml
invalid_rows: drop   # default `error`: stop before tokenization, naming the dataset, row and field
```

The checks themselves are `trl_smol.data.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import Decision, Feature, RunContext, Source, check_choice

INVALID_ROW_POLICIES = ("error", "drop")


@dataclass
class InvalidRowsArguments:
    """
    invalid_rows (`str`, *optional*, defaults to `"error"`):
        What to do with a malformed conversation: `"error"` stops before tokenization and names the dataset, row and
        field; `"drop"` removes such rows and prints a count per reason.
    """

    invalid_rows: str = field(
        default="error",
        metadata={
            "help": "Malformed conversations: 'error' stops and names dataset, row and field; 'drop' removes them and "
            "prints a count per reason.",
            "choices": list(INVALID_ROW_POLICIES),
        },
    )


class InvalidRows(Feature):
    name = "invalid_rows"
    banner_key = "invalid_rows"

    def check_arguments(self, args: Any) -> None:
        check_choice(args, "invalid_rows", INVALID_ROW_POLICIES)

    def decide(self, context: RunContext) -> Decision:
        source = Source.USER if context.is_set("invalid_rows") else Source.DEFAULT
        return Decision(self.name, source, context.value("invalid_rows", "error"))

    def describe(self, decision: Decision) -> str | None:
        return "drop (invalid_rows)" if decision.value == "drop" else None
