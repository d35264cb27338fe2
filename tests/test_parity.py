"""Drop-in fidelity: with every plugin setting at its default, `SmolSFTTrainer` does what `trl.SFTTrainer` does.

Each case trains a tiny model for two steps with TRL's classes and with the plugin's, and compares what a user would:
the logged losses (training and evaluation), the saved files (the model card aside: the plugin writes its own), the
training arguments after construction, the tokenizer's chat template, eos and pad tokens, the precision, the user's
own callbacks, or the error when TRL refuses the setup. The README's "Defaults stay TRL's" contract points here.
"""

import pytest
from parity_harness import Case, build_models, run

CASES = [
    # methods
    Case("full"),
    Case("lora", peft="lora"),
    Case("qlora_4bit_on_cpu", peft="lora", four_bit=True),
    Case("prompt_tuning", peft="prompt_tuning"),
    Case("prefix_tuning", peft="prefix_tuning"),
    Case("p_tuning", peft="p_tuning"),
    # how the model is passed
    Case("model_instance", model_as="instance"),
    Case("wrapped_peft_model", model_as="peft", peft="lora"),
    # chat templates
    Case("chat_template_path_file", args={"chat_template_path": "template-file"}),
    Case("chat_template_path_model_dir", args={"chat_template_path": "llama"}),
    Case("other_model_with_template", model="llama"),
    Case("other_model_without_template", model="llama-no-template"),
    Case("other_model_without_template_lm", model="llama-no-template", data="lm"),
    Case("other_model_template_file", model="llama-no-template", args={"chat_template_path": "template-file"}),
    Case(
        "smollm3_without_template_template_file",
        model="smollm3-no-template",
        args={"chat_template_path": "template-file"},
    ),
    Case("smollm3_without_template_template_dir", model="smollm3-no-template", args={"chat_template_path": "llama"}),
    Case("smollm3_plain_template", model="smollm3-plain-template"),
    # data formats and losses
    Case("language_modeling", data="lm"),
    Case("prompt_completion", data="prompt_completion"),
    Case("conversational_prompt_completion", data="conversational_prompt_completion"),
    Case("assistant_only_loss", args={"assistant_only_loss": True}),
    Case("assistant_only_loss_other_model", model="llama", args={"assistant_only_loss": True}),
    Case("completion_only_loss", data="prompt_completion", args={"completion_only_loss": True}),
    Case("completion_loss_off", data="prompt_completion", args={"completion_only_loss": False}),
    Case("packing_bfd", args={"packing": True, "max_length": 64}),
    Case("padding_free", data="lm", args={"padding_free": True, "packing": True, "max_length": 64}),
    Case("truncation", args={"max_length": 12}),
    Case("dataset_text_field", data="text_field", args={"dataset_text_field": "content"}),
    Case("formatting_func", data="formatting"),
    # evaluation, callbacks, arguments
    Case("eval_dataset", eval="one"),
    Case("eval_dataset_dict", eval="dict"),
    Case("user_callbacks", callbacks=True),
    Case("training_arguments", args_kind="training_arguments", data="lm"),
    Case("use_cpu_with_bf16", args={"use_cpu": True}),
    Case("training_arguments_use_cpu_bf16", args_kind="training_arguments", data="lm", args={"use_cpu": True}),
]

# Where TRL stops, a SmolLM3 model or the machine makes the plugin train instead, and its banner says why.
WHERE_TRL_STOPS = [
    (
        Case("args_none_on_a_machine_without_bf16", args_kind="none", data="lm"),
        "doesn't support bf16",
        "precision=float32 (bf16 left unset; no bf16 device here, where TRL would stop)",
    ),
    (
        Case("smollm3_without_template", model="smollm3-no-template"),
        "Cannot use chat template functions",
        "chat_template=smollm3 (SmolLM3 model whose tokenizer has no chat template)",
    ),
    (
        Case(
            "smollm3_plain_template_assistant_only", model="smollm3-plain-template", args={"assistant_only_loss": True}
        ),
        "training-compatible",
        "chat_template=smollm3 (its tokenizer's template cannot mark assistant turns, and assistant_only_loss is on)",
    ),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("parity-models"))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_plugin_with_default_settings_matches_stock_trl(case, models, tmp_path):
    if "chat_template_path" in case.args:
        case = Case(
            **{**vars(case), "args": {**case.args, "chat_template_path": models[case.args["chat_template_path"]]}}
        )
    stock = run(case, plugin=False, root=tmp_path, models=models)
    plugin = run(case, plugin=True, root=tmp_path, models=models)
    if stock.error is not None:  # TRL refuses this setup: the plugin refuses it the same way
        assert plugin.error == stock.error
        return
    assert plugin.error is None, plugin.error
    assert plugin.losses == stock.losses and len(stock.losses) == 2
    assert plugin.eval_losses == stock.eval_losses
    assert plugin.files == stock.files
    assert plugin.args == stock.args
    assert (plugin.template, plugin.eos, plugin.pad) == (stock.template, stock.eos, stock.pad)
    assert plugin.precision == stock.precision
    assert plugin.callback_logs == stock.callback_logs
    # Nothing announced but, for bf16 autocast on a CPU that emulates bf16, the warning (training itself is TRL's).
    assert "chat_template=" not in plugin.banner
    assert "precision=" not in plugin.banner or "precision=bf16 (on a CPU without native bf16" in plugin.banner


@pytest.mark.parametrize(("case", "stock_error", "announced"), WHERE_TRL_STOPS, ids=lambda x: getattr(x, "name", ""))
def test_where_trl_stops_the_plugin_trains_and_says_why(case, stock_error, announced, models, tmp_path):
    stock = run(case, plugin=False, root=tmp_path, models=models)
    plugin = run(case, plugin=True, root=tmp_path, models=models)
    assert stock.error is not None and stock_error in stock.error
    assert plugin.error is None, plugin.error
    assert plugin.files and "train_loss" in plugin.eval_losses and announced in plugin.banner
