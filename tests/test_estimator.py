"""The memory estimator: SmolLM3's shape, known configurations, and how each setting moves the estimate."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from trl_smol.memory import (
    GIB,
    KNOWN_MODELS,
    ModelShape,
    ModelShapeError,
    breakdown_table,
    estimate_memory,
    model_shape,
)

SMOLLM3 = "HuggingFaceTB/SmolLM3-3B-Base"
BREAKDOWN_KEYS = {
    "weights",
    "quantization",
    "adapters",
    "gradients",
    "optimizer",
    "activations",
    "logits_and_loss",
    "overhead",
}


def test_smollm3_shape_is_known_offline_and_matches_the_architecture():
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

    shape = model_shape(SMOLLM3)
    assert shape is KNOWN_MODELS["HuggingFaceTB/SmolLM3-3B"]
    assert shape.num_parameters == 3_075_098_624
    config = SmolLM3Config(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=128256,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):  # no memory: only the parameter shapes
        model = SmolLM3ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == shape.num_parameters
    assert ModelShape.from_config(config).num_parameters == shape.num_parameters


def test_lora_parameter_count_matches_peft(tiny_model):
    shape = model_shape(tiny_model)
    config = LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(tiny_model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_params(8) == trainable
    assert model_shape(SMOLLM3).lora_params(16) == 16 * 1_889_280


def test_shape_from_a_checkpoint_directory_and_a_config(tiny_model_dir, tiny_model):
    from_dir = model_shape(tiny_model_dir)
    assert from_dir.hidden_size == 64 and from_dir.num_hidden_layers == 2
    assert model_shape(tiny_model.config).num_parameters == from_dir.num_parameters
    with open(f"{tiny_model_dir}/config.json") as file:
        assert model_shape(tiny_model_dir) == ModelShape.from_config(json.load(file), tiny_model_dir)


def test_unknown_hub_id_offline_says_to_pass_a_local_path():
    with pytest.raises(ModelShapeError, match="local checkpoint directory"):
        model_shape("someone/not-cached-anywhere-7b")


def test_qlora_weights_follow_nf4_with_double_quantisation():
    estimate = estimate_memory(SMOLLM3, method="qlora", dtype="bfloat16", max_length=2048)
    shape = model_shape(SMOLLM3)
    # 0.5 B per projection parameter, bf16 embeddings and norms: ~1.94 GB; absmax with double quant ~0.045 GB.
    assert (
        estimate.breakdown["weights"]
        == shape.projection_params // 2 + (shape.num_parameters - shape.projection_params) * 2
    )
    assert 1.9e9 < estimate.breakdown["weights"] + estimate.breakdown["quantization"] - 22_544_384 * 2 < 2.05e9
    single = estimate_memory(SMOLLM3, method="qlora", dtype="bfloat16", max_length=2048, double_quant=False)
    assert single.breakdown["quantization"] > estimate.breakdown["quantization"]
    # TRL casts QLoRA adapters to bf16: weight, gradient and two Adam states at 2 bytes.
    assert estimate.breakdown["adapters"] == shape.lora_params(16) * 2


def test_full_fine_tuning_with_bf16_weights_costs_8_bytes_per_parameter_before_activations():
    estimate = estimate_memory(SMOLLM3, method="full", dtype="bfloat16", optim="adamw_torch_fused")
    parameters = model_shape(SMOLLM3).num_parameters
    b = estimate.breakdown
    assert b["weights"] + b["gradients"] + b["optimizer"] == 8 * parameters
    assert set(b) == BREAKDOWN_KEYS and estimate.total_bytes == sum(b.values())
    eight_bit = estimate_memory(SMOLLM3, method="full", dtype="bfloat16", optim="adamw_8bit")
    assert eight_bit.breakdown["optimizer"] == 2 * parameters
    fp32_master = estimate_memory(SMOLLM3, method="full", dtype="bfloat16", weights_dtype="float32")
    assert fp32_master.breakdown["weights"] + fp32_master.breakdown["gradients"] == 8 * parameters


@pytest.mark.parametrize(
    ("change", "bigger"),
    [
        ({"max_length": 4096}, {"max_length": 8192}),
        ({"per_device_train_batch_size": 1}, {"per_device_train_batch_size": 4}),
        ({"gradient_checkpointing": True}, {"gradient_checkpointing": False}),
        ({"optim": "paged_adamw_8bit"}, {"optim": "adamw_torch"}),
        ({"lora_r": 8}, {"lora_r": 64}),
        ({"lora_dropout": 0.0}, {"lora_dropout": 0.1}),
    ],
)
def test_each_setting_moves_the_estimate_the_right_way(change, bigger):
    base = {"method": "lora", "max_length": 2048, "dtype": "bfloat16"}
    assert (
        estimate_memory(SMOLLM3, **{**base, **change}).total_bytes
        < estimate_memory(SMOLLM3, **{**base, **bigger}).total_bytes
    )


def test_activations_scale_with_tokens_and_cpu_has_no_cuda_context():
    varlen = {"method": "lora", "gradient_checkpointing": False, "attention": "flash_attention_2"}
    short = estimate_memory(SMOLLM3, max_length=1024, **varlen)
    long = estimate_memory(SMOLLM3, max_length=2048, **varlen)
    assert long.breakdown["activations"] == pytest.approx(2 * short.breakdown["activations"], rel=1e-6)
    # SDPA (transformers' default) also holds a boolean mask of every pair of each row: rows x length^2 bytes
    sdpa = estimate_memory(SMOLLM3, max_length=2048, per_device_train_batch_size=4, **{**varlen, "attention": "sdpa"})
    flash = estimate_memory(SMOLLM3, max_length=2048, per_device_train_batch_size=4, **varlen)
    assert sdpa.breakdown["activations"] - flash.breakdown["activations"] == 4 * 2048**2
    cuda = estimate_memory(SMOLLM3, method="lora", device="cuda")
    cpu = estimate_memory(SMOLLM3, method="lora", device="cpu")
    assert cuda.breakdown["overhead"] > 0.6 * GIB > cpu.breakdown["overhead"]


def test_bad_method_and_dtype_are_named():
    with pytest.raises(ValueError, match="Unknown method `dora`"):
        estimate_memory(SMOLLM3, method="dora")
    with pytest.raises(ValueError, match="Unknown dtype `int3`"):
        estimate_memory(SMOLLM3, dtype="int3")


def test_breakdown_table_lists_every_component_and_the_budget():
    from rich.console import Console

    estimate = estimate_memory(SMOLLM3, method="qlora")
    console = Console(width=120, record=True)
    console.print(breakdown_table(estimate, budget=8 * GIB))
    text = console.export_text()
    for label in ("weights", "quantisation overhead", "optimizer states", "logits and loss", "total", "budget"):
        assert label in text


def load_gpu_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "benchmarks" / "gpu_memory.py"
    spec = importlib.util.spec_from_file_location("gpu_memory_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_covers_every_method_at_two_lengths_and_scores_ratios():
    bench = load_gpu_benchmark()
    assert {(case[0], case[1]) for case in bench.CASES} == {
        (method, length) for method in ("qlora", "lora", "full") for length in (2048, 4096)
    }
    case = bench.select_cases(["qlora:4096"])[0]
    expected = estimate_memory(
        SMOLLM3, method="qlora", max_length=4096, optim="paged_adamw_8bit", dtype="bfloat16", device="cuda"
    )
    assert bench.predicted(case)["predicted_bytes"] == expected.total_bytes
    summary = bench.summarize(
        [{"measured_bytes": 110, "predicted_bytes": 100}, {"measured_bytes": 80, "predicted_bytes": 100}], 0.15
    )
    assert [round(r["ratio"], 2) for r in summary["results"]] == [1.1, 0.8]
    assert summary["all_within_tolerance"] is False
    with pytest.raises(SystemExit, match="unknown case"):
        bench.select_cases(["dora:2048"])


def test_gpu_benchmark_refuses_to_run_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        load_gpu_benchmark().main(["--output", "/dev/null"])


def test_full_fine_tuning_peaks_in_the_larger_of_two_phases():
    # A 3B model: every gradient plus the states outweigh one micro-batch's activations: optimizer-step phase.
    big = estimate_memory(SMOLLM3, method="full", max_length=1024, dtype="bfloat16")
    assert big.breakdown["activations"] == 0 and big.breakdown["gradients"] == 2 * model_shape(SMOLLM3).num_parameters
    # The 135M demo model on CPU at 2 x 512 tokens: the loss backward's temporaries dominate.
    small = estimate_memory(
        "trl-smol/SmolLM3-demo-135M", method="full", max_length=512, per_device_train_batch_size=2,
        dtype="float32", device="cpu",
    )  # fmt: skip
    assert small.breakdown["gradients"] == 0 and small.breakdown["logits_and_loss"] > 0
    assert any("peaks in the loss backward" in note for note in small.notes)


def test_a_known_model_id_is_read_from_its_cached_config_when_there_is_one(tmp_path, monkeypatch):
    # What will load is the cached copy (a stand-in in the tests, a fine-tune pushed under the id): its shape wins
    # over the published one; without a cached copy, the published shape, without the network.
    import json

    import huggingface_hub

    from trl_smol.memory.shapes import KNOWN_MODELS, model_shape

    config = tmp_path / "config.json"
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}
    config.write_text(json.dumps({**shape, "num_key_value_heads": 2, "vocab_size": 1000}))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(config))
    assert model_shape("HuggingFaceTB/SmolLM3-3B-Base").hidden_size == 64
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    assert model_shape("HuggingFaceTB/SmolLM3-3B-Base") == KNOWN_MODELS["HuggingFaceTB/SmolLM3-3B-Base"]
