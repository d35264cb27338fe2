"""Conversations are checked before tokenization: clear errors naming dataset, row and field, or counted drops."""

import copy
import os
import re

import pytest
from datasets import Dataset

from trl_smol import SMOLLM3_CHAT_TEMPLATE, SmolSFTConfig
from trl_smol.data import InvalidConversationError, prepare_conversations, tokenize_conversations
from trl_smol.testing import tiny_smollm3_tokenizer

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def config(**values):
    return SmolSFTConfig(output_dir=f"/tmp/trl_smol_tests_unused-{os.getpid()}", bf16=False, **values)


@pytest.fixture
def tokenizer():
    return tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)


def messages(*pairs, **extra):
    return {"messages": [{"role": role, "content": content} for role, content in pairs], **extra}


# (rows, row index from 0, field, reason): each malformed row sits after a valid one when Arrow can store both.
INVALID = [
    ([GOOD, {"messages": None}], 1, "messages", "missing messages"),
    (
        [GOOD, {"messages": [{"content": "Hi"}, {"role": "assistant", "content": "x"}]}],
        1,
        "messages[0].role",
        "message without role",
    ),
    (
        [GOOD, {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}],
        1,
        "messages[0].content",
        "message without content",
    ),
    ([GOOD, messages(("bot", "Hi"), ("assistant", "x"))], 1, "messages[0].role", "unknown role"),
    ([GOOD, messages(("system", "Be brief."), ("user", "Hi"))], 1, "messages", "no assistant turn"),
    ([messages(("user", 3), ("assistant", 4))], 0, "messages[0].content", "content is not a string"),
    (
        [
            {**GOOD, "chat_template_kwargs": {"enable_thinking": True}},
            {**GOOD, "chat_template_kwargs": {"enable_thinkin": True}},
        ],
        1,
        "chat_template_kwargs.enable_thinkin",
        "unknown chat_template_kwargs key",
    ),
    (
        [{**GOOD, "chat_template_kwargs": {"enable_thinking": "no"}}],
        0,
        "chat_template_kwargs.enable_thinking",
        "chat_template_kwargs of wrong type",
    ),
    (
        [
            GOOD,
            {
                "messages": [
                    {"role": "user", "content": "Add"},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"function": {"name": "add", "arguments": '{"a": 1'}}],
                    },
                ]
            },
        ],
        1,
        "messages[1].tool_calls[0].arguments",
        "invalid tool_calls",
    ),
]


@pytest.mark.parametrize(("rows", "row", "field", "reason"), INVALID, ids=[case[3] for case in INVALID])
def test_an_invalid_row_is_an_error_naming_dataset_row_and_field(tokenizer, rows, row, field, reason):
    message = f"Dataset 'eval', row {row + 1}, field `{field}`: {reason}"  # rows counted from 1, as lines of a file
    with pytest.raises(InvalidConversationError, match=re.escape(message)) as error:
        prepare_conversations(Dataset.from_list(rows), args=config(), dataset_name="eval", processing_class=tokenizer)
    assert "invalid_rows: drop" in str(error.value)


def test_drop_removes_invalid_rows_and_prints_a_count_per_reason(tokenizer, capsys):
    rows = [
        GOOD,
        messages(("bot", "x"), ("assistant", "y")),
        GOOD,
        messages(("user", "a")),
        messages(("bot", "z"), ("assistant", "w")),
    ]
    dataset = prepare_conversations(
        Dataset.from_list(rows), args=config(invalid_rows="drop"), processing_class=tokenizer
    )
    assert len(dataset) == 2
    assert dataset.column_names == ["messages", "chat_template_kwargs"]
    printed = capsys.readouterr().err
    assert "dropped 3 of 5 rows" in printed
    assert re.search(r"unknown role\s*│\s*2\s*│\s*2", printed)  # reason, count, first row (counted from 1)
    assert re.search(r"no assistant turn\s*│\s*1\s*│\s*4", printed)


