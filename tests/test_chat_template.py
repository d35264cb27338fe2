"""The SmolLM3 chat template: golden renderings built from the released format's specification, then the additions.

Expected strings are assembled here from the format's facts (header lines, default instructions, turn markers), not
from the template, so a change in the template's output fails these tests.
"""

from datetime import datetime

import pytest

from trl_smol import SMOLLM3_CHAT_TEMPLATE
from trl_smol.templating import apply_smollm3_template, smollm3_template_reason
from trl_smol.testing import tiny_smollm3_tokenizer

TODAY = "08 July 2025"
NO_THINK_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
THINK_DEFAULT = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves "
    "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
    "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
    "reassessment, reflection, backtracking, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution using the specified format: <think> "
    "Thought section </think> Solution section. In the Thought section, detail your reasoning process in steps. Each "
    "step should include detailed considerations such as analysing questions, summarizing relevant findings, "
    "brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and revisiting "
    "previous steps. In the Solution section, based on various attempts, explorations, and reflections from the "
    "Thought section, systematically present the final solution that you deem correct. The Solution section should "
    "be logical, accurate, and concise and detail necessary steps needed to reach the conclusion."
)
XML_INTRO = (
    "You may call one or more functions to assist with the user query.\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n\n<tools>\n"
)
XML_OUTRO = (
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
PY_INTRO = (
    "When you send a message containing Python code between '<code>' and '</code>' tags, it will be executed in a "
    "stateful Jupyter notebook environment, and you will then be given the output to continued reasoning in an "
    "agentic loop.\n\nYou can use the following tools in your python code like regular functions:\n<tools>\n"
)
PY_OUTRO = (
    "</tools>\n\nThe state persists between code executions: so variables that you define in one step are still "
    "available thereafter."
)


def header(mode="/think", instructions=None, today=TODAY, tools=""):
    if instructions is None:
        instructions = THINK_DEFAULT if mode == "/think" else NO_THINK_DEFAULT
    text = (
        "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n"
        f"Today Date: {today}\nReasoning Mode: {mode}\n\n## Custom Instructions\n\n{instructions}\n\n"
    )
    if tools:
        text += f"### Tools\n\n{tools}\n\n<|im_end|>\n"
    return text


def user(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n"


def assistant(text, mode="/think"):
    return "<|im_start|>assistant\n" + ("<think>\n\n</think>\n" if mode == "/no_think" else "") + text + "<|im_end|>\n"


@pytest.fixture
def tokenizer():
    return tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)


def render(tokenizer, messages, **kwargs):
    kwargs.setdefault("today", TODAY)
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


CHAT = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]


# --- the released format -------------------------------------------------------------------------------------------
def test_think_mode_is_the_default_with_the_long_default_instructions(tokenizer):
    assert render(tokenizer, CHAT) == header("/think") + user("What is 2+2?") + assistant("4")


def test_enable_thinking_false_gives_no_think_mode_and_an_empty_think_block(tokenizer):
    expected = header("/no_think") + user("What is 2+2?") + assistant("4", "/no_think")
    assert render(tokenizer, CHAT, enable_thinking=False) == expected


@pytest.mark.parametrize(
    ("system", "enable_thinking", "mode", "instructions"),
    [
        ("Be brief. /no_think", True, "/no_think", "Be brief."),
        ("/think Explain.", False, "/think", " Explain."),
        ("A /think B /no_think  ", True, "/no_think", "A  B"),
        ("Be brief.\n\n", True, "/think", "Be brief."),
        ("/no_think", True, "/no_think", NO_THINK_DEFAULT),  # only the flag: default instructions of the mode
    ],
)
def test_system_prompt_flags_override_the_mode_and_are_removed(tokenizer, system, enable_thinking, mode, instructions):
    messages = [{"role": "system", "content": system}, *CHAT]
    expected = header(mode, instructions) + user("What is 2+2?") + assistant("4", mode)
    assert render(tokenizer, messages, enable_thinking=enable_thinking) == expected


def test_a_literal_think_closing_tag_in_the_system_prompt_is_mangled_as_in_the_released_template(tokenizer):
    messages = [{"role": "system", "content": "Wrap reasoning in </think>."}, *CHAT]
    assert render(tokenizer, messages, enable_thinking=False).startswith(header("/think", "Wrap reasoning in <>."))


def test_custom_instructions_keyword_is_used_without_a_system_message(tokenizer):
    # SmolTalk2 rows carry their system prompt as `chat_template_kwargs.custom_instructions`.
    expected = header("/no_think", "Answer in one sentence.") + user("What is 2+2?") + assistant("4", "/no_think")
    assert render(tokenizer, CHAT, enable_thinking=False, custom_instructions="Answer in one sentence.") == expected
    messages = [{"role": "system", "content": "Be brief."}, *CHAT]  # a system message wins over the keyword
    assert render(tokenizer, messages, custom_instructions="ignored").startswith(header("/think", "Be brief."))


