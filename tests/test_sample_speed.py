"""What makes a sample pass cheap, and that it changes nothing: LoRA adapters skipped while they add zero, merged into
copies of the weights otherwise, and generation stopped once every prompt has ended."""

import os

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from trl_smol.samples import SampleGenerationCallback, SampleGenerator, load_prompts
from trl_smol.samples import lora as sample_lora
from trl_smol.samples.lora import lora_fast_path
from trl_smol.samples.prefill import prefilled_cache

NO_THINK = {"enable_thinking": False}
PROMPTS = ["What is 7 plus 5?", "Name a primary colour.", "Hi", "What is the capital of France?"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def lora_model(model, trained: bool, **config):
    """The tiny model with LoRA on every linear layer; `trained`: random `lora_B`, as after optimizer steps."""
    from peft import LoraConfig, get_peft_model

    values = {"r": 4, "lora_alpha": 32, "target_modules": "all-linear", "init_lora_weights": not trained, **config}
    peft_model = get_peft_model(model, LoraConfig(**values))
    if trained:
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(4.0)  # peft's random init is small: make sure the adapters change the answers
    peft_model.train()
    return peft_model


def passes(model, tokenizer, **settings) -> tuple[list[dict], list[dict]]:
    """The rows of one pass through the adapters and of one with the fast path, without their timings."""
    rows = []
    for fast in (False, True):
        generator = SampleGenerator(load_prompts(PROMPTS), max_new_tokens=12, fast_lora=fast, **settings)
        generated, _ = generator.generate(model, tokenizer, step=5)
        rows.append([{key: value for key, value in row.items() if key != "seconds"} for row in generated])
    return rows[0], rows[1]


def snapshot(model) -> dict[str, tuple[torch.Tensor, int, bool]]:
    return {
        name: (tensor.detach().clone(), tensor.data_ptr(), tensor.requires_grad)
        for name, tensor in model.state_dict(keep_vars=True).items()
    }


def assert_unchanged(model, before) -> None:
    after = snapshot(model)
    assert after.keys() == before.keys()
    for name, (tensor, pointer, requires_grad) in before.items():
        now, now_pointer, now_requires_grad = after[name]
        assert torch.equal(now, tensor), name  # bit for bit
        assert (now_pointer, now_requires_grad) == (pointer, requires_grad), name  # the very same storage


def lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


# --- the same text, faster -----------------------------------------------------------------------------------------


def test_adapters_that_add_zero_are_skipped_and_the_text_is_identical(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model, trained=False)  # lora_B is zero, as before the first optimizer step
    calls = []
    for layer in lora_layers(model):
        layer.lora_A["default"].register_forward_hook(lambda *args: calls.append(1))

    with torch.no_grad(), lora_fast_path(model) as counts:
        model(torch.tensor([[1, 2, 3]]))
    assert counts == {"zero": len(lora_layers(model)), "merged": 0, "adapters": 0} and not calls

    through_adapters, fast = passes(model, tiny_tokenizer, chat_template_kwargs=NO_THINK)
    assert fast == through_adapters and len(fast) == len(PROMPTS)
    assert not any(layer.merged for layer in lora_layers(model))


def test_merged_adapters_give_the_same_text_and_leave_the_weights_bit_identical(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model, trained=True)
    with model.disable_adapter():
        base_rows, _ = passes(model, tiny_tokenizer, chat_template_kwargs=NO_THINK)
    before = snapshot(model)

    with torch.no_grad(), lora_fast_path(model) as counts:
        assert all(layer.merged for layer in lora_layers(model))
    assert counts == {"zero": 0, "merged": len(lora_layers(model)), "adapters": 0}
    through_adapters, fast = passes(model, tiny_tokenizer, chat_template_kwargs=NO_THINK)

    assert fast == through_adapters
    assert [row["completion"] for row in fast] != [row["completion"] for row in base_rows]  # the adapters count
    assert_unchanged(model, before)
    assert not any(layer.merged for layer in lora_layers(model)) and model.training


def test_training_after_passes_is_unaffected(tmp_path, tiny_tokenizer):
    # The same LoRA run twice, with a pass after every step (zero adapters at step 0, merged ones after) and without:
    # the same losses and the same weights, bit for bit.
    from trl_smol.testing import tiny_smollm3_model

    ids = [tiny_tokenizer(f"What is {i}+{i}? It is {2 * i}.")["input_ids"][:8] for i in range(8)]
    ids = [row + [tiny_tokenizer.pad_token_id] * (8 - len(row)) for row in ids]
    dataset = Dataset.from_dict({"input_ids": ids, "labels": ids})

    def train(callbacks):
        model = lora_model(tiny_smollm3_model(tiny_tokenizer), trained=False)
        args = TrainingArguments(
            output_dir=str(tmp_path / str(len(callbacks))),
            max_steps=3,
            per_device_train_batch_size=2,
            learning_rate=1e-2,
            logging_steps=1,
            gradient_checkpointing=True,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, processing_class=tiny_tokenizer, callbacks=callbacks
        )
        trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        return losses, {name: value.clone() for name, value in model.state_dict().items()}

    samples = SampleGenerationCallback(PROMPTS, every_n_steps=1, max_new_tokens=6, chat_template_kwargs=NO_THINK)
    with_samples, weights = train([samples])
    without, reference = train([])

    assert [row["step"] for row in samples.history] == [step for step in range(4) for _ in PROMPTS]
    assert with_samples == without and len(without) == 3
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[name], reference[name]) for name in reference)


