"""Checks on sample prompts: each built-in check on completions in SmolLM3's format (as the chat template writes an
assistant turn, then decoded as a sample pass decodes it), malformed ones included; user checks from the
`trl_smol.sample_checks` entry points; the errors before training that name the file and row."""

import json
import sys
from pathlib import Path

import pytest

from trl_smol.samples import SampleGenerator, SamplePromptError, load_prompts, summarize
from trl_smol.samples.generation import _stop_token_ids
from trl_smol.samples.scores import pass_scores
from trl_smol.templating import SMOLLM3_CHAT_TEMPLATE

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def written_by_template(tokenizer, assistant: dict, enable_thinking: bool) -> str:
    """The assistant turn as SmolLM3's template writes it after the generation prompt: what a model trained on it
    generates, up to `<|im_end|>`."""
    kwargs = dict(tokenize=False, chat_template=SMOLLM3_CHAT_TEMPLATE, enable_thinking=enable_thinking)
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, **kwargs)
    full = tokenizer.apply_chat_template([*QUESTION, {"role": "assistant", **assistant}], **kwargs)
    assert full.startswith(prompt)
    return full[len(prompt) :].removesuffix("<|im_end|>\n")


def scored(tokenizer, text: str, checks: list, *, enable_thinking: bool = False, stopped: bool = True) -> dict:
    """The sample row of a generation that produced `text` (then `<|im_end|>` when `stopped`): encoded with the
    tokenizer, decoded and split into answer and thinking by the sample pass's own code, then scored."""
    row = {"messages": QUESTION, "chat_template_kwargs": {"enable_thinking": enable_thinking}, "checks": checks}
    prompt = load_prompts([row])[0]
    generator = SampleGenerator([prompt], max_new_tokens=64)
    stop_ids = _stop_token_ids(tokenizer)
    new_ids = tokenizer(text, add_special_tokens=False)["input_ids"] + ([stop_ids[0]] if stopped else [])
    return generator._row(tokenizer, 0, prompt, new_ids, stop_ids, step=3, seconds=0.0)


def result(tokenizer, text: str, check, **kwargs):
    row = scored(tokenizer, text, [check], **kwargs)
    return next(iter(row["checks"].values()))


# --- think -------------------------------------------------------------------------------------------------------


def test_think_mode_needs_a_closed_non_empty_block_then_an_answer(tiny_tokenizer):
    reasoned = written_by_template(
        tiny_tokenizer, {"content": "It is sunny.", "reasoning_content": "I know Paris today."}, enable_thinking=True
    )
    assert reasoned == "<think>\nI know Paris today.\n</think>\nIt is sunny."
    assert result(tiny_tokenizer, reasoned, "think", enable_thinking=True) is True
    # Cut at the token limit while thinking: never closed, no answer.
    assert result(tiny_tokenizer, "<think>\nI know Paris", "think", enable_thinking=True, stopped=False) is False
    assert result(tiny_tokenizer, "<think>\n\n</think>\nIt is sunny.", "think", enable_thinking=True) is False  # empty
    assert result(tiny_tokenizer, "It is sunny.", "think", enable_thinking=True) is False  # no block
    assert result(tiny_tokenizer, "<think>\nHm.\n</think>\n", "think", enable_thinking=True) is False  # no answer
    twice = "<think>\nHm.\n</think>\nIt is <think>sunny</think>."
    assert result(tiny_tokenizer, twice, "think", enable_thinking=True) is False


def test_no_think_mode_wants_the_answer_without_reasoning(tiny_tokenizer):
    # The template writes the empty block into the generation prompt: the completion is the answer alone.
    answer = written_by_template(tiny_tokenizer, {"content": "It is sunny."}, enable_thinking=False)
    assert answer == "It is sunny."
    assert result(tiny_tokenizer, answer, "think") is True
    assert result(tiny_tokenizer, "<think>\n\n</think>\nIt is sunny.", "think") is True  # the empty block again
    assert result(tiny_tokenizer, "<think>\nLet me see.\n</think>\nIt is sunny.", "think") is False
    assert result(tiny_tokenizer, "It is sunny. <think>", "think") is False


