"""Run the whole CPU benchmark suite and write `report.json` and `report.md` (one table: figure, target, holds).

```bash
HF_HUB_OFFLINE=1 python tests/benchmarks/run_all.py                 # everything; demo_quality alone: 4.7 min, 2 cores
python tests/benchmarks/run_all.py --only overhead data              # a subset
python tests/benchmarks/run_all.py --quick --out /tmp/report.json    # small sizes, to check the suite itself
```

Each benchmark runs in its own process (`bench_*.py --out results/<name>.json`) and the report collects their figures;
`bench_memory_cpu.py` (the memory estimator's accuracy) is run as it is and its ratios are turned into figures. The GPU
script (`gpu_bench.py`) is separate: it needs a CUDA machine. Figures are ratios of runs made side by side in one
invocation; the machine's load is recorded with them, because other work on the machine moves absolute times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    REPO_ROOT,
    check_target,
    demo_model_path,
    describe_machine,
    figure,
    format_holds,
    format_value,
    machine_info,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "report.json"
MEMORY_TOLERANCE = 0.25

# name -> (script, arguments for the full run, arguments for --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "overhead": (
        "bench_overhead.py",
        ["--rounds", "1", "--max-steps", "4", "--step-rounds", "4"],  # 2 runs: the suite stays under 20 min
        ["--rounds", "1", "--max-steps", "2", "--step-rounds", "1"],
    ),
    "samples": ("bench_samples.py", ["--rounds", "0"], ["--rounds", "0", "--max-steps", "4"]),
    # held-out prompts with their checks: sample_budget bounds the passes in training, the final pass takes them all
    "sample_budget": (
        "bench_samples.py",
        ["--rounds", "0", "--heldout", "256"],
        ["--rounds", "0", "--heldout", "16", "--max-steps", "2", "--every", "1", "--max-new-tokens", "8"],
    ),
    "data": ("bench_data.py", ["--rows", "100000"], ["--rows", "2000"]),
    "presets": ("bench_presets.py", ["--max-steps", "4", "--rounds", "2"], ["--max-steps", "2"]),
    "memory": ("bench_memory_cpu.py", [], ["--steps", "1"]),
    # the demo's held-out quality check, moved here from the slow demo test (CI in 15 minutes on 2 cores)
    "demo_quality": ("bench_demo_quality.py", [], ["--max-steps", "2"]),
}


def memory_document(raw: dict, seconds: float) -> dict:
    """`bench_memory_cpu.py`'s output as a suite document: one figure per case, measured / predicted."""
    target = f"{1 - MEMORY_TOLERANCE:g}..{1 + MEMORY_TOLERANCE:g}"
    figures = []
    for case in raw["results"]:
        predicted, measured = case["predicted_bytes"] / 2**20, case["measured_bytes"] / 2**20
        name = f"peak RSS measured / estimated, {case['method']} at {case['max_length']} tokens"
        note = f"predicted {predicted:.0f} MiB, measured {measured:.0f} MiB"
        figures.append(figure(name, case["ratio"], target, note=note))
    return {"benchmark": "memory", "figures": figures, "details": raw, "seconds": round(seconds, 1)}


def run_benchmark(name: str, quick: bool, results_dir: Path) -> dict:
    script, full_args, quick_args = BENCHMARKS[name]
    out = results_dir / f"{name}.json"
    flag = "--output" if name == "memory" else "--out"
    command = [sys.executable, str(HERE / script), flag, str(out), *(quick_args if quick else full_args)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    out.unlink(missing_ok=True)  # a result file left by an earlier run must never stand in for this one's
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT)
    seconds = time.perf_counter() - started
    if not out.exists():  # a script may exit non-zero with its figures written (memory: outside its band)
        failed = figure(f"{name} benchmark ran", None, note=f"exit code {completed.returncode}, no result file")
        failed["holds"] = False
        return {"benchmark": name, "figures": [failed], "details": {}, "seconds": round(seconds, 1)}
    document = json.loads(out.read_text())
    if name == "memory":
        document = memory_document(document, seconds)
    document["returncode"] = completed.returncode
    return document


def markdown_table(report: dict) -> list[str]:
    lines = [
        "| benchmark | figure | value | target | holds |",
        "|---|---|---|---|---|",
    ]
    for row in report["figures"]:
        lines.append(
            f"| {row['benchmark']} | {row['name']} | {format_value(row)} | {row['target'] or '-'} | "
            f"{format_holds(row['holds'])} |"
        )
    return lines


def markdown(report: dict) -> str:
    lines = markdown_table(report)
    header = [
        "# trl-smol benchmark report",
        "",
        f"Machine: {describe_machine(report['machine'])}"
        + (
            f"; load at the end {report['machine']['load_average_end'][0]:.1f}"
            if report["machine"].get("load_average_end")
            else ""
        )
        + ".",
        f"Date: {report['generated']}; suite wall time {report['total_seconds'] / 60:.1f} min"
        + (" (quick sizes: not the reference figures)" if report["quick"] else "")
        + ".",
        f"Command: `{report['command']}`" + (merged_note(report) or ""),
        "",
    ]
    notes = ["", "Notes:"] + [f"- {row['benchmark']} / {row['name']}: {row['note']}" for row in report["figures"]
                              if row.get("note")]  # fmt: skip
    return "\n".join(header + lines + notes) + "\n"


