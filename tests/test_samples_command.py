"""`trl-smol samples OUTPUT_DIR [OUTPUT_DIR2]`: a table of pass rates per sample pass, read from `samples.jsonl`.

The files here are written by hand as the samples callback writes them: one row per prompt and step, with `checks`
(check name -> true, false or a score in [0, 1]) and `passed` (null when the row has no checks).
"""

import json
import logging

import pytest
from sample_rows import sample_row
from sample_rows import write_samples as write_run

from trl_smol import commands as cli


def checked_run(folder, passes=(0, 10, 20)):
    """Four prompts per pass; at step 0 one passes both checks, from step 10 on all four pass `regex`."""
    rows = []
    for step in passes:
        for index in range(4):
            regex = step > 0 or index == 0
            stops = step == 20 or index < 2
            score = 0.25 * index if step == 0 else 1.0
            checks = {"regex": regex, "stops": stops, "similarity": score}
            rows.append(sample_row(step, f"Question {index}?", checks=checks, stopped=stops, tokens=4 + index))
    return write_run(folder, rows)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "320")  # no wrapped cells in what the tests read


def table_line(out, step):
    """The cells of the table row of `step`."""
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == str(step):
            return line
    raise AssertionError(f"no row for step {step} in:\n{out}")


def test_a_run_with_checks_shows_the_pass_rate_and_each_check_per_step(tmp_path, capsys):
    run = checked_run(tmp_path / "run")
    assert cli.main(["samples", str(run)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "pass rate" in line)
    for column in ("step", "samples", "regex", "stops", "similarity", "stopped", "new tokens"):
        assert column in header
    # step 0: only prompt 0 passes everything (similarity 0.0 fails it, so none pass); regex 1/4; stops 2/4
    assert table_line(out, 0).split() == ["0", "4", "0%", "(0/4)", "25%", "50%", "38%", "50%", "5.5"]
    assert table_line(out, 10).split() == ["10", "4", "50%", "(2/4)", "100%", "50%", "100%", "50%", "5.5"]
    assert table_line(out, 20).split() == ["20", "4", "100%", "(4/4)", "100%", "100%", "100%", "100%", "5.5"]
    assert "no checks" not in out and "skipped" not in out


def test_a_run_without_checks_says_so_and_still_counts_the_samples(tmp_path, capsys):
    rows = [sample_row(0, "Hi?", stopped=False, tokens=40), sample_row(0, "Yo?", tokens=10)]
    rows += [sample_row(30, "Hi?", tokens=8), sample_row(30, "Yo?", tokens=6)]
    run = write_run(tmp_path / "run", rows)
    assert cli.main(["samples", str(run)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "samples" in line.split())
    assert header.split() == ["step", "samples", "stopped", "new", "tokens"]
    assert table_line(out, 0).split() == ["0", "2", "50%", "25.0"]  # samples, stopped, mean new tokens
    assert table_line(out, 30).split() == ["30", "2", "100%", "7.0"]
    notes = [line for line in out.splitlines() if "no checks" in line]
    assert len(notes) == 1 and "`checks`" in notes[0] and str(run / "samples.jsonl") in notes[0]


def test_rows_with_passed_null_count_as_unscored(tmp_path, capsys):
    rows = [{**sample_row(0, "Hi?"), "checks": {}, "passed": None}]
    run = write_run(tmp_path / "run", rows)
    assert cli.main(["samples", str(run)]) == 0
    out = capsys.readouterr().out
    assert "pass rate" not in next(line for line in out.splitlines() if "samples" in line.split())
    assert "no checks, so no pass rates" in out


def test_a_run_in_progress_skips_the_half_written_line_and_leaves_the_file_alone(tmp_path, capsys):
    run = checked_run(tmp_path / "run", passes=(0, 10))
    half = json.dumps(sample_row(20, "Question 0?", checks={"regex": True}))[:37]  # the writer is mid-line
    path = run / "samples.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + half, encoding="utf-8")
    before = path.read_bytes()
    assert cli.main(["samples", str(run)]) == 0
    out = capsys.readouterr().out
    assert table_line(out, 10)
    assert not any(line.split()[:1] == ["20"] for line in out.splitlines())
    assert "1 line is not a sample row (a pass being written, or cut short): skipped (line 9)." in out
    assert path.read_bytes() == before  # the training process's file is never written to


def test_the_reader_skips_bad_lines_by_number_and_repairs_only_when_resuming(tmp_path, caplog):
    """`read_samples`, the one reader of `samples.jsonl`: read only by default (the card, this command), a resumed
    run ends a line cut short so that its next row starts on a line of its own."""
    from trl_smol.samples.outputs import read_samples

    rows = [sample_row(0, "Hi?"), sample_row(0, "Yo?", "one\u2028two"), sample_row(2, "Hi?")]  # U+2028: no line end
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    text = "\n".join([lines[0], "not json", "", lines[1], '{"prompt": "no step"}', lines[2], '{"step": 4, "pro'])
    path = write_run(tmp_path / "run", [], tail=text) / "samples.jsonl"
    before = path.read_bytes()

    with caplog.at_level(logging.WARNING):
        samples = read_samples(path)
    assert samples.rows == rows and samples.skipped == [2, 5, 7] and samples.steps == {0, 2}
    assert list(samples.passes) == [0, 2] and samples.passes[0] == rows[:2]
    assert path.read_bytes() == before and "not a sample row" not in caplog.text

    with caplog.at_level(logging.WARNING):
        assert read_samples(path, repair=True).skipped == [2, 5, 7]
    assert path.read_bytes() == before + b"\n"
    assert f"{path}:7 is not a sample row" in caplog.text
    assert read_samples(path, repair=True).rows == rows and path.read_bytes() == before + b"\n"  # once


def test_two_runs_side_by_side_at_the_same_steps_with_the_difference(tmp_path, capsys):
    first = checked_run(tmp_path / "a", passes=(0, 10, 20))
    second_rows = []
    for step in (0, 10):
        for index in range(4):
            checks = {"regex": True, "stops": index < 3, "similarity": 1.0}
            second_rows.append(sample_row(step, f"Question {index}?", checks=checks, tokens=3))
    second = write_run(tmp_path / "b", second_rows)
    assert cli.main(["samples", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"A = {first / 'samples.jsonl'}" in out and f"B = {second / 'samples.jsonl'}" in out
    assert "each cell A → B (B - A)" in out
    header = next(line for line in out.splitlines() if "samples" in line.split())
    assert header.split() == [
        "step",
        "samples",
        "pass",
        "rate",
        "regex",
        "stops",
        "similarity",
        "stopped",
        "new",
        "tokens",
    ]
    row = table_line(out, 0)
    cells = ["4 → 4", "0% → 75% (+75 pt)", "25% → 100% (+75 pt)", "50% → 75% (+25 pt)", "38% → 100% (+62 pt)"]
    cells += ["50% → 100% (+50 pt)", "5.5 → 3.0 (-2.5)"]
    assert [cell in row for cell in cells] == [True] * len(cells) and row.index(cells[0]) < row.index(cells[-1])
    # step 20 is in the first run only: no second figure, no difference
    assert "100% → -" in table_line(out, 20) and "pt" not in table_line(out, 20)


def test_a_missing_dir_is_one_line_naming_it(tmp_path, capsys):
    assert cli.main(["samples", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"trl-smol samples: {tmp_path / 'nowhere'}: no such directory."


def test_a_run_without_samples_says_they_were_off_and_how_to_turn_them_on(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert cli.main(["samples", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "has no samples.jsonl: the run had sample generation off" in err[0] and "`sample_prompts`" in err[0]


def test_a_run_before_its_first_pass_ends_says_it_has_no_rows_yet(tmp_path, capsys):
    run = write_run(tmp_path / "run", [], tail='{"run": "x", "step": 0, "prom')
    assert cli.main(["samples", str(run)]) == 1
    assert "has no sample rows yet" in capsys.readouterr().err


def test_the_samples_file_itself_can_be_given(tmp_path, capsys):
    run = checked_run(tmp_path / "run", passes=(0,))
    assert cli.main(["samples", str(run / "samples.jsonl")]) == 0
    assert table_line(capsys.readouterr().out, 0)


def test_trl_smol_help_lists_the_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "samples" in capsys.readouterr().out
