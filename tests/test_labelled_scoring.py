"""Labelled-only loss positions: TRL's fused LM head sees only the positions that carry a label, with the same result.

Off CUDA/Triton, TRL's fused head projects every position of the batch and masks the prompt's afterwards;
`smol_score_labelled_only` (turned on by a memory preset there) hands it only the labelled ones. The loss, every
gradient and TRL's `entropy` / `mean_token_accuracy` metrics must equal TRL's own computation, for padded and
padding-free batches, for LoRA and full fine-tuning, on a tiny SmolLM3 with a NoPE layer (4 layers).
"""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware
from peft import LoraConfig
from trl.trainer.sft_trainer import SFTTrainer

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig, SmolSFTTrainer
from trl_smol.config import UserSettings
from trl_smol.features import FeatureError, RunContext, Source
from trl_smol.features.labelled_scoring import (
    LabelledScoring,
    LabelledScoringError,
    LabelledScoringFeature,
    backbone_of,
    trl_version_problem,
)
from trl_smol.memory import plan_memory_preset
from trl_smol.plan import plan_run
from trl_smol.testing import save_tiny_smollm3

TOLERANCE = 1e-6
CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2? Answer with one number."}, {"role": "assistant", "content": "4"}],
    [
        {"role": "user", "content": "Name a colour of the sea."},
        {"role": "assistant", "content": "Blue, and sometimes green."},
        {"role": "user", "content": "And of the sky at night?"},
        {"role": "assistant", "content": "Black, with stars."},
    ],
    [{"role": "user", "content": "Say hi to the reader, politely."}, {"role": "assistant", "content": "Hi!"}],
    [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two, three."}],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-smollm3-nope")
    return save_tiny_smollm3(path, chat_template=SMOLLM3_CHAT_TEMPLATE, num_hidden_layers=4)


def rows() -> Dataset:
    return Dataset.from_list([{"messages": messages} for messages in CONVERSATIONS])


def trainer_for(model_dir, tmp_path, peft: bool = True, **settings) -> SmolSFTTrainer:
    args = SmolSFTConfig(
        output_dir=str(tmp_path), bf16=False, report_to="none", assistant_only_loss=True, save_strategy="no",
        per_device_train_batch_size=4, max_steps=2, logging_steps=1, learning_rate=1e-2, seed=0, **settings,
    )  # fmt: skip
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0) if peft else None
    return SmolSFTTrainer(model=model_dir, args=args, train_dataset=rows(), peft_config=lora)


def loss_grads_metrics(trainer, inputs, compute_loss):
    """Loss, gradients of the trainable parameters and TRL's logged metrics of one loss computation."""
    trainer.model.zero_grad()
    trainer._metrics["train"].clear()
    loss = compute_loss(trainer.model, dict(inputs))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items() if key != "num_tokens"}
    return loss.detach(), grads, metrics


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding-free"])
@pytest.mark.parametrize("peft", [True, False], ids=["lora", "full"])
def test_the_loss_gradients_and_metrics_equal_trls_every_position_scoring(model_dir, tmp_path, padding_free, peft):
    trainer = trainer_for(
        model_dir, tmp_path, peft=peft, smol_score_labelled_only=True, smol_padding_free=padding_free
    )
    decision = trainer.run_plan["labelled_scoring"]
    assert decision.source is Source.USER and decision.on and decision.reason == "smol_score_labelled_only"
    trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["labels"][:, 1:].numel() // 2  # assistant-only: most positions are prompt

    backbone = backbone_of(trainer.model)
    seen = []  # a user's own hook on the backbone: it sees every position, ours narrows after it
    backbone.register_forward_hook(lambda m, a, out: seen.append(out.last_hidden_state.shape))
    ours = loss_grads_metrics(trainer, batch, trainer.compute_loss)
    assert trainer.installed["labelled_scoring"].scored_positions == labelled  # only those were projected
    assert seen[-1][:2] == batch["input_ids"].shape
    assert len(backbone._forward_hooks) == 1  # ours was removed with the loss: nothing stacks, nothing stays
    trls = loss_grads_metrics(trainer, batch, lambda model, inputs: SFTTrainer.compute_loss(trainer, model, inputs))
    assert seen[-1][:2] == batch["input_ids"].shape  # TRL's own path: every position

    assert (ours[0] - trls[0]).abs() < TOLERANCE and ours[0] > 0
    assert ours[1].keys() == trls[1].keys() and len(ours[1]) > 0
    for name, grad in ours[1].items():
        assert (grad - trls[1][name]).abs().max() < TOLERANCE, name
    assert ours[2].keys() == {"entropy", "mean_token_accuracy"}
    assert ours[2] == pytest.approx(trls[2], abs=TOLERANCE)


