"""SmolTalk2's SFT mixture as SmolLM3 was trained on it: `trl_smol.data.smoltalk2_mixture` and `think_share`."""

import pytest
from smoltalk2_fixture import *  # noqa: F403  (pytest fixtures: offline_hf_home, smoltalk2_cache)
from trl import DatasetMixtureConfig, get_dataset

from trl_smol.data import smoltalk2_mixture
from trl_smol.data.mixtures import (
    SMOLLM3_SFT_MIXTURE,
    SmolDatasetMixtureConfig,
    is_think_split,
    published_think_share,
)


def think_share_of(datasets):
    return sum(d.fraction for d in datasets if is_think_split(d.split)) / sum(d.fraction for d in datasets)


def test_published_mixture_has_the_25_sft_splits_with_weight_times_rows_as_fraction():
    datasets = smoltalk2_mixture()
    assert [d.split for d in datasets] == [entry.split for entry in SMOLLM3_SFT_MIXTURE]
    assert len(datasets) == 25 and sum(is_think_split(d.split) for d in datasets) == 10
    assert {(d.path, d.name, tuple(d.columns)) for d in datasets} == {
        ("HuggingFaceTB/smoltalk2", "SFT", ("messages", "chat_template_kwargs"))
    }
    magpie = next(d for d in datasets if d.split == "smoltalk_smollm3_smol_magpie_ultra_no_think")
    assert magpie.fraction == 0.5 * 406843  # weight 0.5 in SmolLM3's recipe
    # On the real dataset TRL then keeps sum(weight x rows) conversations, as the recipe did.
    assert round(sum(d.fraction for d in datasets)) == 1444086
    assert think_share_of(datasets) == pytest.approx(published_think_share()) == pytest.approx(0.138, abs=1e-3)


def test_the_list_is_usable_directly_as_trl_mixture_datasets():
    config = DatasetMixtureConfig(datasets=smoltalk2_mixture(), test_split_size=0.01)
    assert config.datasets[0].split == SMOLLM3_SFT_MIXTURE[0].split


@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_think_share_sets_the_share_of_reasoning_rows_and_keeps_proportions_inside_each_group(share):
    published = smoltalk2_mixture()
    rescaled = smoltalk2_mixture(think_share=share)
    assert think_share_of(rescaled) == pytest.approx(share)
    for group in (True, False):
        before = [d.fraction for d in published if is_think_split(d.split) == group]
        after = [d.fraction for d in rescaled if is_think_split(d.split) == group]
        if sum(after):
            assert [a / sum(after) for a in after] == pytest.approx([b / sum(before) for b in before])


def test_weights_override_published_ones_and_zero_drops_a_split():
    datasets = smoltalk2_mixture(weights={"s1k_1.1_think": 2.0, "OpenHermes_2.5_no_think": 0})
    splits = [d.split for d in datasets]
    assert "OpenHermes_2.5_no_think" not in splits and len(splits) == 24
    assert next(d for d in datasets if d.split == "s1k_1.1_think").fraction == 2 * 835


def test_splits_selects_a_subset():
    datasets = smoltalk2_mixture(splits=["s1k_1.1_think", "table_gpt_no_think"])
    assert [d.split for d in datasets] == ["table_gpt_no_think", "s1k_1.1_think"]


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"`s1k_think` is not a split .* Valid splits: .*s1k_1\.1_think"):
        smoltalk2_mixture(weights={"s1k_think": 1.0})


def test_think_share_out_of_range_or_without_the_needed_splits_fails_clearly():
    with pytest.raises(ValueError, match="between 0 and 1"):
        smoltalk2_mixture(think_share=1.5)
    with pytest.raises(ValueError, match="no such split"):
        smoltalk2_mixture(splits=["table_gpt_no_think"], think_share=0.5)


def test_recipe_mixture_config_rescales_fractions_with_think_share():
    config = SmolDatasetMixtureConfig(datasets=[vars(d) for d in smoltalk2_mixture()], think_share=0.25)
    assert think_share_of(config.datasets) == pytest.approx(0.25)


def test_think_share_needs_fractions_on_every_entry():
    entries = [{"path": "HuggingFaceTB/smoltalk2", "name": "SFT", "split": "s1k_1.1_think"}]
    with pytest.raises(ValueError, match="split `s1k_1.1_think` has none"):
        SmolDatasetMixtureConfig(datasets=entries, think_share=0.5)


def test_mixture_resolves_offline_from_a_smoltalk2_shaped_copy(smoltalk2_cache):
    dataset = get_dataset(SmolDatasetMixtureConfig(datasets=smoltalk2_mixture(), test_split_size=0.1))
    assert set(dataset) == {"train", "test"}
    assert dataset["train"].column_names == ["messages", "chat_template_kwargs"]
    assert len(dataset["train"]) + len(dataset["test"]) > 10


def test_think_share_zero_leaves_no_reasoning_rows(smoltalk2_cache):
    rows = get_dataset(SmolDatasetMixtureConfig(datasets=smoltalk2_mixture(think_share=0.0)))["train"]
    assert len(rows) > 0
    assert not any(row["chat_template_kwargs"]["enable_thinking"] for row in rows)
    assert not any("<think>" in row["messages"][-1]["content"] for row in rows)


def test_mixture_tokenizes_with_the_smollm3_template(smoltalk2_cache, tiny_model, tiny_tokenizer, tmp_path):
    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    dataset = get_dataset(SmolDatasetMixtureConfig(datasets=smoltalk2_mixture(think_share=0.5)))["train"]
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", max_length=256)
    trainer = SmolSFTTrainer(model=tiny_model, args=args, train_dataset=dataset, processing_class=tiny_tokenizer)
    first = trainer.train_dataset[0]
    text = tiny_tokenizer.decode(first["input_ids"])
    assert "<|im_start|>assistant" in text and text.rstrip().endswith("<|im_end|>")
    assert len(trainer.train_dataset) == len(dataset)


def test_smoltalk2_custom_instructions_kwarg_is_accepted(tiny_model, tiny_tokenizer, tmp_path):
    from datasets import Dataset
    from smoltalk2_data import smoltalk2_rows

    from trl_smol import SmolSFTConfig, SmolSFTTrainer

    rows = smoltalk2_rows("smoltalk_smollm3_systemchats_30k_no_think", 3, custom_instructions=True)
    dataset = Dataset.from_list(rows).select_columns(["messages", "chat_template_kwargs"])
    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", max_length=256)
    trainer = SmolSFTTrainer(model=tiny_model, args=args, train_dataset=dataset, processing_class=tiny_tokenizer)
    assert "Answer in one sentence." in tiny_tokenizer.decode(trainer.train_dataset[0]["input_ids"])


def test_a_mixture_whose_columns_disagree_fails_naming_both_entries(tmp_path):
    import json

    from trl.scripts.utils import DatasetConfig, DatasetMixtureConfig

    from trl_smol.data.mixtures import MixtureColumnsError, check_mixture_columns

    chats, texts = tmp_path / "chats.jsonl", tmp_path / "texts.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    texts.write_text(json.dumps({"text": "Hello"}) + "\n")
    mixture = DatasetMixtureConfig(
        datasets=[DatasetConfig(path="json", data_files=str(chats)), DatasetConfig(path="json", data_files=str(texts))]
    )
    with pytest.raises(MixtureColumnsError, match=r"\['messages'\].*\['text'\]"):
        check_mixture_columns(mixture)
    same = DatasetMixtureConfig(datasets=[DatasetConfig(path="json", data_files=str(chats))] * 2)
    check_mixture_columns(same)  # agreeing columns pass