def test_quantized_base_with_zero_adapters_is_skipped(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantization, device_map="cpu")
    model = lora_model(base, trained=False)

    with torch.no_grad(), lora_fast_path(model) as counts:
        pass
    assert counts["zero"] == len(lora_layers(model)) > 0
    through_adapters, fast = passes(model, tiny_tokenizer, chat_template_kwargs=NO_THINK)
    assert fast == through_adapters


# --- prefill without padding, shared prefixes once ------------------------------------------------------------------

SYSTEM = "You are a careful assistant. Answer in one short line, then stop."
SHARED = [
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 7 plus 5?"}],
    "Hi",
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a primary colour, please."}],
    "Hi",  # the same prompt twice: nothing left to compute for the second
    "What is the capital of France? Tell me about Paris.",
]


@pytest.mark.parametrize("sampling", [False, True])
def test_prompts_prefilled_one_by_one_give_the_same_text(tiny_model, tiny_tokenizer, sampling):
    settings = dict(max_new_tokens=10, do_sample=sampling, temperature=1.0, seed=3, chat_template_kwargs=NO_THINK)
    fed = []
    tiny_model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    rows, prefilled = {}, {}
    for reuse in (False, True):
        fed.clear()
        generator = SampleGenerator(load_prompts(SHARED), reuse_prefixes=reuse, **settings)
        generated, _ = generator.generate(tiny_model, tiny_tokenizer, step=2)
        rows[reuse] = [{key: value for key, value in row.items() if key != "seconds"} for row in generated]
        prefilled[reuse] = sum(batch * length for batch, length in fed if length > 1)  # tokens before the 1-by-1

    assert rows[True] == rows[False]
    encoded = [generator._encode(tiny_tokenizer, i, prompt, None) for i, prompt in enumerate(generator.prompts)]
    assert prefilled[False] == len(SHARED) * max(map(len, encoded))  # the plain path prefills the padded batch
    # Each prompt but its last token, less what it shares with an earlier one; the repeated "Hi" costs nothing.
    bodies = [ids[:-1] for ids in encoded]
    shared = [max((len(os.path.commonprefix([body, earlier])) for earlier in bodies[:i]), default=0) for i, body in
              enumerate(bodies)]  # fmt: skip
    expected = [len(body) - length for body, length in zip(bodies, shared, strict=True)]
    assert expected[3] == 0 and prefilled[True] == sum(expected) < sum(map(len, bodies))


