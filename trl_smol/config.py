"""`SmolSFTConfig`: TRL's `SFTConfig` plus the plugin's fields.

Every plugin field defaults to a value that leaves stock TRL behaviour unchanged, so a script that swaps
`SFTConfig` for `SmolSFTConfig` trains exactly as before until it asks for a plugin feature.

```python
from trl_smol import SmolSFTConfig

args = SmolSFTConfig(
    output_dir="smollm3-sft",
    memory_preset="auto",                      # fit the run to this machine
    sample_prompts=["What is 2+2?"],           # print and log samples during training
    sample_every_n_steps=50,
    chat_template_kwargs={"enable_thinking": False},
)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from trl.trainer.sft_config import SFTConfig

# The date the SmolLM3 template writes into its "Today Date:" line when the data does not say otherwise. A fixed
# value makes the same dataset tokenize to the same ids on every day (the released template uses the clock).
DEFAULT_TEMPLATE_TODAY = "08 July 2025"

CHAT_TEMPLATE_MODES = ("auto", "smollm3", "keep")

INVALID_ROW_POLICIES = ("error", "drop")


@dataclass(frozen=True)
class UserSettings:
    """What the user asked for: the settings they set and, for `trl sft`, the recipe file they came from.

    The recipe parser records it for `trl sft` (keys of the recipe and of the command line, even those set to their
    default value); a config built in Python records the fields whose value differs from the field's default.
    """

    explicit: frozenset[str] = frozenset()
    recipe_path: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SmolSFTConfig(SFTConfig):
    r"""
    Configuration for [`SmolSFTTrainer`]: every parameter of [`trl.SFTConfig`] plus the ones below.

    Parameters:
        > Chat template

        smol_chat_template (`str`, *optional*, defaults to `"auto"`):
            When to apply the SmolLM3 chat template shipped with this package. `"auto"`: only when the tokenizer has
            no chat template, or the model is a SmolLM3 *Base* checkpoint (whose tokenizer does not carry the
            instruct format). `"smollm3"`: always. `"keep"`: never; the tokenizer's own template is used.
        chat_template_kwargs (`dict`, *optional*):
            Defaults for the template's keyword arguments (`enable_thinking`, `xml_tools`, `python_tools`, `today`,
            `close_system_turn`, ...), merged under each example's own `chat_template_kwargs` (the example wins).
        chat_template_today (`str`, *optional*, defaults to `"08 July 2025"`):
            Date written in the SmolLM3 system header when neither the example nor `chat_template_kwargs` set
            `today`, so training data tokenize the same on every day. Set to `None` to use the clock, as the released
            template does.
        invalid_rows (`str`, *optional*, defaults to `"error"`):
            What to do with a malformed conversation: `"error"` stops before tokenization and names the dataset, row
            and field; `"drop"` removes such rows and prints a count per reason.

        > Sample generation

        sample_prompts (`list`, *optional*):
            Prompts to generate from during training: strings, message lists, dicts with `messages` and
            `chat_template_kwargs`, or a path to a `.jsonl`/`.txt` file. `None` turns sample generation off. Answers
            go to the console, `output_dir/samples.jsonl` and the trackio/wandb tables (see
            [`SampleGenerationCallback`]).
        sample_every_n_steps (`int`, *optional*, defaults to `100`):
            Generate every this many optimizer steps; `0`: only at start and end.
        sample_at_start (`bool`, *optional*, defaults to `True`):
            Generate once before the first step, as a baseline (not when resuming from a checkpoint).
        sample_at_end (`bool`, *optional*, defaults to `True`):
            Generate once after the last step.
        sample_max_new_tokens (`int`, *optional*, defaults to `96`):
            Token budget of each sample; with `sample_every_n_steps` it sets the cost of sampling.
        sample_do_sample (`bool`, *optional*, defaults to `False`):
            Sample instead of greedy decoding.
        sample_temperature (`float`, *optional*, defaults to `0.7`):
            Temperature when `sample_do_sample` is on.
        sample_top_p (`float`, *optional*, defaults to `0.95`):
            Nucleus mass when `sample_do_sample` is on.
        sample_seed (`int`, *optional*, defaults to `0`):
            Seed of sampled generations: each pass reseeds with `sample_seed + step`, so the same step gives the
            same text, and the training random state is not touched.

        > Memory

        memory_preset (`str`, *optional*, defaults to `"none"`):
            Memory preset: `"none"` (stock TRL behaviour), `"auto"` (chosen from the detected hardware), or a tier
            name: `"cpu"`, `"8gb"`, `"12gb"`, `"16gb"`, `"24gb"`, `"40gb"`, `"80gb"`. A preset only changes settings
            the recipe and command line left unset.
        memory_preset_force (`bool`, *optional*, defaults to `False`):
            Start even when explicit settings make the estimate exceed the device memory under a preset.
        smol_padding_free (`bool`, *optional*, defaults to `False`):
            Collate each batch padding-free (its sequences in one row, `position_ids` restarting at each one, no
            attention mask) while TRL still truncates rows to `max_length`, which TRL's own `padding_free` does not
            allow without packing. Turned on by a memory preset unless `packing` or `padding_free` is set. Needs an
            attention implementation that separates packed sequences (`eager`, `sdpa`, `flash_attention_2/3`,
            `flex_attention`). The loss is the same as with padded batches.
        smol_cpu_threads (`int` or `None`, *optional*, defaults to `None`):
            PyTorch threads of each training process (`torch.set_num_threads`). `None` keeps the process's own: a
            Python script gets one per core, while `trl sft` on a CPU starts training with one thread (accelerate's
            launcher sets `OMP_NUM_THREADS=1` when neither it nor `num_cpu_threads_per_process` is given). A memory
            preset on a CPU raises that launcher default to the cores each process has, and says so.
        smol_score_labelled_only (`bool`, *optional*, defaults to `False`):
            Hand TRL's fused LM head only the positions that carry a label. TRL does this itself on CUDA / XPU with
            Triton; elsewhere (CPU, MPS) it projects every position, prompt tokens included, and masks them after. The
            loss, gradients and metrics are the same. Turned on by a memory preset on such a device. Not with a
            `compute_loss_func`, label smoothing, prompt-learning PEFT methods, images, or context / sequence
            parallelism.

        > Run safety

        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Start a new run in an `output_dir` that holds a previous run's model or checkpoints: its files are moved to
            `<output_dir>.previous-<time>` beside it first. Without it, and without `resume_from_checkpoint`, such a
            run stops before loading the model (transformers 5 removed its own `overwrite_output_dir`).
        save_on_interrupt (`bool`, *optional*, defaults to `True`):
            On SIGTERM or SIGINT, save a checkpoint at the end of the current step and stop, exiting non-zero with one
            line that says how to resume (what a preempted cluster job needs).

        > Callbacks

        callbacks (`list[str]`, *optional*):
            Names of callbacks from the `trl_smol.callbacks` entry-point group to add to the trainer, e.g.
            `["samples", "memory"]`. Run `trl-smol callbacks` to list what is installed.

        > Record (not an argument)

        user_settings ([`UserSettings`]):
            The settings the user set explicitly and the recipe file, recorded at construction (and by the recipe
            parser for `trl sft`). Presets and the run plan never change what is listed there. Not serialised.
    """

    _VALID_DICT_FIELDS = SFTConfig._VALID_DICT_FIELDS + ["chat_template_kwargs"]

    # --- chat template -------------------------------------------------------------------------------------------
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
    invalid_rows: str = field(
        default="error",
        metadata={
            "help": "Malformed conversations: 'error' stops and names dataset, row and field; 'drop' removes them and "
            "prints a count per reason.",
            "choices": list(INVALID_ROW_POLICIES),
        },
    )

    # --- sample generation ---------------------------------------------------------------------------------------
    # Typed list[str] so the command line accepts `--sample_prompts a b` or a file; YAML and Python may give dicts.
    sample_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts to generate from during training (strings, message lists, dicts with messages and "
            "chat_template_kwargs) or a path to a .jsonl/.txt file. Unset: no sample generation."
        },
    )
    sample_every_n_steps: int = field(
        default=100, metadata={"help": "Generate samples every this many optimizer steps (0: only at start/end)."}
    )
    sample_at_start: bool = field(default=True, metadata={"help": "Generate a baseline before the first step."})
    sample_at_end: bool = field(default=True, metadata={"help": "Generate after the last step."})
    sample_max_new_tokens: int = field(default=96, metadata={"help": "Maximum new tokens per sample."})
    sample_do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    sample_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    sample_top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    sample_seed: int = field(default=0, metadata={"help": "Seed for sampled generations (reproducible per step)."})

    # --- memory --------------------------------------------------------------------------------------------------
    memory_preset: str = field(
        default="none",
        metadata={
            "help": "Memory preset: 'none' (stock TRL), 'auto' (from the detected hardware) or one of cpu, 8gb, 12gb, "
            "16gb, 24gb, 40gb, 80gb. Only settings the recipe and command line left unset are changed."
        },
    )
    memory_preset_force: bool = field(
        default=False,
        metadata={"help": "Start even if explicit settings make the estimate exceed the device under a preset."},
    )
    smol_padding_free: bool = field(
        default=False,
        metadata={
            "help": "Padding-free batches (one row, position_ids, no attention mask) with TRL's truncation to "
            "max_length kept. A memory preset turns it on unless packing or padding_free is set."
        },
    )
    smol_cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "PyTorch threads per training process (torch.set_num_threads). None: as launched (`trl sft` on a "
            "CPU: 1, accelerate's default). A memory preset on a CPU uses the cores each process has."
        },
    )
    smol_score_labelled_only: bool = field(
        default=False,
        metadata={
            "help": "Project only the labelled positions in TRL's fused LM head (TRL does so itself only on CUDA/XPU "
            "with Triton). The same loss; a memory preset turns it on where TRL scores every position."
        },
    )

    # --- run safety --------------------------------------------------------------------------------------------
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start a new run in an output_dir holding a previous run's model or checkpoints, moving its files "
            "to a dated folder beside it. Without it (or resume_from_checkpoint) such a run stops before loading."
        },
    )
    save_on_interrupt: bool = field(
        default=True,
        metadata={"help": "On SIGTERM/SIGINT: save a checkpoint at the end of the step, stop, and say how to resume."},
    )

    # --- callbacks -----------------------------------------------------------------------------------------------
    callbacks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Callbacks to add, by name from the `trl_smol.callbacks` entry-point group (e.g. samples memory). "
            "`trl-smol callbacks` lists the installed ones."
        },
    )

    # --- record ----------------------------------------------------------------------------------------------------
    user_settings: UserSettings = field(
        default_factory=UserSettings,
        init=False,
        repr=False,
        compare=False,
        metadata={"help": "Recorded, not set: the settings the user set explicitly (see UserSettings)."},
    )

    def __post_init__(self):
        # Before any default is resolved: what differs from the declared defaults is what the caller set.
        self.user_settings = UserSettings(explicit=frozenset(_differing_from_defaults(self)))
        # TRL trains in bf16 unless told otherwise, and transformers then stops on any machine without a bf16
        # accelerator ("doesn't support bf16/gpu"), e.g. the course's example on a laptop. Left unset, precision
        # follows the machine there: float32, announced by the run plan. An explicit `bf16` is kept.
        if self.bf16 is None and not self.fp16 and not bf16_trainable(self.use_cpu):
            self.bf16 = False
        super().__post_init__()
        if self.smol_chat_template not in CHAT_TEMPLATE_MODES:
            raise ValueError(
                f"smol_chat_template={self.smol_chat_template!r} is not valid; "
                f"use one of {', '.join(CHAT_TEMPLATE_MODES)}."
            )
        if self.smol_cpu_threads is not None and int(self.smol_cpu_threads) < 1:
            raise ValueError(
                f"smol_cpu_threads={self.smol_cpu_threads} is not valid; use a count >= 1, or leave it unset."
            )
        if self.invalid_rows not in INVALID_ROW_POLICIES:
            raise ValueError(
                f"invalid_rows={self.invalid_rows!r} is not valid; use one of {', '.join(INVALID_ROW_POLICIES)}."
            )
        if isinstance(self.chat_template_today, str) and self.chat_template_today.lower() in ("none", "null", ""):
            self.chat_template_today = None
        if isinstance(self.resume_from_checkpoint, str) and self.resume_from_checkpoint.lower() in ("true", "last"):
            # `--resume_from_checkpoint true` on a command line: the last checkpoint, as `true` in a YAML recipe.
            self.resume_from_checkpoint = True
        if isinstance(self.callbacks, str):  # `--callbacks samples` from a shell, or a scalar in YAML
            self.callbacks = [self.callbacks]

    def template_defaults(self, smollm3_template: bool) -> dict[str, Any]:
        """Defaults merged under each example's own chat-template kwargs: `chat_template_kwargs`, and the fixed
        `today` date where the plugin's SmolLM3 template renders the data (`smollm3_template`)."""
        merged: dict[str, Any] = {}
        if smollm3_template and self.chat_template_today is not None:
            merged["today"] = self.chat_template_today
        merged.update(self.chat_template_kwargs or {})
        return merged


