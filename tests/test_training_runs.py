"""Whole runs through the stock `trl sft`: several processes, kill and resume, trackio's local store."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

pytestmark = pytest.mark.slow

TRL = os.path.join(os.path.dirname(sys.executable), "trl")
PROMPTS = ["What is 3+1?", "What is 5+1?", "Say hi."]


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
        for i in range(64)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_recipe(path, model_dir, data, output_dir, **extra):
    values = {
        "model_name_or_path": str(model_dir),
        "datasets": [{"path": "json", "data_files": str(data)}],
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "bf16": False,
        "report_to": "none",
        "logging_steps": 1,
        "sample_prompts": PROMPTS,
        "sample_max_new_tokens": 8,
        "seed": 3,
        **extra,
    }
    path.write_text(json.dumps(values))  # JSON is YAML
    return path


def trl_sft(*args, env=None, timeout=300):
    """Run the stock `trl sft`; one that outlives `timeout` fails the test with the stacks of all its processes."""
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONFAULTHANDLER": "1",
        **(env or {}),
    }
    process = subprocess.Popen(
        [TRL, "sft", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGABRT makes faulthandler print every thread's Python stack: a hang says where it is.
        for child in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
            child.send_signal(signal.SIGABRT)
        stdout, stderr = process.communicate()
        pytest.fail(f"`trl sft {' '.join(args)}` ran over {timeout} s:\n{stdout[-2000:]}\n{stderr[-8000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def sample_rows(output_dir):
    return [json.loads(line) for line in (output_dir / "samples.jsonl").read_text().splitlines()]


def last_state(output_dir):
    """The trainer state of the last checkpoint (the final save_model writes none)."""
    last = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())


def logged_losses(output_dir):
    state = last_state(output_dir)
    return {log["step"]: log["loss"] for log in state["log_history"] if "loss" in log}


def test_two_cpu_processes_train_once_and_write_once(tmp_path, tiny_model_dir, chat_data):
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", tiny_model_dir, chat_data, out, max_steps=4, save_steps=2, sample_every_n_steps=2
    )
    result = trl_sft("--config", str(recipe), "--num_processes", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Two ranks of 2 examples each: 4 steps see 16 of the 64 rows, a quarter of an epoch.
    state = last_state(out)
    assert state["global_step"] == 4
    assert state["log_history"][-1]["epoch"] == pytest.approx(0.25)
    assert sum(1 for line in result.stdout.splitlines() if line.startswith("{'loss'")) <= 4  # main process only
    assert [line for line in result.stdout.splitlines() if line.startswith("trl-smol ")].__len__() == 1

    written = [(row["step"], row["prompt"]) for row in sample_rows(out)]
    assert sorted(written) == sorted((step, prompt) for step in (0, 2, 4) for prompt in PROMPTS)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "SmolLM3ForCausalLM"
    assert tokenizer.eos_token == "<|im_end|>"


def test_sigterm_then_resume_continues_with_the_same_data_order(tmp_path, tiny_model_dir, chat_data):
    steps = 24
    reference_out, out = tmp_path / "reference", tmp_path / "out"
    common = dict(max_steps=steps, save_steps=2, sample_every_n_steps=4)
    reference = write_recipe(tmp_path / "ref.yaml", tiny_model_dir, chat_data, reference_out, **common)
    assert trl_sft("--config", str(reference)).returncode == 0

    recipe = write_recipe(tmp_path / "r.yaml", tiny_model_dir, chat_data, out, **common)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    process = subprocess.Popen(
        [TRL, "sft", "--config", str(recipe)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)
    checkpoints = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert checkpoints and checkpoints[-1] < steps, "the kill must land before the end of training"
    resumed_from = checkpoints[-1]
    rows_before = sample_rows(out)

    result = trl_sft("--config", str(recipe), "--resume_from_checkpoint", "true")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    losses, expected = logged_losses(out), logged_losses(reference_out)
    resumed_steps = [step for step in losses if step > resumed_from]
    assert resumed_steps and min(resumed_steps) == resumed_from + 1 and max(resumed_steps) == steps
    for step in resumed_steps:  # same batches in the same order as the uninterrupted run
        assert losses[step] == pytest.approx(expected[step], rel=1e-4), step

    rows = sample_rows(out)
    keys = [(row["step"], row["prompt"]) for row in rows]
    assert len(keys) == len(set(keys)), "samples were duplicated by the resume"
    assert rows[: len(rows_before)] == rows_before  # history kept as written
    # Every 4 steps, and no pass after the SIGTERM (the grace period is for the checkpoint): when the signal came
    # during a sample step, that step's pass is skipped, and the resume, which starts after it, does not repeat it.
    every_4 = set(range(0, steps + 1, 4))
    assert every_4 - {resumed_from} <= {step for step, _ in keys} <= every_4


def test_trackio_local_store_holds_metrics_config_and_sample_tables(shared_trl_sft_run):
    # The tiny SmolLM3 through `trl sft`: 4 steps, samples every 2, the cpu preset, trackio (tests/conftest.py).
    result, recipe, env = shared_trl_sft_run.result, shared_trl_sft_run.recipe, shared_trl_sft_run.env
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reader = textwrap.dedent(
        """\
        import json, sys
        from trackio.sqlite_storage import SQLiteStorage
        logs = SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])
        config = SQLiteStorage.get_run_config(sys.argv[1], sys.argv[2])
        print(json.dumps({"keys": sorted({k for log in logs for k in log}), "config": config}, default=str))
        """
    )
    read = subprocess.run(
        [sys.executable, "-c", reader, recipe["project"], recipe["run_name"]],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    stored = json.loads(read.stdout.strip().splitlines()[-1])
    assert "train/loss" in stored["keys"]
    assert any("samples" in key and key != "samples/seconds" for key in stored["keys"]), stored["keys"]
    assert "samples/seconds" in stored["keys"]
    assert any("memory/" in key for key in stored["keys"]), stored["keys"]  # the memory callback runs first
    config = stored["config"]
    assert config["memory_preset"] == "cpu"
    assert config["max_steps"] == 4
    assert config["sample_prompts"] == PROMPTS
