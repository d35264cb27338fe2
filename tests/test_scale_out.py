"""Scale-out on the engine the accelerate config names: DeepSpeed ZeRO-3 runs on a CPU-only machine, FSDP stops.

On a machine without an accelerator, `trl sft --accelerate_config recipes/accelerate/zero3.yaml --num_processes 2`
trains with DeepSpeed ZeRO-3 over gloo in float32 (the plugin passes accelerate a copy of the config with `use_cpu:
true` and `mixed_precision: 'no'`), never plain DDP; the banner names the engine as it runs. FSDP, which accelerate
runs only on GPUs, stops before anything loads instead of silently training DDP.
"""

import json
import os
import types
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback

from trl_smol.distributed import describe_engine
from trl_smol.launch import (
    EngineUnavailableError,
    check_requested_engine,
    config_engine,
    cpu_multiprocess_launcher,
    engine_for_cpu,
)

REPO = Path(__file__).resolve().parents[1]
ZERO3 = str(REPO / "recipes" / "accelerate" / "zero3.yaml")
FSDP2 = str(REPO / "recipes" / "accelerate" / "fsdp2.yaml")


def test_zero3_on_a_cpu_machine_runs_from_a_cpu_copy_of_the_config():
    (copy,) = engine_for_cpu(["--accelerate_config", ZERO3, "--num_processes", "2"]).values()
    adapted, original = yaml.safe_load(Path(copy).read_text()), yaml.safe_load(Path(ZERO3).read_text())
    assert adapted["use_cpu"] is True and adapted["mixed_precision"] == "no"  # gloo, float32
    assert config_engine(copy) == "DEEPSPEED" and adapted["deepspeed_config"]["zero_stage"] == 3
    assert original["use_cpu"] is False and original["mixed_precision"] == "bf16"  # the user's file is untouched


def test_a_config_naming_an_engine_never_gets_the_cpu_ddp_launcher():
    # `--multi_gpu` would override the config's DeepSpeed with plain DDP (and exit 0).
    assert cpu_multiprocess_launcher(["--accelerate_config", ZERO3, "--num_processes", "2"]) == []
    assert cpu_multiprocess_launcher(["--num_processes", "2"]) == ["--multi_gpu"]  # no config: DDP over gloo


def test_fsdp_on_a_cpu_machine_stops_naming_the_file_and_what_to_use():
    with pytest.raises(EngineUnavailableError, match=r"fsdp2\.yaml asks for FSDP.*zero3\.yaml"):
        engine_for_cpu(["--accelerate_config", FSDP2, "--num_processes", "2"])
    # a training process launched for FSDP some other way (accelerate launch script.py) stops before loading
    with pytest.raises(RuntimeError, match="FSDP"):
        check_requested_engine({"ACCELERATE_USE_FSDP": "true"})
    check_requested_engine({})


def state(kind, processes, device="cpu", backend="gloo", **plugins):
    return types.SimpleNamespace(
        distributed_type=kind, num_processes=processes, device=types.SimpleNamespace(type=device), backend=backend,
        **plugins,
    )  # fmt: skip


def test_the_banner_names_the_engine_as_it_runs():
    zero3 = state("DEEPSPEED", 2, deepspeed_plugin=types.SimpleNamespace(zero_stage=3))
    assert describe_engine(zero3) == "deepspeed-zero3 x2 (cpu, gloo)"
    fsdp = state("FSDP", 8, "cuda", "nccl", fsdp_plugin=types.SimpleNamespace(fsdp_version=2))
    assert describe_engine(fsdp) == "fsdp2 x8 (cuda, nccl)"
    assert describe_engine(state("MULTI_CPU", 2)) == "ddp x2 (cpu, gloo)"
    assert describe_engine(state("NO", 1)) is None


def test_sharding_divides_model_states_not_activations():
    from trl_smol.memory import estimate_memory
    from trl_smol.memory.sharding import sharding_from_accelerate_config

    sharding = sharding_from_accelerate_config(ZERO3, num_processes=8)
    assert (sharding.label, sharding.stage) == ("deepspeed-zero3 x8", 3)
    settings = dict(method="lora", max_length=2048, per_device_train_batch_size=2)
    whole = estimate_memory("HuggingFaceTB/SmolLM3-3B-Base", **settings)
    shard = estimate_memory("HuggingFaceTB/SmolLM3-3B-Base", **settings, **sharding.estimate_kwargs())
    for part in ("weights", "adapters", "gradients", "optimizer"):
        assert shard.breakdown[part] == whole.breakdown[part] // 8
    assert shard.breakdown["activations"] == whole.breakdown["activations"]
    assert sharding_from_accelerate_config(FSDP2).label == "fsdp2 x8"


