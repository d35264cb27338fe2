"""Preemption: however a stop signal arrives, the step in progress ends, a checkpoint is written, nothing else runs,
the last line says how to resume, and `trl sft` exits with 128 + the signal.

Schedulers deliver the signal differently: to the `trl sft` process, to the training processes, or to the whole
process group (Kubernetes, SLURM, a terminal's Ctrl-C). accelerate's launcher, which runs inside `trl sft`, kills the
training process 5 s after a SIGTERM reaches it (accelerate 1.16): the end-to-end runs below make the step in
progress last longer than that (a probe callback, registered as any package registers one, sleeps in it).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from trl_smol.launch import training_exit_status
from trl_smol.preemption import HELD_ENV, STOPPED_PREFIX, exit_status, runs_training_script

TRL = os.path.join(os.path.dirname(sys.executable), "trl")
ACCELERATE_KILL_SECONDS = 5  # accelerate 1.16's launcher: SIGTERM to the training process, SIGKILL 5 s later
SLOW_STEP_SECONDS = ACCELERATE_KILL_SECONDS + 3
GRACE_SECONDS = 30  # Kubernetes' and SLURM's default between their signal and SIGKILL


# --- the `trl sft` process holds the stop signals for its training processes -----------------------------------------
HOLDER = textwrap.dedent(
    """\
    import signal, subprocess, sys, time
    from trl_smol.preemption import hold_for_training_processes
    def own_handler(number, frame):
        print("own handler", number, flush=True)
        sys.exit(128 + number)
    signal.signal(signal.SIGTERM, own_handler)       # what accelerate's launcher installs
    hold_for_training_processes()
    child = subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])
    print("started", flush=True)
    child.wait()
    print("child exited", child.returncode, flush=True)
    """
)
CHILD = textwrap.dedent(
    """\
    import signal, sys, time
    from trl_smol.preemption import release_held_signals
    release_held_signals()
    got = []
    signal.signal(signal.SIGTERM, lambda number, frame: got.append(number))
    print("ready", flush=True)
    stubborn = len(sys.argv) > 1  # a training process that does not stop
    deadline = time.time() + 20
    while (stubborn or not got) and time.time() < deadline:
        time.sleep(0.01)
    sys.exit(128 + got[0] if got else 0)
    """
)


def start_holder(*child_args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, CHILD, *child_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # Both lines, in either order: the holder started the child, and the child released its signals and set its
    # handler (a fixed wait raced a slow start on a loaded machine).
    assert {process.stdout.readline().strip(), process.stdout.readline().strip()} == {"started", "ready"}
    return process


def test_a_held_signal_goes_to_the_training_process_and_not_to_the_launchers_handler():
    holder = start_holder()
    holder.send_signal(signal.SIGTERM)
    output, _ = holder.communicate(timeout=30)
    assert "own handler" not in output  # accelerate's handler would have started its 5 s kill timer
    assert "child exited 143" in output and holder.returncode == 0


def test_a_third_interruption_kills_a_training_process_that_does_not_stop():
    holder = start_holder("stubborn")
    for _ in range(3):
        holder.send_signal(signal.SIGTERM)
        time.sleep(1.2)  # more than a second apart: three interruptions, not one delivered three times
    output, _ = holder.communicate(timeout=30)
    assert f"child exited {-signal.SIGKILL}" in output and "own handler" not in output


def test_without_a_training_process_the_signal_stops_the_launcher_at_once():
    script = "import time\nfrom trl_smol.preemption import hold_for_training_processes\n"
    script += "hold_for_training_processes()\nprint('held', flush=True)\ntime.sleep(30)\n"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    started = time.time()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    assert process.returncode != 0 and time.time() - started < 5


def test_training_processes_release_what_they_inherited_blocked():
    script = textwrap.dedent(
        """\
        import signal
        from trl_smol.preemption import release_held_signals
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
        print(release_held_signals(), sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        """
    )
    env = {**os.environ, HELD_ENV: f"{int(signal.SIGTERM)},{int(signal.SIGUSR1)}"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split("\n")[0] == "True []"


def test_the_training_script_is_recognised_however_it_is_started():
    assert runs_training_script(["/venv/bin/python", "/venv/lib/python3.11/site-packages/trl/scripts/sft.py", "-c"])
    assert runs_training_script(["python", "-m", "trl.scripts.sft", "--config", "r.yaml"])
    assert not runs_training_script(["/venv/bin/python", "/venv/bin/trl", "sft", "--config", "r.yaml"])


def test_trl_sft_exits_with_the_training_processes_status():
    assert training_exit_status(subprocess.CalledProcessError(143, ["python"])) == 143
    failure = type("ProcessFailure", (), {"exitcode": 138})()
    child_failed = type("ChildFailedError", (Exception,), {})()
    child_failed.failures = {0: failure}
    assert training_exit_status(child_failed) == 138
    assert training_exit_status(RuntimeError("no status")) == 1
    assert exit_status(signal.SIGUSR1) == 128 + 10


# --- the callback: how long a stop needs -----------------------------------------------------------------------------
def test_a_run_whose_step_and_save_outlast_the_grace_period_is_warned_once(monkeypatch, caplog):
    from transformers import TrainerControl, TrainerState

    from trl_smol.run_safety import interrupt as module

    clock = iter([0.0, 25.0, 25.0, 31.0, 40.0, 41.0, 41.0, 42.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    callback = module.InterruptCheckpoint(grace_seconds=30)
    args, state = type("Args", (), {})(), TrainerState()
    for _ in range(2):  # a 25 s step then a 6 s save; then a 1 s step and a 1 s save
        control = TrainerControl(should_save=True)
        callback.on_step_begin(args, state, control)
        callback.on_step_end(args, state, control)
        callback.on_save(args, state, control)
    assert (callback.longest_step, callback.longest_save) == (25.0, 6.0)
    warnings = [record.getMessage() for record in caplog.records if "grace" in record.getMessage()]
    assert len(warnings) == 1 and "up to 31 s" in warnings[0] and "--signal=USR1" in warnings[0]


# --- the real `trl sft`, each delivery -------------------------------------------------------------------------------
PROBE = textwrap.dedent(
    f"""\
    import os, time
    from pathlib import Path
    from transformers import TrainerCallback

    class SlowStep(TrainerCallback):
        \"\"\"Step 2 lasts {SLOW_STEP_SECONDS} s (a long step on a big model); a file says when it began.\"\"\"
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                Path(args.output_dir, f"slow-step-began-{{args.process_index}}").touch()
                time.sleep({SLOW_STEP_SECONDS})
    """
)


@pytest.fixture(scope="module")
def probe_env(tmp_path_factory) -> dict[str, str]:
    """The probe as an installed package registers a callback: a .dist-info with an entry point, on PYTHONPATH."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "slow_step_probe.py").write_text(PROBE)
    info = folder / "slow_step_probe-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-step-probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[trl_smol.callbacks]\nslow_step = slow_step_probe:SlowStep\n")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def write_recipe(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    data = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i}+1?"}, {"role": "assistant", "content": str(i + 1)}]}
        for i in range(32)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    recipe = {
        "model_name_or_path": str(model_dir),
        "datasets": [{"path": "json", "data_files": str(data)}],
        "output_dir": str(out),
        "per_device_train_batch_size": 2,
        "max_steps": 50,
        "save_steps": 1000,
        "logging_steps": 1,
        "bf16": False,
        "report_to": "none",
        "callbacks": ["slow_step"],
        # Samples before training and at its end: a pass after the signal would spend the grace period.
        "sample_prompts": ["What is 3+1?"],
        "sample_every_n_steps": 1000,
        "sample_max_new_tokens": 4,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    return path, out


def deliver(process: psutil.Popen, number: signal.Signals, to: str) -> None:
    if to == "trl sft":
        process.send_signal(number)
    elif to == "training":
        for child in process.children(recursive=True):
            if runs_training_script(child.cmdline()):
                child.send_signal(number)
    else:  # the process group, as Kubernetes, SLURM and a terminal do
        os.killpg(process.pid, number)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("number", "to", "processes"),
    [
        (signal.SIGTERM, "trl sft", 1),
        (signal.SIGTERM, "training", 1),
        (signal.SIGTERM, "group", 1),
        (signal.SIGINT, "group", 1),
        (signal.SIGUSR1, "group", 1),
        (signal.SIGTERM, "trl sft", 2),
        (signal.SIGTERM, "group", 2),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else str(value),
)
def test_a_stop_signal_ends_the_step_saves_and_says_how_to_resume(
    tmp_path, tiny_model_dir, probe_env, number, to, processes
):
    recipe, out = write_recipe(tmp_path, tiny_model_dir)
    command = [TRL, "sft", "--config", str(recipe)] + (["--num_processes", str(processes)] if processes > 1 else [])
    process = psutil.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=probe_env, start_new_session=True
    )
    deadline = time.time() + 240
    while not list(out.glob("slow-step-began-*")):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.time() < deadline, "the run never reached its second step"
        time.sleep(0.05)
    time.sleep(0.2)
    training = [child for child in process.children(recursive=True) if runs_training_script(child.cmdline())]
    delivered = time.time()
    deliver(process, number, to)
    output, _ = process.communicate(timeout=GRACE_SECONDS + 60)
    stopped_after = time.time() - delivered
    psutil.wait_procs(training, timeout=5)
    assert training and not [child for child in training if child.is_running()]  # no orphan keeps training

    last = output.strip().splitlines()[-1]
    assert last.startswith(f"{STOPPED_PREFIX}{number.name} at step 2;"), output[-3000:]
    assert f"checkpoint saved in {out}/checkpoint-2." in last and "--resume_from_checkpoint true" in last
    assert process.returncode == 128 + number, output[-3000:]
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert stopped_after > SLOW_STEP_SECONDS - 1  # the step in progress ended: nothing cut it short
    assert stopped_after < GRACE_SECONDS  # within what the scheduler gives, this run's slow step included
    sampled = [json.loads(line)["step"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert set(sampled) == {0}  # the pass before training; none after the signal
    assert output.count(STOPPED_PREFIX) == 1, output[-3000:]  # one line, from the main process only