def test_training_logs_the_same_losses_and_the_banner_says_so(model_dir, tmp_path, capsys):
    def losses(trainer):
        trainer.train()
        return [log["loss"] for log in trainer.state.log_history if "loss" in log]

    stock = losses(trainer_for(model_dir, tmp_path / "every", smol_padding_free=True))
    assert "loss_positions" not in capsys.readouterr().out
    labelled = losses(
        trainer_for(model_dir, tmp_path / "labelled", smol_padding_free=True, smol_score_labelled_only=True)
    )
    assert "loss_positions=labelled only (smol_score_labelled_only)" in capsys.readouterr().out
    assert len(labelled) == 2 and labelled == pytest.approx(stock, abs=1e-5)


def test_generation_and_logits_outside_the_loss_see_every_position(model_dir, tmp_path):
    trainer = trainer_for(model_dir, tmp_path, smol_score_labelled_only=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.compute_loss(trainer.model, dict(batch))
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        assert trainer.model(**inputs).logits.shape[:2] == batch["input_ids"].shape
        generated = trainer.model.generate(input_ids=batch["input_ids"][:1, :5], max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, 8)
    # Asked for the outputs (evaluation with logits), TRL recomputes full logits: left to TRL's own path.
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert outputs.logits.shape[:2] == batch["input_ids"].shape


def decide(args, hardware=None, **context) -> object:
    """The feature's decision for `args` as `plan_run` makes it (without a model)."""
    return plan_run(args, model_name=None, hardware=hardware, **context)["labelled_scoring"]


def test_a_memory_preset_turns_it_on_where_trl_scores_every_position(tmp_path):
    cpu = decide(SmolSFTConfig(output_dir="unused", bf16=False, memory_preset="cpu"), fake_cpu_hardware())
    assert cpu.source is Source.PRESET and cpu.on and cpu.reason == "memory preset cpu"
    cuda = fake_cuda_hardware(24)
    on_cuda = decide(SmolSFTConfig(output_dir="unused", memory_preset="24gb"), cuda)
    assert on_cuda.source is Source.DEFAULT and not on_cuda.on  # TRL's Triton kernel already does it
    no_triton = decide(
        SmolSFTConfig(output_dir="unused", memory_preset="24gb"), dataclasses.replace(cuda, triton=False)
    )
    assert no_triton.source is Source.PRESET and no_triton.on
    assert "smol_score_labelled_only" not in plan_memory_preset("cpu", SmolSFTConfig(output_dir="u", bf16=False),
                                                                hardware=fake_cpu_hardware()).changes  # fmt: skip


def test_a_preset_withdraws_it_where_the_loss_needs_full_logits_and_an_explicit_true_stops(model_dir, tmp_path):
    smoothing = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu",
                              label_smoothing_factor=0.1)  # fmt: skip
    trainer = SmolSFTTrainer(model=model_dir, args=smoothing, train_dataset=rows())
    decision = trainer.run_plan["labelled_scoring"]
    assert decision.source is Source.WITHDRAWN and not decision.on and "labelled_scoring" not in trainer.installed
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_score_labelled_only"]
    assert row.status == "unavailable" and "label smoothing" in row.reason

    explicit = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", smol_score_labelled_only=True)
    with pytest.raises(FeatureError, match="compute_loss_func was passed.*Set `smol_score_labelled_only: false`"):
        SmolSFTTrainer(model=model_dir, args=explicit, train_dataset=rows(), compute_loss_func=lambda *a, **k: 0)