def test_doctor_shows_the_per_gpu_estimate_after_sharding(capsys):
    import argparse

    from hardware_fakes import fake_cuda_hardware

    from trl_smol.commands import doctor

    recipe = str(REPO / "recipes" / "smollm3_full.yaml")
    args = argparse.Namespace(config=recipe, preset="40gb", model=None, accelerate_config=ZERO3, num_processes=None)
    assert doctor.run(args, hardware=fake_cuda_hardware(40)) == 0
    out = capsys.readouterr().out
    assert "deepspeed-zero3 x8" in out and "Verdict per GPU after sharding: fits" in out


def test_the_gpu_scale_out_script_reads_the_engine_and_tokens_per_second_from_a_run(monkeypatch):
    # tests/benchmarks/gpu_scale_out.py runs only where several GPUs are lent: its parsing is checked here, its
    # imports in test_benchmark_utils.py
    monkeypatch.syspath_prepend(str(REPO / "tests" / "benchmarks"))
    import gpu_scale_out

    banner = "trl-smol 0.2.0 active (trl sft, run 1): distributed=fsdp2 x8 (cuda, nccl), chat_template=smollm3"
    assert gpu_scale_out.engine_line(banner) == "fsdp2 x8 (cuda, nccl)"
    line = " 25%|██▌ | 1/4 [00:01<00:05] {'loss': '6.279', 'learning_rate': '0', 'num_tokens': '4096', 'epoch': '0.1'}"
    (log,) = gpu_scale_out.log_entries(line)
    assert log["loss"] == 6.279 and log["num_tokens"] == 4096
    stamped = [(t, {"loss": 1.0, "num_tokens": n}) for t, n in [(1.0, 4096), (3.0, 8192), (4.0, 12288), (5.0, 16384)]]
    assert gpu_scale_out.tokens_per_second(stamped, warmup_steps=2) == 8192 / 2  # steps 3 and 4, after the warm-up
    assert gpu_scale_out.tokens_per_second(stamped[:1], warmup_steps=0) is None


class PartitionProbe(TrainerCallback):
    """What each rank holds when training starts, from DeepSpeed's partitioned parameters: `ds_numel` is a
    parameter's full size and `ds_tensor` this rank's partition of it. Registered as `partition_probe` for the runs
    below; plain DDP and ZeRO-1/2 leave parameters whole, with no `ds_tensor`."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        params = list(model.parameters())
        held = {
            "whole": sum(getattr(p, "ds_numel", p.numel()) for p in params),
            "held": sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params),
            "partitioned": sum(hasattr(p, "ds_tensor") for p in params),
            "parameters": len(params),
        }
        Path(args.output_dir, f"partition-rank{args.process_index}.json").write_text(json.dumps(held))


def register_probe(folder: Path) -> dict[str, str]:
    """An installed-package stand-in (a .dist-info with an entry point) that the training processes find on
    PYTHONPATH, as any package registers a callback."""
    info = folder / "trl_smol_scale_out_probe-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trl-smol-scale-out-probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[trl_smol.callbacks]\npartition_probe = test_scale_out:PartitionProbe\n")
    path = os.pathsep.join(filter(None, [str(folder), str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


def trainer_losses(checkpoint: Path) -> dict[int, float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {log["step"]: log["loss"] for log in state["log_history"] if "loss" in log}


def max_difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max((a[key] - b[key]).abs().max().item() for key in a)


@pytest.fixture(scope="module", params=["lora", "full"])
def zero3_and_ddp(request, tmp_path_factory):
    """The demo recipe (LoRA, or full fine-tuning with `use_peft: false`) on 2 CPU processes, with the tiny SmolLM3
    standing in for the demo model to keep CI short (the demo model itself ran the same command: docs/recipes.md):
    ZeRO-3 for 2 steps with a checkpoint at step 2, resumed from it to step 4; plain DDP (no accelerate config) for
    the same 4 steps, as the reference. Samples in the LoRA run only (they cost the same in both)."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is the `deepspeed` extra")
    from test_training_runs import trl_sft

    from trl_smol.testing import save_tiny_smollm3

    folder = tmp_path_factory.mktemp(f"zero3-{request.param}")
    recipe = yaml.safe_load((REPO / "recipes" / "smollm3_demo.yaml").read_text())
    recipe["datasets"][0]["data_files"] = str(REPO / recipe["datasets"][0]["data_files"])
    samples = request.param == "lora"
    recipe["sample_prompts"] = str(REPO / recipe["sample_prompts"]) if samples else None
    recipe["sample_checks"] = recipe["sample_checks"] if samples else None  # checks need prompts
    recipe.update(
        model_name_or_path=save_tiny_smollm3(folder / "model", num_hidden_layers=4),
        # the tiny model's byte-level tokenizer makes longer rows than the demo model's
        max_length=2048, per_device_train_batch_size=2, logging_steps=1, save_steps=2, save_total_limit=None,
        report_to="none", use_peft=request.param == "lora", sample_every_n_steps=2, sample_max_new_tokens=8,
    )  # fmt: skip
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (folder / "reference.yaml").write_text(yaml.safe_dump({**recipe, "sample_prompts": None, "sample_checks": None}))
    zero3, ddp = folder / "zero3", folder / "ddp"
    common = ("--config", str(folder / "recipe.yaml"), "--num_processes", "2")
    reference = ("--config", str(folder / "reference.yaml"), "--num_processes", "2")
    engine = ("--accelerate_config", ZERO3, "--output_dir", str(zero3), "--callbacks", "partition_probe")
    env = register_probe(folder / "probe")
    runs = {
        "first": trl_sft(*common, *engine, "--max_steps", "2", env=env, timeout=300),
        "resumed": trl_sft(*common, *engine, "--max_steps", "4", "--resume_from_checkpoint", "true", env=env),
        "ddp": trl_sft(*reference, "--output_dir", str(ddp), "--max_steps", "4", "--save_steps", "4"),
    }
    for name, result in runs.items():
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr[-4000:]}"
    return types.SimpleNamespace(method=request.param, zero3=zero3, ddp=ddp, runs=runs)


