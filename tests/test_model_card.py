"""The model card's samples: the first and the last sample pass side by side, per prompt, with pass or fail and the
pass rates when the prompts carry checks. The `samples.jsonl` files are written by hand as the samples callback writes
them; the whole card from a real run is tested in tests/test_demo.py."""

from sample_rows import sample_row, write_samples

from trl_smol.model_card import samples_section
from trl_smol.samples.scores import pass_scores


def test_first_and_last_pass_side_by_side_with_pass_or_fail_and_the_pass_rates(tmp_path):
    rows = [
        sample_row(0, "What is 7 plus 5?", "Twelve, I think.", checks={"regex": False, "stops": True}),
        sample_row(0, "Name a colour.", "🟢 Answer: red", checks={"regex": True, "stops": True}),
        sample_row(10, "What is 7 plus 5?", "🟢 Answer: 13", checks={"regex": True, "stops": False}),
        sample_row(10, "Name a colour.", "🟢 Answer: red", checks={"regex": True, "stops": True}),
        sample_row(30, "What is 7 plus 5?", "🟢 Answer: 12", checks={"regex": True, "stops": True}),
        sample_row(30, "Name a colour.", "🟢 Answer: blue", checks={"regex": True, "stops": True}),
    ]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "## Samples: step 0 and step 30 side by side" in lines  # the passes between are in samples.jsonl
    assert "Pass rate: 50% (1 of 2) at step 0, 100% (2 of 2) at step 30." in lines
    assert "- `regex`: 50% → 100%" in lines and "- `stops`: 100% → 100%" in lines
    assert "| prompt | step 0 | result | step 30 | result |" in lines
    assert "| What is 7 plus 5? | Twelve, I think. | fail: regex | 🟢 Answer: 12 | pass |" in lines
    assert "| Name a colour. | 🟢 Answer: red | pass | 🟢 Answer: blue | pass |" in lines
    assert not any("13" in line for line in lines)


def test_without_checks_the_answers_are_shown_unscored(tmp_path):
    rows = [sample_row(0, "Hi?", "Hello there, how", checks={}), sample_row(30, "Hi?", "🟢 Answer: hello", checks={})]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "The sample prompts carry no `checks`: the answers are shown unscored." in lines
    assert "| prompt | step 0 | step 30 |" in lines
    assert "| Hi? | Hello there, how | 🟢 Answer: hello |" in lines
    assert not any(line.startswith("Pass rate") for line in lines)


def test_a_single_pass_is_shown_alone(tmp_path):
    rows = [sample_row(30, "Hi?", "🟢 Answer: hello", checks={"stops": True})]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "## Samples (step 30)" in lines
    assert "Pass rate: 100% (1 of 1) at step 30." in lines
    assert "| prompt | step 30 | result |" in lines and "| Hi? | 🟢 Answer: hello | pass |" in lines


def test_a_failed_score_is_named_with_its_value(tmp_path):
    rows = [
        sample_row(0, "Q?", "a", checks={"similarity": 0.31, "stops": True}),
        sample_row(5, "Q?", "b", checks={"similarity": 0.5, "stops": True}),
    ]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "| Q? | a | fail: similarity 0.31 | b | pass |" in lines
    assert "- `similarity`: 31% → 50%" in lines


def test_answers_are_one_table_cell_each_thinking_included_and_long_ones_cut(tmp_path):
    long_answer = "x" * 400
    rows = [
        sample_row(0, "Why?", "a | b\nc", thinking="Because.", checks={"think": True}),
        sample_row(0, "Long?", long_answer, checks={"think": False}),
        sample_row(9, "Why?", "ok", checks={"think": True}),
        sample_row(9, "Long?", "ok", checks={"think": True}),
    ]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "| Why? | &lt;think&gt;<br>Because.<br>&lt;/think&gt;<br>a \\| b<br>c | pass | ok | pass |" in lines
    assert f"| Long? | {'x' * 300}… | fail: think | ok | pass |" in lines
    assert "Answers are cut at 300 characters; every pass in full is in `samples.jsonl`." in lines


def test_a_budgeted_run_compares_the_prompts_both_passes_answered_and_shows_the_first_twenty(tmp_path):
    # sample_budget: one batch (2 prompts) at step 0, every one of the 30 prompts after the last step.
    rows = [sample_row(0, f"Q{i}?", "no", checks={"regex": False}) for i in range(2)]
    rows += [sample_row(30, f"Q{i}?", "🟢 Answer: 1", checks={"regex": i % 3 != 2}) for i in range(30)]
    lines = samples_section(write_samples(tmp_path, rows))
    assert "Pass rate: 0% (0 of 2) at step 0, 67% (20 of 30) at step 30." in lines
    assert "Over the first 2 prompts, which both passes answered: 0% (0 of 2) → 100% (2 of 2)." in lines
    table = [line for line in lines if line.startswith("| Q")]
    assert len(table) == 20 and table[2] == "| Q2? | - | - | 🟢 Answer: 1 | fail: regex |"
    assert "The first 20 of 30 prompts are shown; answers are cut at 300 characters; every pass in full is in " \
        "`samples.jsonl`." in lines  # fmt: skip


def test_a_line_being_written_is_skipped_and_no_file_means_no_section(tmp_path):
    assert samples_section(tmp_path) == []
    rows = [sample_row(0, "Hi?", "hello", checks={"stops": True})]
    lines = samples_section(write_samples(tmp_path, rows, tail='{"step": 4, "prompt": "Hi?", "compl'))
    assert "## Samples (step 0)" in lines


def test_pass_scores_are_the_logged_figures_of_one_pass():
    rows = [
        sample_row(0, "a", "x", checks={"regex": True, "similarity": 0.75}),
        sample_row(0, "b", "x", checks={"regex": False, "similarity": 0.5}, stopped=False),
        sample_row(0, "c", "x", checks={"similarity": 0.25}),
        sample_row(0, "d", "x", checks={}),  # no checks: not scored, and not in any check's mean
    ]
    scores = pass_scores(rows)
    assert (scores.samples, scores.scored, scores.passed) == (4, 3, 1)
    assert scores.pass_rate == 1 / 3
    assert scores.checks == {"regex": 0.5, "similarity": 0.5}
    assert scores.stopped == 0.75 and scores.mean_new_tokens == 8
    assert scores.metrics() == {"pass_rate": 1 / 3, "regex": 0.5, "similarity": 0.5}  # what the trackers log
    unscored = pass_scores([sample_row(0, "d", "x", checks={})])
    assert unscored.pass_rate is None and unscored.metrics() == {}


def test_a_check_value_that_is_no_result_is_in_no_mean():
    """A hand-edited file: a check's value that is neither true/false nor a score, or `checks` that is no object."""
    rows = [
        sample_row(0, "a", "x", checks={"regex": True}),
        {**sample_row(0, "b", "x", checks={"regex": False}), "checks": {"regex": None, "judge": "high"}},
        {**sample_row(0, "c", "x"), "checks": ["regex"], "passed": None},
    ]
    scores = pass_scores(rows)
    assert scores.checks == {"regex": 1.0} and (scores.scored, scores.passed) == (2, 1)
