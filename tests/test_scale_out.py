"""Scale-out on the engine the accelerate config names: DeepSpeed ZeRO-3 runs on a CPU-only machine, FSDP stops.

On a machine without an accelerator, `trl sft --accelerate_config recipes/accelerate/zero3.yaml --num_processes 2`
trains with DeepSpeed ZeRO-3 over gloo in float32 (the plugin passes accelerate a copy of the config with `use_cpu:
true` and `mixed_precision: 'no'`), never plain DDP; the banner names the engine as it runs. FSDP, which accelerate
runs only on GPUs, stops before anything loads instead of silently training DDP.
"""

import importlib.util
import json
import types
from pathlib import Path

import pytest
import yaml

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

    from trl_smol.commands import doctor
    from trl_smol.memory import HardwareInfo

    recipe = str(REPO / "recipes" / "smollm3_full.yaml")
    args = argparse.Namespace(config=recipe, preset="40gb", model=None, accelerate_config=ZERO3, num_processes=None)
    assert doctor.run(args, hardware=HardwareInfo.fake_cuda(40)) == 0
    out = capsys.readouterr().out
    assert "deepspeed-zero3 x8" in out and "Verdict per GPU after sharding: fits" in out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is the `deepspeed` extra")
def test_the_demo_recipe_trains_with_zero3_on_two_cpu_processes_and_its_adapter_reloads(tmp_path):
    # The demo recipe with the GPU ZeRO-3 config, as a user types it; the tiny SmolLM3 stands in for the demo model
    # to keep CI short (the demo model itself ran the same command: docs/recipes.md); its byte-level tokenizer makes
    # longer rows, hence max_length.
    from peft import AutoPeftModelForCausalLM
    from test_training_runs import trl_sft

    from trl_smol.testing import save_tiny_smollm3

    model = save_tiny_smollm3(tmp_path / "model", num_hidden_layers=4)
    out = tmp_path / "zero3-demo"
    result = trl_sft(
        "--config", str(REPO / "recipes" / "smollm3_demo.yaml"), "--accelerate_config", ZERO3,
        "--num_processes", "2", "--model_name_or_path", model, "--max_steps", "2", "--sample_every_n_steps", "2",
        "--sample_max_new_tokens", "8", "--max_length", "2048", "--output_dir", str(out), "--report_to", "none",
        "--save_strategy", "no",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "distributed=deepspeed-zero3 x2 (cpu, gloo)" in result.stdout
    # samples under ZeRO-3: every rank generates (parameters are gathered collectively), rank 0 writes one row per
    # step and prompt
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    prompts = len((REPO / "recipes" / "prompts" / "smollm3_demo.jsonl").read_text().splitlines())
    assert sorted({row["step"] for row in rows}) == [0, 2] and len(rows) == 2 * prompts
    model = AutoPeftModelForCausalLM.from_pretrained(out)  # the final save gathered the partitioned weights
    assert any("lora_B" in name and param.abs().sum() > 0 for name, param in model.named_parameters())