def test_a_think_flag_in_the_system_prompt_sets_the_mode_as_the_template_does(tiny_tokenizer):
    row = {
        "messages": [{"role": "system", "content": "Be brief. /think"}, *QUESTION],
        "chat_template_kwargs": {"enable_thinking": False},
        "checks": ["think"],
    }
    prompt = load_prompts([row])[0]
    stop_ids = _stop_token_ids(tiny_tokenizer)
    ids = tiny_tokenizer("<think>\nHm.\n</think>\nSunny.", add_special_tokens=False)["input_ids"] + stop_ids[:1]
    sample = SampleGenerator([prompt])._row(tiny_tokenizer, 0, prompt, ids, stop_ids, 0, 0.0)
    assert sample["enable_thinking"] is True and sample["checks"] == {"think": True}


# --- stops -------------------------------------------------------------------------------------------------------


def test_stops_is_whether_the_model_ended_with_its_stop_token(tiny_tokenizer):
    assert result(tiny_tokenizer, "It is sunny.", "stops") is True
    assert result(tiny_tokenizer, "It is sunny and the sun", "stops", stopped=False) is False


# --- tool_call ---------------------------------------------------------------------------------------------------


def test_tool_call_as_the_template_writes_it(tiny_tokenizer):
    call = written_by_template(tiny_tokenizer, {"content": "", "tool_calls": [WEATHER_CALL]}, enable_thinking=False)
    assert call == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert result(tiny_tokenizer, call, {"name": "tool_call", "tool": "get_weather"}) is True
    exact = {"name": "tool_call", "tool": "get_weather", "arguments": {"city": "Paris"}}
    assert result(tiny_tokenizer, call, exact) is True
    # After some text, and after reasoning in think mode.
    both = written_by_template(
        tiny_tokenizer,
        {"content": "Let me check.", "reasoning_content": "A tool knows.", "tool_calls": [WEATHER_CALL]},
        enable_thinking=True,
    )
    assert result(tiny_tokenizer, both, exact, enable_thinking=True) is True


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>',  # broken JSON
        '<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}\n</tool_call>',  # wrong tool
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',  # wrong arguments
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',  # cut at the token limit
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',  # not in SmolLM3's tags
        '<tool_call>\n{"arguments": {"city": "Paris"}}\n</tool_call>',  # no name
        '<think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n</think>\nOk.',
    ],
    ids=["broken-json", "wrong-tool", "wrong-arguments", "cut-off", "no-tags", "no-name", "only-in-thinking"],
)
def test_tool_call_fails_on_malformed_or_wrong_calls(tiny_tokenizer, text):
    check = {"name": "tool_call", "tool": "get_weather", "arguments": {"city": "Paris"}}
    assert result(tiny_tokenizer, text, check, enable_thinking=True) is False


def test_tool_call_accepts_arguments_written_as_a_json_string(tiny_tokenizer):
    text = '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n</tool_call>'
    check = {"name": "tool_call", "tool": "get_weather", "arguments": {"city": "Paris"}}
    assert result(tiny_tokenizer, text, check) is True


# --- json --------------------------------------------------------------------------------------------------------

CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
}


def test_json_parses_and_validates_against_the_schema(tiny_tokenizer):
    answer = '{"city": "Paris", "temp_c": 21}'
    assert result(tiny_tokenizer, answer, "json") is True
    assert result(tiny_tokenizer, answer, {"name": "json", "schema": CITY_SCHEMA}) is True
    fenced = '```json\n{"city": "Paris", "temp_c": 21}\n```'
    assert result(tiny_tokenizer, fenced, {"name": "json", "schema": CITY_SCHEMA}) is True
    reasoned = '<think>\nParis is warm.\n</think>\n{"city": "Paris", "temp_c": 21}'
    assert result(tiny_tokenizer, reasoned, {"name": "json", "schema": CITY_SCHEMA}, enable_thinking=True) is True