def test_the_prefilled_cache_is_the_padded_batch_laid_out(tiny_model, tiny_tokenizer):
    prompts = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 9], [7, 8]]
    width = max(map(len, prompts))
    input_ids = torch.tensor([[0] * (width - len(ids)) + ids for ids in prompts])
    attention_mask = (torch.arange(width) >= torch.tensor([[width - len(ids)] for ids in prompts])).long()
    tiny_model.eval()
    with torch.no_grad():
        cache = prefilled_cache(tiny_model, prompts)
        mask = attention_mask[:, :-1]
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as `generate` numbers a left-padded batch
        batch = tiny_model(input_ids=input_ids[:, :-1], attention_mask=mask, position_ids=positions, use_cache=True)
    reference = batch.past_key_values if hasattr(batch, "past_key_values") else batch.cache
    for layer, expected in zip(cache.layers, reference.layers, strict=True):
        assert layer.keys.shape == expected.keys.shape == (3, 2, width - 1, 16)
        visible = attention_mask[:, :-1].bool()[:, None, :, None].expand_as(layer.keys)
        torch.testing.assert_close(layer.keys[visible], expected.keys[visible], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.values[visible], expected.values[visible], rtol=1e-5, atol=1e-5)
        assert not layer.keys[~visible].any()


def test_models_with_sliding_windows_are_prefilled_by_generate(tiny_tokenizer):
    from trl_smol.testing import tiny_smollm3_model

    model = tiny_smollm3_model(
        tiny_tokenizer, use_sliding_window=True, sliding_window=16, layer_types=["sliding_attention", "full_attention"]
    )
    assert prefilled_cache(model, [[1, 2, 3], [4, 5]]) is None
    assert prefilled_cache(tiny_smollm3_model(tiny_tokenizer), [[1, 2, 3], [4]]) is None  # nothing to prefill in one


def test_a_failing_prefill_is_reported_once_and_the_pass_goes_on(tiny_model, tiny_tokenizer, monkeypatch, caplog):
    from trl_smol.samples import generation

    def unknown_model(*args, **kwargs):
        raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")

    plain = SampleGenerator(
        load_prompts(PROMPTS), max_new_tokens=6, reuse_prefixes=False, chat_template_kwargs=NO_THINK
    )
    expected, _ = plain.generate(tiny_model, tiny_tokenizer)
    monkeypatch.setattr(generation, "prefilled_cache", unknown_model)
    generator = SampleGenerator(load_prompts(PROMPTS), max_new_tokens=6, chat_template_kwargs=NO_THINK)

    with caplog.at_level("WARNING"):
        passes = [generator.generate(tiny_model, tiny_tokenizer)[0] for _ in range(2)]

    assert caplog.text.count("Prefilling sample prompts failed") == 1 and "logits_to_keep" in caplog.text
    for rows in passes:
        assert [row["completion"] for row in rows] == [row["completion"] for row in expected]


# --- where merging would not be exact, the adapters stay -----------------------------------------------------------


def test_16_bit_weights_tied_weights_and_dora_keep_their_adapters(tiny_tokenizer):
    from trl_smol.testing import tiny_smollm3_model

    half = lora_model(tiny_smollm3_model(tiny_tokenizer).to(torch.bfloat16), trained=True)
    tied = lora_model(tiny_smollm3_model(tiny_tokenizer), trained=True, target_modules=["lm_head", "q_proj"])
    dora = lora_model(tiny_smollm3_model(tiny_tokenizer), trained=True, use_dora=True)

    for model, expected in [
        (half, {"zero": 0, "merged": 0, "adapters": len(lora_layers(half))}),
        (tied, {"zero": 0, "merged": 2, "adapters": 1}),  # q_proj of both layers; not lm_head, tied to embeddings
        (dora, {"zero": 0, "merged": 0, "adapters": 0}),  # DoRA computes more than B @ A: not touched at all
    ]:
        before = snapshot(model)
        with torch.no_grad(), lora_fast_path(model) as counts:
            pass
        assert counts == expected
        assert_unchanged(model, before)


