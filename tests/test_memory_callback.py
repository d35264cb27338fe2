"""`MemoryMonitorCallback`: peak memory in the logs, and measured peak against the estimate at the end."""

import contextlib
import mmap
import types

import torch
from transformers import TrainerControl, TrainerState

from trl_smol.callbacks import load_callback
from trl_smol.memory import MemoryMonitorCallback
from trl_smol.memory.measure import peak_rss, reset_peak_rss

GIB = 1024**3


def fake_args(device_type):
    return types.SimpleNamespace(device=torch.device(device_type))


@contextlib.contextmanager
def resident(size):
    """Map `size` fresh bytes and touch every page, so they are resident until the block exits.

    A tensor would not do: in a long-lived test process (a pytest-xdist worker) the allocator may serve it from freed
    pages that are already resident, and keep them resident after `del`, so RSS would not move."""
    block = mmap.mmap(-1, size)
    block.write(b"\x01" * size)
    try:
        yield block
    finally:
        block.close()


def logged(callback, args, state):
    logs = {"loss": 1.0}
    state.log_history.append({**logs, "step": state.global_step})
    callback.on_log(args, state, TrainerControl(), logs=logs)
    return logs


def test_registered_as_memory_and_built_from_args():
    callback = load_callback("memory", fake_args("cpu"))
    assert isinstance(callback, MemoryMonitorCallback)


def test_cpu_logs_peak_rss_added_by_training(capsys):
    callback = MemoryMonitorCallback(estimate_bytes=256 * 1024**2)
    args, state = fake_args("cpu"), TrainerState()
    callback.on_train_begin(args, state, TrainerControl())
    with resident(64 * 1024**2):
        logs = logged(callback, args, state)
    assert logs["memory/rss_added_gib"] >= 60 / 1024
    assert logs["memory/peak_rss_gib"] >= logs["memory/rss_added_gib"]
    assert "memory/rss_added_gib" not in state.log_history[-1]  # the reporters get `logs`; the history is not edited
    callback.on_train_end(args, state, TrainerControl())
    assert callback.summary["ratio"] == callback.summary["measured_bytes"] / (256 * 1024**2)
    assert "measured/estimate" in capsys.readouterr().out


def test_peak_rss_can_be_reset_on_linux():
    with resident(32 * 1024**2):
        high = peak_rss()
    if reset_peak_rss():
        assert peak_rss() < high


def test_cuda_logs_allocator_peaks_plus_the_context(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (70 * GIB, 80 * GIB))  # 10 GiB in use at the start
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 9 * GIB)  # so 1 GiB is the context
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 20 * GIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 23 * GIB)
    callback = MemoryMonitorCallback(estimate_bytes=20 * GIB)
    args, state = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda")), TrainerState()
    callback.on_train_begin(args, state, TrainerControl())
    logs = logged(callback, args, state)
    assert logs["memory/peak_allocated_gib"] == 20 and logs["memory/peak_reserved_gib"] == 23
    callback.on_train_end(args, state, TrainerControl())
    assert callback.summary["measured_bytes"] == 24 * GIB  # reserved peak + the CUDA context
    assert callback.summary["ratio"] == 24 / 20
    assert "peak device memory 24.00 GiB" in capsys.readouterr().out


def test_estimate_comes_from_the_run_plan(tmp_path):
    from hardware_fakes import fake_cpu_hardware

    from trl_smol import SmolSFTConfig
    from trl_smol.plan import plan_run

    args = SmolSFTConfig(output_dir=str(tmp_path), bf16=False, memory_preset="cpu", report_to="none")
    plan = plan_run(args, model_name="trl-smol/SmolLM3-demo-135M", hardware=fake_cpu_hardware())
    result = plan.preset
    callback = MemoryMonitorCallback(estimate_bytes=plan.estimate_bytes)
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    callback.on_train_end(args, TrainerState(), TrainerControl())
    assert callback.summary["estimate_bytes"] == result.estimate.total_bytes