@pytest.mark.parametrize(
    "text",
    [
        '{"city": "Paris", "temp_c": 21',  # cut at the token limit
        '{"city": "Paris"}',  # misses a required key
        '{"city": "Paris", "temp_c": "warm"}',  # wrong type
        'The weather: {"city": "Paris", "temp_c": 21}',  # text around it
    ],
)
def test_json_fails_on_malformed_or_invalid_answers(tiny_tokenizer, text):
    assert result(tiny_tokenizer, text, {"name": "json", "schema": CITY_SCHEMA}, stopped=False) is False


# --- expected, regex, startswith ---------------------------------------------------------------------------------


def test_expected_exact_and_normalised(tiny_tokenizer):
    assert result(tiny_tokenizer, "12", {"name": "expected", "value": 12}) is True
    assert result(tiny_tokenizer, "The answer is 12.", {"name": "expected", "value": "12"}) is False
    loose = {"name": "expected", "value": "the answer is 12", "normalize": True}
    assert result(tiny_tokenizer, "The  Answer is: 12!", loose) is True
    assert result(tiny_tokenizer, "The answer is 13.", loose) is False
    reasoned = "<think>\n7 + 5 = 12\n</think>\n12"  # the reference is the answer, not the reasoning
    assert result(tiny_tokenizer, reasoned, {"name": "expected", "value": "12"}, enable_thinking=True) is True


def test_regex_and_startswith_check_the_answer_format(tiny_tokenizer):
    demo_format = {"name": "regex", "pattern": "^🟢 Answer: \\S.*$"}
    assert result(tiny_tokenizer, "🟢 Answer: 12", demo_format) is True
    assert result(tiny_tokenizer, "<think>\n7+5\n</think>\n🟢 Answer: 12", demo_format, enable_thinking=True) is True
    assert result(tiny_tokenizer, "🟢 Answer: 12\n🟢 Answer: 12", demo_format) is False  # a second line
    assert result(tiny_tokenizer, "The answer is 12.", demo_format) is False
    assert result(tiny_tokenizer, "The answer is 12.", {"name": "startswith", "prefix": "The answer"}) is True
    assert result(tiny_tokenizer, "Answer: 12", {"name": "startswith", "prefix": "The answer"}) is False


# --- several checks, results, summary ----------------------------------------------------------------------------


def test_a_row_carries_each_result_and_passes_when_all_pass(tiny_tokenizer):
    checks = ["stops", {"name": "regex", "pattern": "^\\d+$"}, {"name": "regex", "pattern": "2$"}]
    row = scored(tiny_tokenizer, "12", checks)
    assert row["checks"] == {"stops": True, "regex": True, "regex#2": True} and row["passed"] is True
    row = scored(tiny_tokenizer, "13", checks, stopped=False)
    assert row["checks"] == {"stops": False, "regex": True, "regex#2": False} and row["passed"] is False
    assert scored(tiny_tokenizer, "13", [])["checks"] == {} and scored(tiny_tokenizer, "13", [])["passed"] is None


def test_recipe_checks_apply_to_every_prompt_after_its_own_and_once():
    prompts = load_prompts(
        ["Hi", {"prompt": "What is 2+2?", "checks": ["stops", {"name": "expected", "value": "4"}]}],
        checks=["stops", "think"],
    )
    assert [list(prompt.checks) for prompt in prompts] == [["stops", "think"], ["stops", "expected", "think"]]