def test_merged_copies_stay_within_the_memory_budget(tiny_model, monkeypatch):
    model = lora_model(tiny_model, trained=True)
    layers = lora_layers(model)
    sizes = [layer.get_base_layer().weight.numel() * 4 for layer in layers]
    monkeypatch.setattr(sample_lora, "_merge_budget", lambda device: sum(sizes[:3]))
    before = snapshot(model)

    with torch.no_grad(), lora_fast_path(model) as counts:
        assert [layer.merged for layer in layers][:3] == [True] * 3
    assert counts["merged"] >= 3 and counts["merged"] + counts["adapters"] == len(layers)
    assert_unchanged(model, before)


def test_a_failed_pass_restores_the_weights(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model, trained=True)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), lora_fast_path(model):
        raise RuntimeError("boom")
    assert_unchanged(model, before)
    assert not any(layer.merged for layer in lora_layers(model))


# --- stopping ------------------------------------------------------------------------------------------------------


def test_the_batch_stops_as_soon_as_every_prompt_has_ended(tiny_model, tiny_tokenizer):
    # The tiny tokenizer's eos is <|end_of_text|>: generation must stop at the template's <|im_end|> too.
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tiny_tokenizer.eos_token_id != im_end
    steps = []

    def end_after_three(module, args, output):
        if output.shape[0] < len(PROMPTS):
            return output  # a prompt prefilled alone, before `generate`
        steps.append(1)
        if len(steps) >= 3:  # two tokens, then <|im_end|> everywhere
            output[..., im_end] = 1e4
        return output

    tiny_model.lm_head.register_forward_hook(end_after_three)
    generator = SampleGenerator(load_prompts(PROMPTS), max_new_tokens=40, chat_template_kwargs=NO_THINK)
    rows, _ = generator.generate(tiny_model, tiny_tokenizer)

    assert [(row["num_new_tokens"], row["stopped"]) for row in rows] == [(3, True)] * len(PROMPTS)
    assert len(steps) == 3  # not one forward more than the batch needed


@pytest.mark.parametrize("sharding", [None, "is_zero3", "is_fsdp"])
def test_sharded_models_generate_through_their_adapters(tiny_model, tiny_tokenizer, monkeypatch, sharding):
    # ZeRO-3 and FSDP shard parameters: nothing is read whole or swapped there, and the pass still runs.
    from trl.distributed import DistributedBackend

    from trl_smol.samples import generation

    if sharding:
        monkeypatch.setattr(DistributedBackend, sharding, property(lambda self: True))
    entered = []
    monkeypatch.setattr(generation, "lora_fast_path", lambda model: entered.append(1) or lora_fast_path(model))
    model = lora_model(tiny_model, trained=True)
    generator = SampleGenerator(load_prompts(PROMPTS[:1]), max_new_tokens=4, chat_template_kwargs=NO_THINK)

    rows, _ = generator.generate(model, tiny_tokenizer)

    assert len(rows) == 1 and len(entered) == (0 if sharding else 1)


def test_synchronized_generation_prefills_inside_generate(tiny_model, tiny_tokenizer, monkeypatch):
    # Under ZeRO-3 or FSDP with several processes, every forward must run on all of them in step (`synced_gpus`):
    # prompts prefilled one by one would break that, so there `generate` prefills as before.
    from trl.distributed import DistributedBackend

    from trl_smol.samples import generation

    monkeypatch.setattr(DistributedBackend, "is_zero3", property(lambda self: True))
    monkeypatch.setattr(generation, "prefilled_cache", lambda *args: pytest.fail("prefilled under ZeRO-3"))
    calls = []

    def generate(input_ids, **kwargs):
        calls.append(kwargs)
        return torch.cat([input_ids, torch.full((len(input_ids), 1), tiny_tokenizer.eos_token_id)], dim=1)

    monkeypatch.setattr(tiny_model, "generate", generate)
    generator = SampleGenerator(load_prompts(PROMPTS), chat_template_kwargs=NO_THINK)
    rows = generator._generate_local(tiny_model, tiny_tokenizer, list(enumerate(generator.prompts)), 0, multi=True)

    assert len(rows) == len(PROMPTS) and all(row["stopped"] for row in rows)
    assert [call["synced_gpus"] for call in calls] == [True] and not {"cache", "past_key_values"} & set(calls[0])
