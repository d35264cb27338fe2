"""The pure parts of the benchmark suite (tests/benchmarks): targets, log parsing, recipes, MFU math and reports.

The benchmarks themselves are not collected (no `test_` prefix); these checks keep their arithmetic and bookkeeping
honest without training anything.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))

import bench_data  # noqa: E402
import benchlib  # noqa: E402
import gpu_bench  # noqa: E402
import run_all  # noqa: E402
from bench_overhead import interleaved, max_loss_difference  # noqa: E402


@pytest.mark.parametrize(
    ("value", "target", "holds"),
    [
        (0.98, ">= 0.98", True),
        (0.979, ">= 0.98", False),
        (0.05, "<= 0.05", True),
        (0.051, "<= 0.05", False),
        (1.2, "0.75..1.25", True),
        (0.7, "0.75..1.25", False),
        (1.01, "> 1.0", True),
        (1.0, "> 1.0", False),
        (1.0, None, None),
    ],
)
def test_a_figure_holds_when_its_value_meets_the_target(value, target, holds):
    assert benchlib.check_target(value, target) is holds
    assert benchlib.figure("x", value, target)["holds"] is holds


def test_an_unreadable_target_is_an_error():
    with pytest.raises(ValueError, match="Unknown target"):
        benchlib.check_target(1.0, "about 1")


def test_transformers_metrics_lines_are_parsed_and_other_lines_ignored():
    line = "{'train_runtime': '118.8', 'train_samples_per_second': '0.202', 'epoch': '0.06667'}"
    assert benchlib.parse_log_line(line) == {
        "train_runtime": 118.8,
        "train_samples_per_second": 0.202,
        "epoch": 0.06667,
    }
    assert benchlib.parse_log_line("trl-smol 0.1.0 active (trl sft): no features enabled") is None
    assert benchlib.parse_log_line("{not a dict}") is None


def test_a_run_reports_tokens_per_second_and_the_time_a_user_waits():
    run = benchlib.RunResult(label="a", returncode=0, wall_seconds=90, train_runtime=50, num_tokens=1000)
    run.end_seconds = 5
    assert run.tokens_per_second == 20
    assert run.train_seconds == 55
    assert benchlib.RunResult(label="b", returncode=1, wall_seconds=1).tokens_per_second is None


def test_steady_throughput_leaves_out_everything_before_the_first_logged_step():
    run = benchlib.RunResult(label="a", returncode=0, wall_seconds=90, train_runtime=50, num_tokens=1000)
    run.token_marks = [(30.0, 200.0), (34.0, 400.0), (38.0, 600.0)]  # start-up and a slow first step before 30 s
    assert run.steady_tokens_per_second == 50  # (600 - 200) tokens over (38 - 30) s
    run.token_marks = run.token_marks[:1]
    assert run.steady_tokens_per_second is None  # one logged step: nothing to measure between


def run_result(label):
    return benchlib.RunResult(label=label, returncode=0, wall_seconds=60)


def test_each_step_counts_at_its_fastest_over_the_runs_of_an_arm():
    calm, disturbed = run_result("a"), run_result("b")
    calm.token_marks = [(10.0, 100.0), (12.0, 300.0), (16.0, 500.0)]  # steps 2 and 3: 2 s and 4 s
    disturbed.token_marks = [(11.0, 100.0), (17.0, 300.0), (19.0, 500.0)]  # step 2 slowed down to 6 s, step 3: 2 s
    assert benchlib.step_times(calm) == [(2.0, 200.0), (4.0, 200.0)]
    assert benchlib.best_step_tokens_per_second([calm, disturbed]) == 100  # 400 tokens over 2 s + 2 s


def test_each_batch_counts_at_its_fastest_over_the_rounds():
    rounds = [[3.0, 8.0, 2.0], [2.5, 9.0, 2.2]]  # two rounds over the same three batches
    assert benchlib.sum_of_fastest(rounds) == pytest.approx(2.5 + 8.0 + 2.0)


def test_runs_that_did_different_work_are_not_compared_step_by_step():
    first, other = run_result("a"), run_result("b")
    first.token_marks = [(10.0, 100.0), (12.0, 300.0)]
    other.token_marks = [(10.0, 100.0), (12.0, 350.0)]
    assert benchlib.best_step_tokens_per_second([first, other]) is None
    other.token_marks = other.token_marks[:1]
    assert benchlib.best_step_tokens_per_second([first, other]) is None


def test_runs_alternate_which_arm_goes_first():
    order = interleaved(4, ("A", "B"))
    assert order == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert order.count("A") == order.count("B") == 4


def test_loss_difference_compares_runs_step_by_step():
    assert max_loss_difference([1.0, 2.0], [1.0, 2.5]) == 0.5
    assert max_loss_difference([1.0], [1.0, 2.0]) is None  # different lengths: not comparable


def test_the_stock_recipe_drops_plugin_keys_and_uses_the_same_template_through_trl():
    recipe = benchlib.load_recipe(benchlib.DEMO_RECIPE)
    stock = benchlib.stock_recipe(recipe)
    plugin_keys = benchlib.plugin_only_keys()
    assert {"sample_prompts", "memory_preset", "smol_chat_template"} <= plugin_keys
    assert not plugin_keys & set(stock)
    assert Path(stock["chat_template_path"]).read_text() == benchlib.TEMPLATE_PATH.read_text()
    assert stock["eos_token"] == "<|im_end|>"
    assert stock["learning_rate"] == recipe["learning_rate"]


def test_pinning_the_date_keeps_each_rows_own_template_kwargs(tmp_path):
    source = tmp_path / "rows.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": False}},
        {"messages": [{"role": "user", "content": "yo"}]},
    ]
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    pinned = [json.loads(line) for line in benchlib.pin_today(source, tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["chat_template_kwargs"] for row in pinned] == [
        {"enable_thinking": False, "today": benchlib.BENCH_TODAY},
        {"today": benchlib.BENCH_TODAY},
    ]


def test_benchmark_conversations_are_deterministic_and_mix_both_reasoning_modes():
    first, second = bench_data.conversation_rows(60), bench_data.conversation_rows(60)
    assert first == second
    assert len(first) == 60
    modes = {row["chat_template_kwargs"].get("enable_thinking") for row in first}
    assert modes == {True, False}
    assert all(row["chat_template_kwargs"]["today"] == benchlib.BENCH_TODAY for row in first)
    assert all(any(message["role"] == "assistant" for message in row["messages"]) for row in first)


def test_the_data_benchmark_times_both_paths_to_identical_ids_and_labels():
    # Both trainers' `_prepare_dataset` on a model-less trainer object, as bench_data.py times them.
    from datasets import Dataset

    from trl_smol import SMOLLM3_CHAT_TEMPLATE
    from trl_smol.testing import tiny_smollm3_tokenizer

    tokenizer = tiny_smollm3_tokenizer(SMOLLM3_CHAT_TEMPLATE)
    dataset = Dataset.from_list(bench_data.conversation_rows(20))
    # num_proc=None: `datasets` maps with a process pool from num_proc=1 on, and then rebinds `os.environ` to a deep
    # copy in this process (datasets 5.2, arrow_dataset.py), which later tests' rich consoles would not read.
    _, stock = bench_data.prepare("stock", dataset, tokenizer, num_proc=None)
    _, plugin = bench_data.prepare("plugin", dataset, tokenizer, num_proc=None)
    assert len(plugin) == 20 and bench_data.same_output(stock, plugin, rows=20)


@pytest.mark.parametrize(
    ("name", "flops"),
    [
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756.0e12),
        ("NVIDIA A100-SXM4-80GB", 312.0e12),
        ("NVIDIA L4", 121.0e12),
        ("NVIDIA L40S", 362.05e12),
        ("Tesla T4", None),
    ],
)
def test_peak_flops_come_from_the_device_name(name, flops):
    assert gpu_bench.peak_bf16_flops(name) == flops


def test_mfu_is_six_n_tokens_per_second_over_the_peak():
    n, tokens_per_second, peak = 3_075_098_624, 20_000.0, 989.4e12
    mfu = gpu_bench.model_flops_utilization(n, tokens_per_second, peak)
    assert mfu == pytest.approx(6 * n * tokens_per_second / peak)
    assert 0.37 < mfu < 0.38
    assert gpu_bench.model_flops_utilization(n, tokens_per_second, None) is None


def test_throughput_counts_the_real_tokens_after_the_warmup_steps():
    # start at 0; steps end at 10 (slow first step), 11, 12, 13, each with TRL's num_tokens so far
    marks = [(0.0, 0.0), (10.0, 2048.0), (11.0, 3000.0), (12.0, 5048.0), (13.0, 6000.0)]
    assert gpu_bench.token_throughput(marks, warmup_steps=1) == pytest.approx((6000 - 2048) / 3)
    assert gpu_bench.token_throughput(marks, warmup_steps=0) == pytest.approx(6000 / 13)
    assert gpu_bench.token_throughput(marks, warmup_steps=4) is None


@pytest.mark.parametrize("arm", ["stock", "plugin"])
def test_a_gpu_case_runs_end_to_end_on_a_tiny_model_before_a_gpu_is_lent(tmp_path, arm):
    """The case code of gpu_bench.py, run on the CPU with a tiny SmolLM3: a mistake fails here, not on the lent GPU."""
    from trl_smol.testing import save_tiny_smollm3

    checkpoint = save_tiny_smollm3(tmp_path / "tiny", num_hidden_layers=4)
    result = gpu_bench.run_case(("lora", arm, "chat", 128), checkpoint, steps=3, warmup_steps=1, peak=None)
    assert (result["method"], result["arm"], result["rows"], result["max_length"]) == ("lora", arm, "chat", 128)
    assert result["tokens_per_second"] > 0 and len(result["tokens_at_steps"]) == 4
    assert result["estimated_bytes"] > 0 and result["measured_bytes"] > 0
    assert (result["banner"] is not None) is (arm == "plugin") and result["padding_free"] is (arm == "plugin")


def test_chat_rows_have_a_long_tail_within_the_length():
    lengths = gpu_bench.chat_lengths(2000, 2048)
    assert min(lengths) >= 64 and max(lengths) == 2048  # the tail reaches max_length and is cut there
    assert 400 < sorted(lengths)[1000] < 640  # median about 512
    assert gpu_bench.chat_lengths(10, 2048) == gpu_bench.chat_lengths(10, 2048)  # the same rows in both arms


def test_gpu_cases_stop_at_the_deadline():
    assert gpu_bench.case_timeout(0, 470, 180) == 180
    assert gpu_bench.case_timeout(400, 470, 180) == 70  # killed at the deadline
    assert gpu_bench.case_timeout(470 - gpu_bench.MIN_CASE_S + 1, 470, 180) is None  # too late to start one


def test_gpu_cases_are_parsed_with_a_clear_error():
    parser = gpu_bench.build_parser()
    args = parser.parse_args(["--cases", "qlora:stock", "full:plugin:chat", "lora:plugin:full:8192", "--steps", "4"])
    assert args.cases == [("qlora", "stock", "full", 2048), ("full", "plugin", "chat", 2048),
                          ("lora", "plugin", "full", 8192)]  # fmt: skip
    assert args.steps == 4
    assert parser.parse_args([]).cases is None
    cases = gpu_bench.default_cases()
    assert len(cases) == 14 and cases[:2] == [("lora", "stock", "chat", 2048), ("lora", "plugin", "chat", 2048)]
    assert gpu_bench.case_name(cases[-1]) == "lora:plugin:full:8192"
    for bad in ("dora:stock", "lora:plugin:short", "lora:plugin:full:long", "lora:plugin:full:2048:x"):
        with pytest.raises(Exception, match=f"unknown case '{bad}'"):
            gpu_bench.parse_case(bad)


def test_gpu_summary_compares_the_arms_and_the_estimate(tmp_path):
    def result(method, arm, tokens_per_second, measured, estimated):
        return {"method": method, "arm": arm, "tokens_per_second": tokens_per_second, "mfu": 0.4,
                "measured_bytes": measured, "estimated_bytes": estimated}  # fmt: skip

    results = [
        result("lora", "stock", 10_000.0, 110, 100),
        result("lora", "plugin", 12_000.0, 90, 100),
        {"method": "full", "arm": "stock", "error": "out of memory"},
    ]
    (row,) = gpu_bench.summarize(results)
    assert (row["method"], row["rows"], row["max_length"]) == ("lora", "full", 2048)
    assert row["plugin_over_stock_throughput"] == pytest.approx(1.2)
    assert row["stock_memory_ratio"] == pytest.approx(1.1)
    assert row["plugin_memory_ratio"] == pytest.approx(0.9)
    out = tmp_path / "gpu.json"
    gpu_bench.write_report(out, {"results": results, "summary": [row]})
    assert json.loads(out.read_text())["summary"][0]["method"] == "lora"
    assert not list(tmp_path.glob("*.partial"))


def test_memory_results_become_figures_with_a_25_percent_band():
    raw = {"results": [
        {"method": "lora", "max_length": 256, "ratio": 1.1, "predicted_bytes": 2**30, "measured_bytes": 1.1 * 2**30},
        {"method": "full", "max_length": 512, "ratio": 1.4, "predicted_bytes": 2**30, "measured_bytes": 1.4 * 2**30},
    ]}  # fmt: skip
    document = run_all.memory_document(raw, seconds=12.0)
    assert [row["holds"] for row in document["figures"]] == [True, False]
    assert document["figures"][0]["target"] == "0.75..1.25"


def test_the_markdown_report_has_one_row_per_figure_with_target_and_verdict():
    figures = [
        {"benchmark": "overhead", **benchlib.figure("training tokens/s, plugin / stock", 0.99, ">= 0.98")},
        {"benchmark": "samples", **benchlib.figure("train time with / without samples - 1", 0.08, "<= 0.05")},
        {"benchmark": "presets", **benchlib.figure("peak RSS with memory_preset none", 2048.0, unit="MiB")},
    ]
    report = {
        "machine": {"cores": 2, "cpu": "test CPU", "ram_gib": 8, "load_average": [3.0, 2.0, 1.0], "torch": "2"},
        "generated": "2026-01-01 00:00 UTC",
        "total_seconds": 600,
        "quick": False,
        "command": "python tests/benchmarks/run_all.py",
        "figures": figures,
    }
    text = run_all.markdown(report)
    assert "| overhead | training tokens/s, plugin / stock | 0.990 | >= 0.98 | yes |" in text
    assert "| samples | train time with / without samples - 1 | 0.080 | <= 0.05 | no |" in text
    assert "| presets | peak RSS with memory_preset none | 2,048 MiB | - | n/a |" in text
    assert "2 CPU cores" in text and "load 3.0" in text


def test_the_benchmark_doc_figures_are_the_committed_report():
    report = json.loads((Path(__file__).parent / "benchmarks" / "results" / "report.json").read_text())
    doc = (Path(__file__).parents[1] / "docs" / "benchmarks.md").read_text()
    assert run_all.BENCHMARKS_DOC == Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    assert run_all.readme_block(report) in doc, "docs/benchmarks.md out of date: run `run_all.py --docs`"


def test_copying_the_report_into_the_readme_replaces_only_the_marked_block(tmp_path):
    report = {
        "generated": "2026-11-29 12:00 UTC",
        "command": "python tests/benchmarks/run_all.py",
        "machine": {"cpu": "CPU", "cores": 2, "ram_gib": 8.0, "load_average": [0.1, 0.1, 0.1]},
        "total_seconds": 600.0,
        "figures": [{"benchmark": "data", "name": "speed", "value": 1.5, "unit": "", "target": ">= 1.0",
                     "holds": True, "note": "100 rows"}],
    }  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{run_all.README_START}\nold table\n{run_all.README_END}\n\nAfter.\n")
    run_all.update_readme(report, readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\n") and text.endswith("\n\nAfter.\n") and "old table" not in text
    assert "| data | speed | 1.500 | >= 1.0 | yes |" in text and "the suite took 10.0 minutes" in text
    assert "- data / speed: 100 rows" in text

    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers are missing"):
        run_all.update_readme(report, readme)


def test_the_preset_benchmark_arms_differ_only_in_what_each_stands_for(tmp_path):
    import bench_presets

    base = {"model_name_or_path": "m", "max_length": 512, "seed": 42, "smol_chat_template": "smollm3", "max_steps": 3}
    long = {**base, "datasets": [{"path": "json", "data_files": "long_rows.jsonl"}]}
    arms = bench_presets.arm_recipes(base, long, tmp_path)
    assert set(arms) == set(bench_presets.ARMS)
    old, auto = arms["preset 0.2.0"], arms["auto"]
    for name in ("stock", "long rows, stock", "busy, stock"):  # stock TRL: no plugin key, TRL's defaults for memory
        assert not set(arms[name]) & benchlib.plugin_only_keys()
    assert arms["long rows, auto"]["datasets"] == arms["long rows, stock"]["datasets"] == long["datasets"]
    assert arms["busy, auto"]["memory_preset"] == "auto" and "datasets" not in arms["busy, auto"]
    assert auto["memory_preset"] == "auto" and not set(auto) & set(bench_presets.MEMORY_KEYS)
    assert old["per_device_train_batch_size"] * old["gradient_accumulation_steps"] == 16  # 0.2.0's CPU tier
    # the same length, seed and steps everywhere: the recipe's max_length changes no demo row, cuts every long row
    assert {(arm["max_length"], arm["seed"], arm["max_steps"]) for arm in arms.values()} == {(512, 42, 3)}
    # what the auto arm did is read from its banner
    banner = "trl-smol 0.2.0 active (trl sft, run 1): memory_preset=cpu, threads=2 (memory preset cpu)"
    run = benchlib.RunResult(label="auto", returncode=0, wall_seconds=1.0, banner=banner)
    assert bench_presets.features(run) == "memory_preset=cpu, threads=2 (memory preset cpu)"


def test_long_rows_chain_demo_conversations_past_max_length(tmp_path):
    import json

    import bench_presets

    source = benchlib.REPO_ROOT / "recipes" / "data" / "smollm3_demo.jsonl"
    rows = [
        json.loads(line)
        for line in bench_presets.long_rows(source, tmp_path / "long.jsonl", rows=4).read_text().splitlines()
    ]
    assert len(rows) == 4 and all(len(row["messages"]) >= 16 for row in rows)
    assert all(row["messages"][0]["role"] == "user" and row["messages"][-1]["role"] == "assistant" for row in rows)


@pytest.mark.parametrize("script", ["gpu_bench.py", "gpu_memory.py", "gpu_packing.py", "gpu_scale_out.py"])
def test_gpu_scripts_import_only_names_that_exist(script):
    # The GPU scripts run only where a GPU is lent; a renamed import must fail here, not on the lent machine.
    import ast
    import importlib

    tree = ast.parse((Path(__file__).parent / "benchmarks" / script).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            module = importlib.import_module(node.module)
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
            assert not missing, f"{script}: {node.module} has no {missing}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


def test_batch_forms_hold_the_same_tokens_and_losses_on_a_tiny_smollm3(tmp_path):
    import gpu_packing

    out = tmp_path / "packing.json"
    argv = ["--tiny", "--rows", "8", "--batch-rows", "4", "--min-length", "8", "--max-length", "64", "--passes", "1"]
    assert gpu_packing.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["loss_relative_spread"] < 1e-5
    assert report["forms"]["padded"]["padding_share"] > 0 == report["forms"]["padding_free"]["padding_share"]


def test_a_merged_report_says_which_figures_it_ran_and_which_it_kept():
    report = {
        "merged_into": "2026-11-29 17:18 UTC",
        "command": "python tests/benchmarks/run_all.py --only presets samples --merge",
        "benchmarks": {"overhead": {}, "samples": {}, "data": {}, "presets": {}, "memory": {}},
    }
    report["generated"] = "2026-11-30 02:59 UTC"
    note = run_all.merged_note(report)
    assert "ran presets, samples only" in note and "(overhead, data, memory from the run of 2026-11-29" in note
    # merged again: what the earlier merge reran keeps its own date
    report.update(
        merged_into=report["generated"],
        origins=run_all.origins(report) | {"presets": "2026-11-30 04:54 UTC"},
        command="python tests/benchmarks/run_all.py --only presets --merge",
    )
    note = run_all.merged_note(report)
    assert note == (
        "; it ran presets only, the other figures are from earlier runs (overhead, data, memory from the run of "
        "2026-11-29 17:18 UTC; samples from the run of 2026-11-30 02:59 UTC)"
    )
    assert run_all.merged_note({"merged_into": None, "command": "python tests/benchmarks/run_all.py"}) is None


def test_the_held_out_prompt_set_carries_the_checks_of_the_demo_prompt_of_its_mode(tmp_path):
    import bench_samples

    regex = {"name": "regex", "pattern": "^🟢 Answer: \\S.*$"}
    demo = tmp_path / "demo.jsonl"
    demo.write_text(
        json.dumps({"prompt": "a", "chat_template_kwargs": {"enable_thinking": False}, "checks": [regex]})
        + "\n"
        + json.dumps({"prompt": "b", "chat_template_kwargs": {"enable_thinking": True}, "checks": ["think", regex]})
        + "\n"
    )
    small = bench_samples.heldout_file(6, demo, tmp_path / "small.jsonl").read_text().splitlines()
    large = bench_samples.heldout_file(12, demo, tmp_path / "large.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in large]
    assert large[:6] == small  # the end-of-training set starts with the in-training one
    assert [row["chat_template_kwargs"]["enable_thinking"] for row in rows[:4]] == [False, True, False, True]
    assert all(row["checks"] == (["think", regex] if row["chat_template_kwargs"]["enable_thinking"] else [regex])
               for row in rows)  # fmt: skip
    assert set(rows[0]) == {"messages", "chat_template_kwargs", "checks"}  # no `expected`: not a prompt key
    demo.write_text(json.dumps({"prompt": "a"}) + "\n")  # demo prompts without checks: held-out rows without
    plain = bench_samples.heldout_file(2, demo, tmp_path / "plain.jsonl").read_text().splitlines()
    assert ["checks" in json.loads(line) for line in plain] == [False, False]