def test_summary_is_the_pass_rate_and_each_checks_mean_over_the_rows_that_carry_it():
    rows = [
        {"checks": {"stops": True, "judge": 0.75}, "passed": True},
        {"checks": {"stops": False, "judge": 0.25}, "passed": False},
        {"checks": {"stops": True}, "passed": True},
        {"checks": {}, "passed": None},  # no checks: not scored
    ]
    assert summarize(rows) == {"pass_rate": 2 / 3, "stops": 2 / 3, "judge": 0.5}
    assert summarize(rows) == pass_scores(rows).metrics()  # one definition: the card's and the command's figures
    assert summarize([{"checks": {}, "passed": None}]) == {}


# --- user checks from entry points -------------------------------------------------------------------------------

USER_CHECKS = """
def mentions(prompt_row, completion, word="Paris"):
    return word.lower() in completion.lower()


def length_score(prompt_row, completion, *, target):
    return min(1.0, len(completion) / target)


def broken(prompt_row, completion):
    raise RuntimeError("the judge is down")


def says_the_prompt(prompt_row, completion):
    return prompt_row["messages"][-1]["content"] in completion
"""


@pytest.fixture
def installed_user_checks(tmp_path, monkeypatch):
    """A package that registers checks: a module and a .dist-info with `trl_smol.sample_checks` entry points."""
    (tmp_path / "my_checks.py").write_text(USER_CHECKS)
    info = tmp_path / "my_checks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-checks\nVersion: 0.1\n")
    names = ["mentions", "length_score", "broken", "says_the_prompt"]
    entries = "".join(f"{name} = my_checks:{name}\n" for name in names)
    (info / "entry_points.txt").write_text(f"[trl_smol.sample_checks]\n{entries}pass_rate = my_checks:mentions\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_checks", None)


def test_user_checks_get_the_prompt_row_the_answer_and_their_keys(tiny_tokenizer, installed_user_checks):
    checks = ["mentions", {"name": "length_score", "target": 40}, "says_the_prompt"]
    row = scored(tiny_tokenizer, "<think>\nHm.\n</think>\nSunny in Paris.", checks, enable_thinking=True)
    assert row["checks"] == {"mentions": True, "length_score": len("Sunny in Paris.") / 40, "says_the_prompt": False}
    assert row["passed"] is False  # a score under 0.5 fails
    long_answer = "Sunny in Paris, 21 degrees, light wind."
    assert scored(tiny_tokenizer, long_answer, checks[:2])["passed"] is True  # 39/40 >= 0.5


def test_a_user_check_that_raises_fails_with_an_error_and_the_pass_goes_on(
    tiny_tokenizer, installed_user_checks, caplog
):
    with caplog.at_level("ERROR"):
        row = scored(tiny_tokenizer, "Sunny.", ["broken", "stops"])
    assert row["checks"] == {"broken": False, "stops": True} and row["passed"] is False
    assert "Sample check `broken` on sample_prompts[0] at step 3 failed, counted as failed" in caplog.text
    assert "the judge is down" in caplog.text


# --- errors before training --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "checks, message",
    [
        (["regexp"], "unknown check `regexp`. Did you mean `regex`? Built-in: expected, json, regex, startswith, "),
        ([{"name": "regex"}], "checks[0]: check `regex` needs `pattern`, a non-empty string"),
        (["stops", {"name": "regex", "pattern": "(unclosed"}], "checks[1]: check `regex`: `pattern` '(unclosed' is"),
        ([{"name": "expected"}], "check `expected` needs `value`, the reference answer"),
        ([{"name": "startswith", "prefix": ""}], "check `startswith` needs `prefix`, a non-empty string"),
        ([{"name": "tool_call"}], "check `tool_call` needs `tool`, a non-empty string"),
        ([{"name": "tool_call", "tool": "f", "arguments": "x=1"}], "`arguments` is an object of argument values"),
        ([{"name": "json", "schema": {"type": "objekt"}}], "check `json`: `schema` is not a valid JSON schema (at "),
        ([{"name": "json", "schema": {"required": "city"}}], "`schema` is not a valid JSON schema"),
        ([{"name": "stops", "within": 3}], "check `stops` takes no other keys; unknown: within."),
        ([{"pattern": "x"}], "checks[0]: a check is a name or an object with `name`"),
        ("stops, think", "unknown check `stops, think`"),
    ],
)
def test_a_bad_check_names_the_file_and_line(tmp_path, checks, message):
    path = tmp_path / "prompts.jsonl"
    good = {"prompt": "Hi", "checks": ["stops"]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"prompt": "What is 7 plus 5?", "checks": checks}) + "\n")
    with pytest.raises(SamplePromptError) as error:
        load_prompts(str(path))
    assert str(error.value).startswith(f"{path}:3: ") and message in str(error.value), str(error.value)