def test_drop_with_nothing_invalid_prints_nothing(tokenizer, capsys):
    dataset = prepare_conversations(
        Dataset.from_list([GOOD] * 3), args=config(invalid_rows="drop"), processing_class=tokenizer
    )
    assert len(dataset) == 3
    assert "dropped" not in capsys.readouterr().err


def test_config_kwargs_are_merged_under_the_example_and_none_means_not_set(tokenizer):
    rows = [
        {**GOOD, "chat_template_kwargs": {"enable_thinking": True}},
        {**GOOD, "chat_template_kwargs": {"today": "01 May 2026"}},  # enable_thinking is None here in Arrow
    ]
    args = config(chat_template_kwargs={"enable_thinking": False, "close_system_turn": True})
    merged = prepare_conversations(Dataset.from_list(rows), args=args, processing_class=tokenizer)
    assert merged["chat_template_kwargs"][0] == {
        "today": "08 July 2025",
        "enable_thinking": True,
        "close_system_turn": True,
    }
    assert merged["chat_template_kwargs"][1] == {
        "today": "01 May 2026",
        "enable_thinking": False,
        "close_system_turn": True,
    }


def test_the_fixed_date_applies_only_under_the_smollm3_template(tokenizer):
    other = copy.deepcopy(tokenizer)
    other.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    args = config()
    kept = prepare_conversations(Dataset.from_list([GOOD]), args=args, processing_class=other)
    assert "today" not in kept["chat_template_kwargs"][0]  # another template renders as in stock TRL
    ours = prepare_conversations(Dataset.from_list([GOOD]), args=args, processing_class=tokenizer)
    assert ours["chat_template_kwargs"][0]["today"] == "08 July 2025"


def test_invalid_config_defaults_are_reported_before_any_row():
    with pytest.raises(ValueError, match=r"`chat_template_kwargs.enable_thinking` in the config.*wrong type"):
        prepare_conversations(Dataset.from_list([GOOD]), args=config(chat_template_kwargs={"enable_thinking": "no"}))


def test_unknown_kwargs_are_allowed_with_another_template():
    other = tiny_smollm3_tokenizer("{% for m in messages %}{{ m.content }}{% endfor %}")
    rows = [{**GOOD, "chat_template_kwargs": {"custom_flag": True}}]
    merged = prepare_conversations(Dataset.from_list(rows), args=config(), processing_class=other)
    assert merged[0]["chat_template_kwargs"]["custom_flag"] is True


def test_sharegpt_conversations_are_converted_and_checked(tokenizer):
    rows = [{"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Hello"}]}]
    dataset = prepare_conversations(Dataset.from_list(rows), args=config(), processing_class=tokenizer)
    assert dataset[0]["messages"] == GOOD["messages"]
    # TRL keeps ShareGPT role names, which the SmolLM3 template would skip: an error, not silently lost turns.
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    with pytest.raises(InvalidConversationError, match="row 1, field `messages\\[0\\].role`: unknown role: 'human'"):
        prepare_conversations(Dataset.from_list(rows), args=config(), processing_class=tokenizer)


def test_non_conversational_data_is_left_alone(tokenizer):
    dataset = Dataset.from_list([{"text": "plain text"}])
    assert prepare_conversations(dataset, args=config(), processing_class=tokenizer) is dataset


def test_json_string_tool_arguments_train_like_dicts_however_spaced(tokenizer):
    def call(arguments):
        return {
            "messages": [
                {"role": "user", "content": "Add"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": arguments}}],
                },
            ]
        }

    args = config(assistant_only_loss=True)
    compact = tokenize_conversations(
        prepare_conversations(Dataset.from_list([call('{"a":1,"b":[2, 3]}')]), args=args, processing_class=tokenizer),
        tokenizer,
        args=args,
    )
    as_dict = tokenizer.apply_chat_template(call({"a": 1, "b": [2, 3]})["messages"], today="08 July 2025")
    assert compact[0]["input_ids"] == as_dict["input_ids"]