# The generated block lives in docs/benchmarks.md (the README links to it). The marker text is kept as it was.
BENCHMARKS_DOC = REPO_ROOT / "docs" / "benchmarks.md"
README_START = "<!-- benchmark-report: copied from tests/benchmarks/results/report.json by run_all.py --readme -->"
README_END = "<!-- /benchmark-report -->"


def rerun_names(report: dict) -> list[str]:
    """The benchmarks a report's own run made (`--only a b`), or [] for a whole suite."""
    return report["command"].split("--only", 1)[1].split("--")[0].split() if "--only" in report["command"] else []


def origins(report: dict) -> dict[str, str]:
    """When each benchmark of a report was measured. A merged report records it (`origins`); an older one is read
    from its command: what it reran is from its own date, the rest from the run it was merged into."""
    if report.get("origins"):
        return dict(report["origins"])
    rerun = rerun_names(report) if report.get("merged_into") else list(report.get("benchmarks", {}))
    return {
        name: report["generated"] if name in rerun else report["merged_into"] for name in report.get("benchmarks", {})
    }


def merged_note(report: dict) -> str | None:
    """For a report made with `--merge`: which benchmarks this run made, and when the others were measured."""
    if not report.get("merged_into"):
        return None
    rerun = rerun_names(report)
    dates: dict[str, list[str]] = {}
    for name, date in origins(report).items():
        if name not in rerun:
            dates.setdefault(date, []).append(name)
    kept = "; ".join(f"{', '.join(names)} from the run of {date}" for date, names in sorted(dates.items()))
    return f"; it ran {', '.join(rerun)} only, the other figures are from earlier runs ({kept})"


def readme_block(report: dict) -> str:
    """The figures block of docs/benchmarks.md: the report's machine, date, duration and table, nothing else."""
    machine = report["machine"]
    end_load = machine.get("load_average_end")
    lines = [
        README_START,
        f"Latest run, {report['generated']}: {describe_machine(machine)}"
        + (f", load {end_load[0]:.1f} at the end" if end_load else "")
        + f"; the suite took {report['total_seconds'] / 60:.1f} minutes (`{report['command']}`)"
        + (merged_note(report) or "")
        + ".",
        "",
        *markdown_table(report),
        "",
        "How each figure was taken:",
        *(f"- {row['benchmark']} / {row['name']}: {row['note']}" for row in report["figures"] if row.get("note")),
        README_END,
    ]
    return "\n".join(lines)


def update_readme(report: dict, readme: Path = BENCHMARKS_DOC) -> None:
    """Replace the block between the benchmark markers of `readme` (docs/benchmarks.md) by [`readme_block`]."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme}: the benchmark markers are missing; add {README_START!r} and {README_END!r}.")
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    readme.write_text(before + readme_block(report) + after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="report.json path; report.md is written beside it.")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="Run only these benchmarks.")
    parser.add_argument("--quick", action="store_true", help="Small sizes, to check that the suite works.")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="With --only: keep the other benchmarks of the report at --out (each document keeps its own machine "
        "and time) and replace these.",
    )
    parser.add_argument(
        "--readme",
        "--docs",
        dest="readme",
        action="store_true",
        help="Only copy the figures of the report at --out into docs/benchmarks.md, then exit.",
    )
    args = parser.parse_args(argv)
    if args.readme:
        update_readme(json.loads(Path(args.out).read_text()))
        print(f"{BENCHMARKS_DOC.relative_to(REPO_ROOT)}: figures from {args.out}")
        return 0

    out = Path(args.out).resolve()
    results_dir = out.parent / ("quick" if args.quick else "raw")
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    machine = machine_info()
    print(f"demo model: {demo_model_path()}", flush=True)  # built once here (~35 s) if the cache lacks it
    documents = fresh = [run_benchmark(name, args.quick, results_dir) for name in args.only or BENCHMARKS]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    previous = json.loads(out.read_text()) if args.merge and out.exists() else None
    kept_origins = origins(previous) if previous is not None else {}
    if previous is not None:  # the benchmarks not rerun, as the earlier report had them, in the suite's order
        rerun = {document["benchmark"]: document for document in documents}
        kept = previous.get("benchmarks", {})
        documents = [rerun.get(name) or kept[name] for name in BENCHMARKS if name in rerun or name in kept]
    rows = []
    for document in documents:
        for row in document["figures"]:
            row = {"benchmark": document["benchmark"], **row}
            row["holds"] = check_target(row["value"], row["target"]) if row["value"] is not None else row["holds"]
            rows.append(row)
    machine["load_average_end"] = machine_info()["load_average"]
    report = {
        "generated": now,
        "command": " ".join(["python tests/benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        # where the kept figures come from: the earlier report's own origin when it was a merge too
        "merged_into": (previous.get("merged_into") or previous.get("generated")) if previous is not None else None,
        "origins": {
            name: now if name in {document["benchmark"] for document in fresh} else kept_origins.get(name, now)
            for name in (document["benchmark"] for document in documents)
        },
        "machine": machine,
        "total_seconds": round(time.perf_counter() - started, 1),
        "figures": rows,
        "all_targets_hold": all(row["holds"] is not False for row in rows),
        "benchmarks": {document["benchmark"]: document for document in documents},
    }
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