def test_a_bad_inline_prompt_or_recipe_check_names_its_position():
    with pytest.raises(SamplePromptError, match=r"^sample_prompts\[1\]: checks\[0\]: unknown check `stop`"):
        load_prompts(["Hi", {"prompt": "Hello", "checks": ["stop"]}])
    with pytest.raises(SamplePromptError, match=r"^sample_checks\[1\]: check `regex` needs `pattern`"):
        load_prompts(["Hi"], checks=["stops", {"name": "regex"}])


def test_user_check_errors_name_the_check_and_what_it_takes(installed_user_checks):
    with pytest.raises(SamplePromptError, match=r"check `length_score` \(my_checks:length_score\) is called as .*"):
        load_prompts([{"prompt": "Hi", "checks": ["length_score"]}])  # misses its `target`
    with pytest.raises(SamplePromptError, match=r"unexpected keyword argument 'colour'"):
        load_prompts([{"prompt": "Hi", "checks": [{"name": "mentions", "colour": "red"}]}])
    with pytest.raises(SamplePromptError, match=r"check `pass_rate` .* shares its name with a metric"):
        load_prompts([{"prompt": "Hi", "checks": ["pass_rate"]}])
    with pytest.raises(SamplePromptError, match=r"installed: broken, length_score, mentions, pass_rate, says_the"):
        load_prompts([{"prompt": "Hi", "checks": ["mention_paris"]}])


def test_demo_prompts_carry_the_format_check():
    prompts = load_prompts(str(Path(__file__).parents[1] / "recipes" / "prompts" / "smollm3_demo.jsonl"))
    assert all("regex" in prompt.checks for prompt in prompts)


# --- a held-out dataset split as the prompts -----------------------------------------------------------------------


def test_a_dataset_split_gives_one_prompt_per_row_with_its_checks(tiny_tokenizer):
    from datasets import Dataset

    heldout = Dataset.from_list(
        [
            {
                "messages": [{"role": "user", "content": "What is 7 plus 5?"}],
                "chat_template_kwargs": {"enable_thinking": False},
                "checks": [{"name": "expected", "value": "12", "normalize": True}, {"name": "stops"}],
                "source": "heldout",
            },
            {
                "messages": [{"role": "user", "content": "Weather in Paris?"}],
                "chat_template_kwargs": {"enable_thinking": True},
                "checks": [{"name": "tool_call", "tool": "get_weather"}],
                "source": "heldout",
            },
        ]
    )
    # Arrow gives every check object the keys of all of them (None where a row lacks one): dropped again here.
    assert heldout[0]["checks"][1] == {"name": "stops", "value": None, "normalize": None, "tool": None}
    prompts = load_prompts(heldout, checks=[{"name": "think"}])
    assert [prompt.source for prompt in prompts] == ["dataset row 1", "dataset row 2"]
    assert [list(prompt.checks) for prompt in prompts] == [["expected", "stops", "think"], ["tool_call", "think"]]
    assert prompts[1].chat_template_kwargs == {"enable_thinking": True}
    with pytest.raises(SamplePromptError, match=r"^dataset row 1: checks\[0\]: unknown check `stop`"):
        load_prompts(Dataset.from_list([{"prompt": "Hi", "checks": [{"name": "stop"}]}]))