def default_config(config_class: type[SmolSFTConfig], **values: Any) -> SmolSFTConfig:
    """Build a config without disturbing a run in progress.

    Building `TrainingArguments` resets accelerate's process-wide state (`AcceleratorState._reset_state`), which
    breaks a distributed run that is already training; the state is saved and restored around the construction.
    """
    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved = [(state, dict(state._shared_state)) for state in (PartialState, AcceleratorState, GradientState)]
    try:
        return config_class(**values)
    finally:
        for state, shared in saved:
            state._shared_state.clear()
            state._shared_state.update(shared)


def explicit_settings(args: Any) -> frozenset[str]:
    """The settings the user set: the record of a [`SmolSFTConfig`], or for other training arguments (TRL's
    `SFTConfig`, a plain `TrainingArguments`) the fields that differ from a default config of their class, plus the
    precision, which such an object has already resolved."""
    settings = getattr(args, "user_settings", None)
    if isinstance(settings, UserSettings):
        return settings.explicit
    # use_cpu too: transformers refuses bf16 on a machine without bf16 unless use_cpu is set.
    defaults = default_config(
        type(args), output_dir=args.output_dir, bf16=args.bf16, fp16=args.fp16, use_cpu=args.use_cpu
    )
    names = {f.name for f in fields(args) if f.init and getattr(args, f.name) != getattr(defaults, f.name)}
    if args.output_dir is not None:
        names.add("output_dir")
    return frozenset(names | {"bf16", "fp16"})


def _differing_from_defaults(config: SmolSFTConfig) -> set[str]:
    names = set()
    for f in fields(config):
        if not f.init:
            continue
        default = (
            f.default
            if f.default is not MISSING
            else f.default_factory()
            if f.default_factory is not MISSING
            else MISSING
        )
        if default is MISSING or getattr(config, f.name) != default:
            names.add(f.name)
    return names


def bf16_trainable(use_cpu: bool) -> bool:
    """Whether transformers accepts `bf16=True` here (its own check: a bf16 GPU, XLA, or `use_cpu`)."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return bool(use_cpu) or is_torch_bf16_gpu_available() or is_torch_xla_available()
