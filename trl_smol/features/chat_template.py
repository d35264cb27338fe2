"""The SmolLM3 chat template (`smol_chat_template`, `chat_template_kwargs`, `chat_template_today`).

```yaml
smol_chat_template: auto   # a SmolLM3 model that needs it (default); `smollm3`: always; `keep`: never
chat_template_kwargs: {enable_thinking: false}   # defaults merged under each example's own
```

When the template applies (`trl_smol.templating.smollm3_template_reason` says why), it is put on the tokenizer before
TRL sees it, with `<|im_end|>` as the stop token; TRL then updates the model and generation configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import model_type_of
from ..templating import CHAT_TEMPLATE_MODES, END_OF_TURN, apply_smollm3_template, smollm3_template_reason
from .base import Decision, Feature, RunContext, Source, check_choice

# The date the SmolLM3 template writes into its "Today Date:" line when the data does not say otherwise. A fixed
# value makes the same dataset tokenize to the same ids on every day (the released template uses the clock).
DEFAULT_TEMPLATE_TODAY = "08 July 2025"


@dataclass
class ChatTemplateArguments:
    """
    smol_chat_template (`str`, *optional*, defaults to `"auto"`):
        When to apply the SmolLM3 chat template shipped with this package. `"auto"`: only to a SmolLM3 model whose
        tokenizer has no chat template, a SmolLM3 *Base* checkpoint (whose tokenizer does not carry the instruct
        format), or one whose template cannot mark assistant turns under `assistant_only_loss`. `"smollm3"`: always.
        `"keep"`: never; the tokenizer's own template is used.
    chat_template_kwargs (`dict`, *optional*):
        Defaults for the template's keyword arguments (`enable_thinking`, `xml_tools`, `python_tools`, `today`,
        `close_system_turn`, ...), merged under each example's own `chat_template_kwargs` (the example wins).
    chat_template_today (`str`, *optional*, defaults to `"08 July 2025"`):
        Date written in the SmolLM3 system header when neither the example nor `chat_template_kwargs` set `today`, so
        training data tokenize the same on every day. Set to `None` to use the clock, as the released template does.
    """

    smol_chat_template: str = field(
        default="auto",
        metadata={
            "help": "When to apply the SmolLM3 chat template: 'auto' (tokenizer without a template, or a SmolLM3 Base "
            "model), 'smollm3' (always) or 'keep' (never).",
            "choices": list(CHAT_TEMPLATE_MODES),
        },
    )
    chat_template_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Default keyword arguments for the chat template (enable_thinking, xml_tools, python_tools, "
            "today, close_system_turn, ...), merged under each example's own chat_template_kwargs (the example wins)."
        },
    )
    chat_template_today: str | None = field(
        default=DEFAULT_TEMPLATE_TODAY,
        metadata={
            "help": "Date written in the SmolLM3 system header when the data does not set `today`, so that the same "
            "data tokenize the same on every day. 'none' uses the clock like the released template."
        },
    )

    def template_defaults(self, smollm3_template: bool) -> dict[str, Any]:
        """Defaults merged under each example's own chat-template kwargs: `chat_template_kwargs`, and the fixed
        `today` date where the plugin's SmolLM3 template renders the data (`smollm3_template`)."""
        merged: dict[str, Any] = {}
        if smollm3_template and self.chat_template_today is not None:
            merged["today"] = self.chat_template_today
        merged.update(self.chat_template_kwargs or {})
        return merged


class ChatTemplate(Feature):
    name = "chat_template"
    banner_key = "chat_template"

    def check_arguments(self, args: Any) -> None:
        check_choice(args, "smol_chat_template", CHAT_TEMPLATE_MODES)
        today = args.chat_template_today
        if isinstance(today, str) and today.lower() in ("none", "null", ""):
            args.chat_template_today = None

    def decide(self, context: RunContext) -> Decision:
        mode = context.value("smol_chat_template", "auto")
        source = Source.USER if context.is_set("smol_chat_template") else Source.DEFAULT
        if context.tokenizer is None or not context.conversational:
            return Decision(self.name, source, False, "only conversational data is templated")
        model = context.model if context.model is not None else context.model_name
        reason = smollm3_template_reason(
            context.tokenizer,
            context.model_name,
            mode,
            model_type=model_type_of(model, trust_remote_code=bool(context.value("trust_remote_code", False))),
            chat_template_path=context.value("chat_template_path"),
            assistant_only_loss=bool(context.value("assistant_only_loss", False)),
        )
        return Decision(self.name, source, reason is not None, reason)

    def describe(self, decision: Decision) -> str | None:
        return f"smollm3 ({decision.reason})" if decision.on else None

    def prepare(self, decision: Decision, plan: Any, args: Any, tokenizer: Any) -> Any:
        if decision.on and tokenizer is not None:
            apply_smollm3_template(tokenizer)
            if args.eos_token is None:
                args.eos_token = END_OF_TURN
        return None