def test_system_override_replaces_the_whole_header(tokenizer):
    messages = [{"role": "system", "content": "You are a pirate. /system_override /no_think  "}, *CHAT]
    expected = "<|im_start|>system\nYou are a pirate.<|im_end|>\n" + user("What is 2+2?")
    expected += assistant("4", "/no_think")
    assert render(tokenizer, messages) == expected


def test_xml_tools_are_listed_with_the_string_filter(tokenizer):
    tool = {"name": "get_weather", "parameters": {"city": "string"}}
    tools = XML_INTRO + "{'name': 'get_weather', 'parameters': {'city': 'string'}}\n" + XML_OUTRO
    assert render(tokenizer, CHAT, xml_tools=[tool]) == header(tools=tools) + user("What is 2+2?") + assistant("4")


def test_python_tools_and_both_tool_kinds_back_to_back(tokenizer):
    python_only = PY_INTRO + "def add(a, b): ...\n" + PY_OUTRO
    assert render(tokenizer, CHAT, python_tools=["def add(a, b): ..."]).startswith(header(tools=python_only))
    both = XML_INTRO + "{'name': 'f'}\n" + XML_OUTRO + PY_INTRO + "g()\n" + PY_OUTRO
    assert render(tokenizer, CHAT, xml_tools=[{"name": "f"}], python_tools=["g()"]).startswith(header(tools=both))


def test_tool_role_renders_as_user_and_other_roles_are_skipped(tokenizer):
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Calling."},
        {"role": "tool", "content": "sunny"},
        {"role": "system", "content": "a later system message"},
        {"role": "developer", "content": "unknown role"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    body = user("Weather?") + assistant("Calling.") + user("sunny") + assistant("It is sunny.")
    assert render(tokenizer, messages) == header() + body


def test_non_string_content_renders_empty_and_leading_newlines_of_answers_are_stripped(tokenizer):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "\n\nHello\n"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hi again"},
    ]
    body = user("") + assistant("Hello\n") + user("Again") + assistant("Hi again")
    assert render(tokenizer, messages) == header() + body


@pytest.mark.parametrize(("enable_thinking", "prompt"), [(True, ""), (False, "<think>\n\n</think>\n")])
def test_generation_prompt(tokenizer, enable_thinking, prompt):
    messages = CHAT[:1]
    mode = "/think" if enable_thinking else "/no_think"
    expected = header(mode) + user("What is 2+2?") + "<|im_start|>assistant\n" + prompt
    assert render(tokenizer, messages, add_generation_prompt=True, enable_thinking=enable_thinking) == expected


def test_token_ids_are_the_tokenization_of_the_text(tokenizer):
    ids = tokenizer.apply_chat_template(CHAT, today=TODAY, return_dict=True)["input_ids"]
    assert ids == tokenizer(render(tokenizer, CHAT), add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2  # special tokens stay single ids


def test_without_today_the_clock_gives_the_date_as_the_released_template_does(tokenizer):
    before = datetime.now().strftime("%d %B %Y")
    text = tokenizer.apply_chat_template(CHAT, tokenize=False)
    after = datetime.now().strftime("%d %B %Y")
    assert f"Today Date: {before}\n" in text or f"Today Date: {after}\n" in text


def test_none_keyword_arguments_mean_not_set(tokenizer):
    # HF datasets store absent struct keys as None: None must not flip the mode or print "None".
    text = render(tokenizer, CHAT, enable_thinking=None, xml_tools=None, close_system_turn=None)
    assert text == header("/think") + user("What is 2+2?") + assistant("4")


# --- additions -----------------------------------------------------------------------------------------------------
WEATHER_SCHEMA = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_standard_tools_are_listed_as_compact_json_after_xml_tools(tokenizer):
    tools = [{"type": "function", "function": WEATHER_SCHEMA}]
    text = render(tokenizer, CHAT, tools=tools, xml_tools=[{"name": "f"}])
    listed = (
        "{'name': 'f'}\n"
        '{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}\n'
    )
    assert text.startswith(header(tools=XML_INTRO + listed + XML_OUTRO))


@pytest.mark.parametrize("arguments", [{"city": "Paris"}, '{"city": "Paris"}'])
def test_tool_calls_render_after_the_content_for_dict_or_json_string_arguments(tokenizer, arguments):
    call = {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call, call]},
    ]
    block = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    expected = header() + user("Weather in Paris?") + assistant(f"Let me check.\n{block}\n{block}")
    assert render(tokenizer, messages) == expected