def test_an_explicit_false_is_kept_under_a_preset(model_dir, tmp_path):
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", memory_preset="cpu")
    args.user_settings = UserSettings(
        explicit=frozenset({"output_dir", "bf16", "memory_preset", "smol_score_labelled_only"})
    )
    trainer = SmolSFTTrainer(model=model_dir, args=args, train_dataset=rows())
    decision = trainer.run_plan["labelled_scoring"]
    assert decision.source is Source.USER and not decision.on and "labelled_scoring" not in trainer.installed
    (row,) = [row for row in trainer.run_plan.preset_rows() if row.setting == "smol_score_labelled_only"]
    assert row.status == "kept: explicit"


@pytest.mark.parametrize(
    ("settings", "peft", "flags", "reason"),
    [
        ({}, None, {}, None),
        ({"label_smoothing_factor": 0.1}, None, {}, "label smoothing"),
        ({"label_smoothing_factor": 0.1, "loss_type": "dft"}, None, {}, None),  # DFT keeps TRL's fused loss
        ({}, "prompt_tuning", {}, "prompt_tuning adds virtual tokens"),
        ({}, "ia3", {}, None),  # IA3 scales activations: the positions still line up with the labels
        ({}, "lora", {}, None),
        ({}, "lora", {"custom_loss": True}, "compute_loss_func"),
        ({}, "lora", {"vision": True}, "images"),
        (
            {},
            None,
            {"environ": {"ACCELERATE_USE_PARALLELISM_CONFIG": "true", "PARALLELISM_CONFIG_CP_SIZE": "2"}},
            "shards the sequence",
        ),  # fmt: skip
    ],
)
def test_where_labelled_only_scoring_cannot_apply(settings, peft, flags, reason):
    from peft import IA3Config, PromptTuningConfig

    configs = {"lora": LoraConfig(r=4), "ia3": IA3Config(), "prompt_tuning": PromptTuningConfig(num_virtual_tokens=4)}
    peft_config = configs.get(peft)
    args = SmolSFTConfig(output_dir="unused", bf16=False, **settings)
    method = getattr(peft_config, "peft_type", None)
    context = RunContext(args=args, user=args.user_settings, peft_config=peft_config,
                         method=str(getattr(method, "value", "full")).lower(), **flags)  # fmt: skip
    problem = LabelledScoringFeature().problem(context, True)
    assert problem is None if reason is None else reason in problem


def test_parallelism_in_the_training_arguments_shards_the_sequence():
    args = SimpleNamespace(parallelism_config=SimpleNamespace(cp_enabled=True, sp_enabled=False))
    context = RunContext(args=args, user=UserSettings())
    assert "shards the sequence" in LabelledScoringFeature().problem(context, True)


def test_only_tested_trl_versions_get_it():
    assert trl_version_problem("1.16.0") is None and trl_version_problem("1.16.2.dev0") is None
    assert "tested with TRL 1.16 only, and TRL 1.17.0 is installed" in trl_version_problem("1.17.0")


def test_a_hook_that_did_not_run_or_shapes_that_disagree_fail_naming_the_setting(model_dir, tmp_path):
    trainer = trainer_for(model_dir, tmp_path, smol_score_labelled_only=True)
    scoring: LabelledScoring = trainer.installed["labelled_scoring"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with pytest.raises(
        LabelledScoringError, match="did not run the model's backbone.*smol_score_labelled_only: false"
    ):
        with scoring.only_labelled(dict(batch)):
            pass  # TRL changed and no longer runs the backbone inside the loss
    cut = {**batch, "labels": batch["labels"][:, :-1]}  # labels that do not line up with the hidden states
    with pytest.raises(LabelledScoringError, match="does not line up with the labels.*smol_score_labelled_only"):
        with scoring.only_labelled(cut) as scored:
            trainer.model(**{key: value for key, value in scored.items() if key != "shift_labels"})
    assert len(backbone_of(trainer.model)._forward_hooks) == 0  # removed on every way out
