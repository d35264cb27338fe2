"""A preset lever: a feature with one setting that the user may set and a memory preset may propose.

The rules are the same for every lever, so they are written once here:

- set by the user: the user's value. A value that cannot apply to this run stops it before the model loads
  ([`FeatureError`], one line naming the setting and what to set instead);
- left unset under a memory preset that proposes it: on, unless it cannot apply, when the proposal is withdrawn and
  the preset's table says why;
- otherwise: the setting's default (off).

```python
class PaddingFree(PresetLever):
    name = setting = "smol_padding_free"

    def proposal(self, context):           # what a memory preset sets, and why (None: nothing)
        return True, "no padding computed; the same loss (TRL still truncates)"

    def problem(self, context):            # why it cannot apply to this run (None: it can)
        return None
```
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..memory.preset_result import PresetRow, RowStatus
from .base import Decision, Feature, FeatureError, RunContext, Source


class PresetLever(Feature):
    """A feature driven by one setting (`setting`) that a memory preset may propose."""

    setting: ClassVar[str]

    def proposal(self, context: RunContext) -> tuple[Any, str] | None:
        """`(value, reason)` a memory preset sets when the user left the setting unset, or None."""
        return None

    def problem(self, context: RunContext, value: Any) -> str | None:
        """Why `value` cannot apply to this run, or None."""
        return None

    def decide(self, context: RunContext) -> Decision:
        value = context.value(self.setting)
        proposal = self.proposal(context) if context.preset is not None else None
        if context.is_set(self.setting):
            problem = self.problem(context, value) if value else None
            if problem is not None:
                shown = str(value).lower() if isinstance(value, bool) else value
                raise FeatureError(f"{self.setting}: {shown} cannot apply: {problem}. Set `{self.setting}: false`.")
            return Decision(self.name, Source.USER, value, self.setting if value else None, proposal=proposal)
        if proposal is not None:
            problem = self.problem(context, proposal[0])
            if problem is not None:
                return Decision(self.name, Source.WITHDRAWN, proposal[0], problem, proposal=proposal)
            return Decision(
                self.name, Source.PRESET, proposal[0], f"memory preset {context.preset_tier}", None, proposal
            )
        return Decision(self.name, Source.DEFAULT, value)

    def preset_row(self, decision: Decision, context: RunContext) -> PresetRow | None:
        if decision.proposal is None:
            return None
        proposed, why = decision.proposal
        if decision.source is Source.PRESET:
            return PresetRow(self.setting, proposed, proposed, RowStatus.CHANGED, why)
        if decision.source is Source.WITHDRAWN:
            return PresetRow(
                self.setting, proposed, context.value(self.setting), RowStatus.UNAVAILABLE, decision.reason
            )
        if decision.source is Source.USER and decision.value != proposed:
            return PresetRow(
                self.setting, proposed, decision.value, RowStatus.KEPT_EXPLICIT, "set in the recipe or command line"
            )
        return None

    def prepare(self, decision: Decision, plan: Any, args: Any, tokenizer: Any) -> Any:
        # The preset's value goes into the arguments, as the preset's own changes do (the model card lists them).
        if decision.source is Source.PRESET:
            setattr(args, self.setting, decision.value)
        return None