def test_a_tool_call_without_content_has_no_separator(tokenizer):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"name": "ping", "arguments": {}}]},
    ]
    block = '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>'
    assert render(tokenizer, messages, enable_thinking=False).endswith(assistant(block, "/no_think"))


def test_reasoning_content_is_rendered_in_think_mode_only(tokenizer):
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Add."},
    ]
    assert render(tokenizer, messages).endswith(assistant("<think>\nAdd.\n</think>\n4"))
    assert render(tokenizer, messages, enable_thinking=False).endswith(assistant("4", "/no_think"))


def test_close_system_turn_ends_the_header_without_tools(tokenizer):
    text = render(tokenizer, CHAT, close_system_turn=True)
    assert text == header() + "<|im_end|>\n" + user("What is 2+2?") + assistant("4")
    # With tools the released template already closes the turn: no second <|im_end|>.
    with_tools = render(tokenizer, CHAT, close_system_turn=True, python_tools=["f()"])
    assert with_tools.count("<|im_end|>") == 3


# --- applying the template -----------------------------------------------------------------------------------------
def test_apply_sets_the_template_and_smollm3_pad_token_without_changing_the_vocabulary():
    tokenizer = tiny_smollm3_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    size = len(tokenizer)
    apply_smollm3_template(tokenizer)
    assert tokenizer.chat_template == SMOLLM3_CHAT_TEMPLATE
    assert tokenizer.pad_token == "<|finetune_right_pad_id|>"
    assert len(tokenizer) == size


def _tokenizer_with_specials(specials, eos, pad=None):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(["hello world"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad)


def test_pad_token_falls_back_to_another_special_token_never_the_stop_tokens():
    tokenizer = _tokenizer_with_specials(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eos="<|im_end|>")
    tokenizer.pad_token = "<|im_end|>"
    apply_smollm3_template(tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>"


def test_tokenizer_without_chatml_tokens_is_refused_rather_than_extended():
    tokenizer = _tokenizer_with_specials(["<|endoftext|>"], eos="<|endoftext|>")
    with pytest.raises(ValueError, match=r"<\|im_start\|> and <\|im_end\|>.*smol_chat_template: keep"):
        apply_smollm3_template(tokenizer)


NO_MARKERS = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # a template TRL cannot make mask assistants


@pytest.mark.parametrize(
    ("template", "name", "model_type", "mode", "extra", "reason"),
    [
        (None, "any/model", "smollm3", "auto", {}, "SmolLM3 model whose tokenizer has no chat template"),
        (None, "any/model", "llama", "auto", {}, None),  # not a SmolLM3 model: TRL's behaviour, TRL's error
        (None, "my/SmolLM3-finetune", None, "auto", {}, "SmolLM3 model whose tokenizer has no chat template"),
        ("{{ x }}", "HuggingFaceTB/SmolLM3-3B-Base", "smollm3", "auto", {}, "SmolLM3 Base checkpoint"),
        ("{{ x }}", "HuggingFaceTB/SmolLM3-3B", "smollm3", "auto", {}, None),
        (None, "any/model", "smollm3", "auto", {"chat_template_path": "t.jinja"}, None),  # never over the user's
        ("{{ x }}", "HuggingFaceTB/SmolLM3-3B-Base", "smollm3", "auto", {"chat_template_path": "t.jinja"}, None),
        (
            NO_MARKERS, "my/model", "smollm3", "auto", {"assistant_only_loss": True},
            "its tokenizer's template cannot mark assistant turns, and assistant_only_loss is on",
        ),
        (NO_MARKERS, "my/model", "smollm3", "auto", {}, None),
        (NO_MARKERS, "my/model", "llama", "auto", {"assistant_only_loss": True}, None),
        ("{{ x }}", "other/model", "llama", "smollm3", {}, "smol_chat_template=smollm3"),
        (None, "HuggingFaceTB/SmolLM3-3B-Base", "smollm3", "keep", {}, None),
    ],
)  # fmt: skip
def test_when_the_template_is_applied(template, name, model_type, mode, extra, reason):
    tokenizer = tiny_smollm3_tokenizer(template)
    assert smollm3_template_reason(tokenizer, name, mode, model_type=model_type, **extra) == reason


def test_smollm3_template_and_chat_template_path_together_are_an_error():
    with pytest.raises(ValueError, match=r"`smol_chat_template: smollm3` and `chat_template_path: t.jinja`"):
        smollm3_template_reason(tiny_smollm3_tokenizer(), "m", "smollm3", chat_template_path="t.jinja")