@pytest.mark.slow
def test_zero3_runs_as_zero3_and_ddp_as_ddp(zero3_and_ddp):
    runs = zero3_and_ddp.runs
    for name in ("first", "resumed"):
        assert "distributed=deepspeed-zero3 x2 (cpu, gloo)" in runs[name].stdout
    assert "distributed=ddp x2 (cpu, gloo)" in runs["ddp"].stdout


@pytest.mark.slow
def test_each_rank_holds_half_of_every_parameter_under_zero3(zero3_and_ddp):
    for rank in (0, 1):
        held = json.loads((zero3_and_ddp.zero3 / f"partition-rank{rank}.json").read_text())
        assert held["partitioned"] == held["parameters"]  # every parameter, frozen base weights included
        # partitions are padded to a multiple of the world size: a few elements over half
        assert held["held"] == pytest.approx(held["whole"] / 2, rel=0.01)


@pytest.mark.slow
def test_zero3_losses_equal_ddp_across_a_checkpoint_and_resume(zero3_and_ddp):
    zero3, ddp = zero3_and_ddp.zero3, zero3_and_ddp.ddp
    assert (zero3 / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's partitioned checkpoint
    assert sorted(trainer_losses(zero3 / "checkpoint-2")) == [1, 2]
    # the resume trained steps 3 and 4 only, from the checkpoint's weights, optimizer state and data position
    resumed_lines = [line for line in zero3_and_ddp.runs["resumed"].stdout.splitlines() if "{'loss'" in line]
    assert len(resumed_lines) == 2
    losses, reference = trainer_losses(zero3 / "checkpoint-4"), trainer_losses(ddp / "checkpoint-4")
    assert sorted(losses) == sorted(reference) == [1, 2, 3, 4]
    # float32 on both engines: they differ in how gradients are reduced (reduce-scatter vs all-reduce), not in what is
    # computed; measured equal to the bit here. The tolerance leaves room for another reduction order, far below what
    # a step changes (over 1e-2) or a resume that lost the optimizer state or the data position would change.
    for step in reference:
        assert losses[step] == pytest.approx(reference[step], abs=1e-4), step


@pytest.mark.slow
def test_zero3_final_save_loads_and_equals_ddp(zero3_and_ddp):
    from peft import AutoPeftModelForCausalLM, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    paths = zero3_and_ddp.zero3, zero3_and_ddp.ddp
    if zero3_and_ddp.method == "lora":
        weights = [get_peft_model_state_dict(AutoPeftModelForCausalLM.from_pretrained(path)) for path in paths]
        assert any("lora_B" in name and value.abs().sum() > 0 for name, value in weights[0].items())  # trained
    else:
        weights = [AutoModelForCausalLM.from_pretrained(path).state_dict() for path in paths]
    assert max_difference(*weights) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("zero3_and_ddp", ["lora"], indirect=True)  # samples run in the LoRA runs only
def test_samples_under_zero3_are_one_row_per_step_and_prompt_across_the_resume(zero3_and_ddp):
    from trl_smol.samples import load_prompts

    # every rank generates (parameters are gathered collectively); rank 0 writes
    rows = [json.loads(line) for line in (zero3_and_ddp.zero3 / "samples.jsonl").read_text().splitlines()]
    prompts = [prompt.text for prompt in load_prompts(str(REPO / "recipes" / "prompts" / "smollm3_demo.jsonl"))]
    expected = [(step, prompt) for step in (0, 2, 4) for prompt in prompts]  # the resume does not repeat step 2
    assert sorted((row["step"], row["prompt"]) for row in rows) == sorted(expected)
