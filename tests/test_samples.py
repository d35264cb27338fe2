"""Sample generation during training: `SampleGenerationCallback` with Trainer, SFTTrainer and SmolSFTTrainer."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from trl_smol.samples import SampleGenerationCallback, SamplePromptError, load_prompts, split_thinking
from trl_smol.templating import apply_smollm3_template
from trl_smol.testing import tiny_smollm3_model

ROW_FIELDS = {
    "run", "step", "prompt", "completion", "thinking", "enable_thinking", "num_new_tokens", "stopped", "seconds",
    "checks", "passed",
}  # fmt: skip
NO_THINK = {"enable_thinking": False}  # the think-mode system prompt alone exceeds the tiny model's context
DEMO_PROMPTS = Path(__file__).parents[1] / "recipes" / "prompts" / "smollm3_demo.jsonl"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def read_samples(output_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "samples.jsonl").read_text().splitlines()]


def lm_dataset(tokenizer, n: int = 8) -> Dataset:
    """Fixed-length causal-LM rows, so that a plain `Trainer` with its default collator can train on them."""
    ids = [tokenizer(f"What is {i}+{i}? It is {2 * i}.")["input_ids"][:8] for i in range(n)]
    ids = [row + [tokenizer.pad_token_id] * (8 - len(row)) for row in ids]
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def plain_args(tmp_path, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    values.update(overrides)
    return TrainingArguments(**values)


# --- with each trainer -------------------------------------------------------------------------------------------


def test_plain_trainer_writes_samples_at_start_every_n_steps_and_end(tmp_path, tiny_model, tiny_tokenizer, capsys):
    prompts = ["What is 7 plus 5?", [{"role": "user", "content": "Name a primary colour."}]]
    samples = SampleGenerationCallback(prompts, every_n_steps=2, max_new_tokens=6, chat_template_kwargs=NO_THINK)
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    rows = read_samples(trainer.args.output_dir)
    assert [(row["step"], row["prompt"]) for row in rows] == [
        (step, prompt) for step in (0, 2, 4) for prompt in ("What is 7 plus 5?", "Name a primary colour.")
    ]
    assert len({row["run"] for row in rows}) == 1 and rows[0]["run"] == samples.run_id  # one run, one id
    for row in rows:
        assert set(row) == ROW_FIELDS
        assert 1 <= row["num_new_tokens"] <= 6
        assert row["stopped"] or row["num_new_tokens"] == 6  # not stopped: ran to the token limit
        assert row["enable_thinking"] is False
    console = capsys.readouterr().out
    assert "Samples at step 0" in console and "Samples at step 4" in console
    assert "Name a primary colour." in console
    assert tiny_tokenizer.chat_template is None  # the SmolLM3 template was used without being put on the tokenizer


def test_stock_sft_trainer(tmp_path, tiny_model, tiny_tokenizer, chat_rows):
    from trl import SFTConfig, SFTTrainer

    apply_smollm3_template(tiny_tokenizer)
    samples = SampleGenerationCallback(
        ["What is 2+2?"], every_n_steps=1, max_new_tokens=4, chat_template_kwargs=NO_THINK
    )
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=2,
        per_device_train_batch_size=4,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=tiny_model,
        args=args,
        train_dataset=Dataset.from_list(chat_rows),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    assert [row["step"] for row in read_samples(args.output_dir)] == [0, 1, 2]
    assert tiny_tokenizer.padding_side == "right"


def test_smol_trainer_adds_the_callback_from_config_fields(tmp_path, tiny_model, tiny_tokenizer, chat_rows):
    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    args = SmolSFTConfig(
        output_dir=str(tmp_path / "smol"),
        max_steps=3,
        per_device_train_batch_size=4,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        sample_prompts=[str(DEMO_PROMPTS)],
        sample_every_n_steps=2,
        sample_at_start=False,
        sample_max_new_tokens=3,
        chat_template_kwargs=NO_THINK,  # config defaults reach the prompts, under each prompt's own kwargs
    )
    trainer = SmolSFTTrainer(
        model=tiny_model, args=args, train_dataset=Dataset.from_list(chat_rows), processing_class=tiny_tokenizer
    )
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SampleGenerationCallback))
    assert (callback.every_n_steps, callback.max_new_tokens, callback.at_start) == (2, 3, False)
    trainer.train()

    rows = read_samples(args.output_dir)
    demo = load_prompts(DEMO_PROMPTS)
    assert [(row["step"], row["prompt"]) for row in rows] == [(step, p.text) for step in (2, 3) for p in demo]
    # The demo file mixes think and no_think prompts; the file's own kwargs win over the config default.
    assert [row["enable_thinking"] for row in rows[: len(demo)]] == [
        p.chat_template_kwargs["enable_thinking"] for p in demo
    ]


def test_the_sample_callback_runs_after_the_reporters_and_before_the_users_callbacks(
    tmp_path, tiny_model, tiny_tokenizer, chat_rows
):
    # After trackio's reporter, so that its run exists for the step-0 pass; before the user's EarlyStoppingCallback,
    # which reads the `eval_samples_*` metrics the sample callback adds in `on_evaluate`.
    from transformers import EarlyStoppingCallback
    from transformers.integrations import TrackioCallback

    from trl_smol import SmolSFTConfig, SmolSFTTrainer
    from trl_smol.run_safety import InterruptCheckpoint

    args = SmolSFTConfig(
        output_dir=str(tmp_path / "order"),
        bf16=False,
        report_to="trackio",
        sample_prompts=["Say hi."],
        eval_strategy="steps",
        metric_for_best_model="eval_loss",
        load_best_model_at_end=True,
    )
    trainer = SmolSFTTrainer(
        model=tiny_model,
        args=args,
        train_dataset=Dataset.from_list(chat_rows),
        eval_dataset=Dataset.from_list(chat_rows[:2]),
        processing_class=tiny_tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
    )
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    position = {kind: index for index, kind in enumerate(kinds)}
    samples = kinds.index(SampleGenerationCallback)
    assert kinds[0] is InterruptCheckpoint
    assert any(issubclass(kind, TrackioCallback) and position[kind] < samples for kind in kinds)
    assert samples < kinds.index(EarlyStoppingCallback)


def test_from_args_requires_prompts():
    from trl_smol import SmolSFTConfig

    with pytest.raises(SamplePromptError, match="sample_prompts"):
        SampleGenerationCallback.from_args(SmolSFTConfig(output_dir="unused", bf16=False, callbacks=["samples"]))


# --- correctness of one generation pass ----------------------------------------------------------------------------


def test_training_state_gradient_checkpointing_cache_and_padding_side_are_restored(tiny_tokenizer):
    model = tiny_smollm3_model(tiny_tokenizer, attention_dropout=0.5)
    model.train()
    model.activation_checkpointing_enable()
    model.config.use_cache = False
    model.model.layers[0].eval()  # a module the user froze in eval mode stays so
    tiny_tokenizer.padding_side = "right"
    samples = SampleGenerationCallback(["What is 7 plus 5?", "Hi"], max_new_tokens=8, chat_template_kwargs=NO_THINK)
    fed_lengths = []  # tokens fed per forward: with the KV cache, one per step after the prompt
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: fed_lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )

    first, _ = samples.generate(model, tiny_tokenizer, step=1)
    hook.remove()
    second, _ = samples.generate(model, tiny_tokenizer, step=1)

    # The two prompts are prefilled one by one (the second from the first's shared prefix), then one token per forward:
    # the cache was used though the config turned it off.
    assert fed_lengths[0] > 1 and set(fed_lengths[2:]) == {1}

    assert model.training and not model.model.layers[0].training and model.model.layers[1].training
    assert model.is_activation_checkpointing
    assert model.config.use_cache is False
    assert tiny_tokenizer.padding_side == "right"
    # Generation ran in eval mode: with attention dropout at 0.5, train mode would not give the same text twice.
    assert [row["completion"] for row in first] == [row["completion"] for row in second]


def test_batched_prompts_are_left_padded(tiny_model, tiny_tokenizer):
    short, long = "Hi", "What is the capital of France? Tell me about Paris."
    batched = SampleGenerationCallback([short, long], max_new_tokens=8, chat_template_kwargs=NO_THINK)
    alone = SampleGenerationCallback([short], max_new_tokens=8, chat_template_kwargs=NO_THINK)

    rows, _ = batched.generate(tiny_model, tiny_tokenizer)
    (reference,), _ = alone.generate(tiny_model, tiny_tokenizer)

    assert rows[0]["completion"] == reference["completion"]  # padding did not change the short prompt's answer


def test_sampling_is_reproducible_per_seed_and_leaves_the_training_rng_alone(tiny_model, tiny_tokenizer):
    def sample(seed, step):
        callback = SampleGenerationCallback(
            ["Hi"], max_new_tokens=16, do_sample=True, temperature=1.0, seed=seed, chat_template_kwargs=NO_THINK
        )
        return callback.generate(tiny_model, tiny_tokenizer, step=step)[0][0]["completion"]

    rng = torch.random.get_rng_state()
    assert sample(seed=3, step=10) == sample(seed=3, step=10)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert sample(seed=3, step=10) != sample(seed=4, step=10)


@pytest.mark.parametrize(
    ("text", "answer", "thinking"),
    [
        ("<think>\n7 plus 5 is 12.\n</think>\n🟢 Answer: 12", "🟢 Answer: 12", "7 plus 5 is 12."),
        ("<think>\nstill counting, out of tokens", "", "still counting, out of tokens"),  # unclosed: all thinking
        ("🟢 Answer: red", "🟢 Answer: red", None),  # no block at all
        ("<think>\n\n</think>\nBlue.", "Blue.", ""),  # an empty block is not "no block"
    ],
)
def test_think_block_is_split_into_thinking(text, answer, thinking):
    assert split_thinking(text) == (answer, thinking)


def test_peft_model_generates_with_its_adapters_active(tiny_model, tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    base_rows, _ = SampleGenerationCallback(["Hi"], max_new_tokens=8, chat_template_kwargs=NO_THINK).generate(
        tiny_model, tiny_tokenizer
    )
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(tiny_model, config)
    peft_model.train()
    samples = SampleGenerationCallback(["Hi"], max_new_tokens=8, chat_template_kwargs=NO_THINK)

    rows, _ = samples.generate(peft_model, tiny_tokenizer)
    with peft_model.disable_adapter():
        without, _ = samples.generate(peft_model, tiny_tokenizer)

    assert without[0]["completion"] == base_rows[0]["completion"]
    assert rows[0]["completion"] != without[0]["completion"]  # random (non-zero) adapters change the answer
    assert peft_model.training


def test_4bit_model_generates(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantization, device_map="cpu")
    assert getattr(model, "is_loaded_in_4bit", False)
    samples = SampleGenerationCallback(["What is 7 plus 5?"], max_new_tokens=5, chat_template_kwargs=NO_THINK)

    rows, _ = samples.generate(model, tiny_tokenizer, step=3)

    assert rows[0]["step"] == 3 and 1 <= rows[0]["num_new_tokens"] <= 5


# --- resume --------------------------------------------------------------------------------------------------------


def test_resume_from_checkpoint_does_not_duplicate_steps(tmp_path, tiny_tokenizer, caplog):
    def trainer(max_steps):
        samples = SampleGenerationCallback(
            ["What is 7 plus 5?", "Hi"], every_n_steps=2, max_new_tokens=3, chat_template_kwargs=NO_THINK
        )
        args = plain_args(tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=2)
        return Trainer(
            model=tiny_smollm3_model(tiny_tokenizer),
            args=args,
            train_dataset=lm_dataset(tiny_tokenizer, n=16),
            processing_class=tiny_tokenizer,
            callbacks=[samples],
        )

    first = trainer(max_steps=4)
    first.train()
    samples_file = Path(first.args.output_dir) / "samples.jsonl"
    with samples_file.open("a") as file:
        file.write('{"step": 4, "prompt": "Wh')  # the run died while writing

    with caplog.at_level(logging.WARNING):
        trainer(max_steps=6).train(resume_from_checkpoint=str(Path(first.args.output_dir) / "checkpoint-2"))

    steps = [row["step"] for row in read_samples_skipping_partial(samples_file)]
    assert steps == [0, 0, 2, 2, 4, 4, 6, 6]  # steps 2 and 4 were not written again; 6 is new
    assert "samples.jsonl:7" in caplog.text  # the cut line is reported, not fatal


def read_samples_skipping_partial(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def test_fresh_run_moves_an_old_samples_file_aside(tmp_path, tiny_model, tiny_tokenizer):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "samples.jsonl").write_text('{"step": 0, "prompt": "old"}\n')
    samples = SampleGenerationCallback(["Hi"], every_n_steps=0, at_end=False, max_new_tokens=2)
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path, max_steps=1),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    assert [row["prompt"] for row in read_samples(output_dir)] == ["Hi"]
    (moved,) = [path for path in output_dir.glob("samples.*.jsonl")]
    assert "old" in moved.read_text()


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"messages": [{"role": "user", "content": "ok"}]}\n{"messages": [\n', r"prompts\.jsonl:2: not valid JSON"),
        ('"fine"\n\n{"text": "hello"}\n', r"prompts\.jsonl:3: .*exactly one of `messages` or `prompt`"),
        ('[{"role": "user"}]\n', r"prompts\.jsonl:1: message 0 must be an object with `role` and `content`"),
        ("\n\n", r"prompts\.jsonl has no prompts"),
    ],
)
def test_bad_prompt_file_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(SamplePromptError, match=message):
        SampleGenerationCallback(str(path))


def test_prompts_from_a_text_file_one_per_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("What is 7 plus 5?\n\nName a primary colour.\n")

    prompts = load_prompts([path, "Summarise notes.txt", {"prompt": "Hi", "chat_template_kwargs": NO_THINK}])

    assert [p.text for p in prompts] == ["What is 7 plus 5?", "Name a primary colour.", "Summarise notes.txt", "Hi"]
    assert [p.source for p in prompts] == [f"{path}:1", f"{path}:3", "sample_prompts[1]", "sample_prompts[2]"]
    assert prompts[3].chat_template_kwargs == NO_THINK


def test_missing_file_and_empty_list_fail_at_construction(tmp_path):
    with pytest.raises(SamplePromptError, match="nowhere.txt"):
        SampleGenerationCallback(str(tmp_path / "nowhere.txt"))
    with pytest.raises(SamplePromptError, match="empty"):
        SampleGenerationCallback([])
    with pytest.raises(SamplePromptError, match=r"sample_prompts\[1\]: the prompt is an empty string"):
        SampleGenerationCallback(["ok", "  "])


def test_bad_prompt_file_stops_smol_trainer_before_training(tmp_path, tiny_model, tiny_tokenizer, chat_rows):
    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    bad = tmp_path / "prompts.txt"
    bad.write_bytes(b"\xff\xfe not utf-8")
    args = SmolSFTConfig(output_dir=str(tmp_path / "o"), bf16=False, report_to="none", sample_prompts=[str(bad)])
    with pytest.raises(SamplePromptError, match="prompts.txt"):
        SmolSFTTrainer(
            model=tiny_model, args=args, train_dataset=Dataset.from_list(chat_rows), processing_class=tiny_tokenizer
        )


def test_prompt_longer_than_the_context_is_cut_from_the_left_with_a_warning(tiny_tokenizer):
    model = tiny_smollm3_model(tiny_tokenizer, max_position_embeddings=96)
    samples = SampleGenerationCallback(["Hi " * 200], max_new_tokens=8, chat_template_kwargs=NO_THINK)

    with pytest.warns(UserWarning, match=r"sample_prompts\[0\] has \d+ tokens, more than the 88"):
        rows, _ = samples.generate(model, tiny_tokenizer)

    assert len(rows) == 1 and rows[0]["num_new_tokens"] >= 1


def test_token_budget_larger_than_the_context_fails_before_training(tmp_path, tiny_tokenizer):
    model = tiny_smollm3_model(tiny_tokenizer, max_position_embeddings=64)
    samples = SampleGenerationCallback(["Hi"], max_new_tokens=64)
    trainer = Trainer(
        model=model,
        args=plain_args(tmp_path, max_steps=1),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    with pytest.raises(ValueError, match="max_new_tokens=64 leaves no room"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_generation_error_is_logged_with_the_step_and_training_continues(tmp_path, tiny_model, tiny_tokenizer, caplog):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    tiny_model.generate = out_of_memory
    samples = SampleGenerationCallback(["Hi"], every_n_steps=1, max_new_tokens=2)
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path, max_steps=2, gradient_checkpointing=True),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    with caplog.at_level(logging.ERROR):
        trainer.train()

    assert trainer.state.global_step == 2
    assert tiny_model.is_activation_checkpointing and tiny_model.training  # restored after the failed pass
    assert "Sample generation at step 1 failed, training continues: OutOfMemoryError" in caplog.text
    assert not (Path(trainer.args.output_dir) / "samples.jsonl").exists()


# --- trackers ------------------------------------------------------------------------------------------------------


def test_trackio_gets_a_history_table_and_the_generation_time(tmp_path, tiny_model, tiny_tokenizer, monkeypatch):
    from trackio.sqlite_storage import SQLiteStorage

    # trackio reads TRACKIO_DIR once at import; its storage module holds the copy that decides where runs go.
    monkeypatch.setattr("trackio.sqlite_storage.TRACKIO_DIR", tmp_path / "trackio")
    project = "trl-smol-samples"
    samples = SampleGenerationCallback(["Hi", "What is 7 plus 5?"], every_n_steps=2, max_new_tokens=3)
    trainer = Trainer(
        model=tiny_model,
        args=plain_args(tmp_path, max_steps=2, report_to="trackio", project=project, run_name="run"),
        train_dataset=lm_dataset(tiny_tokenizer),
        processing_class=tiny_tokenizer,
        callbacks=[samples],
    )
    trainer.train()

    logs = [log for log in SQLiteStorage.get_logs(project, "run") if "samples" in log]
    assert [log["train/global_step"] for log in logs] == [0, 2]
    assert all(log["samples/seconds"] > 0 and log["samples/prompts"] == 2 for log in logs)
    last_table = logs[-1]["samples"]["_value"]
    assert [(row["step"], row["prompt"]) for row in last_table] == [
        (0, "Hi"),
        (0, "What is 7 plus 5?"),
        (2, "Hi"),
        (2, "What is 7 plus 5?"),
    ]  # the whole history, so one prompt can be followed across training


# --- distributed ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_run_writes_each_step_and_prompt_once(tmp_path, tiny_model_dir):
    script = Path(__file__).with_name("samples_ddp_script.py")
    output_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)]
    result = subprocess.run(
        [*command, tiny_model_dir, str(output_dir)], env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]

    rows = read_samples(output_dir)
    pairs = [(row["step"], row["prompt"]) for row in rows]
    prompts = ["What is 7 plus 5?", "Name a primary colour.", "Hi"]  # three prompts over two processes: uneven split
    assert sorted(pairs) == sorted((step, prompt) for step in (0, 2, 4) for prompt in prompts)
    assert "world_size=2" in result.stdout
    # Scored where generated, gathered with the rows; both ranks selected the same checkpoint by the pass rate.
    assert all(row["checks"] == {"stops": row["stopped"], "regex": True} for row in rows)
    best = [(tmp_path / f"best-rank{rank}.txt").read_text() for rank in (0, 1)]
    assert best[0] == best[1] and "checkpoint-" in best[0], best
