"""Preemption: a stop signal reaches the training processes of `trl sft`, whichever process it was sent to.

Schedulers stop a job with a signal and a grace period before SIGKILL: Kubernetes sends SIGTERM to every process of
the pod (`terminationGracePeriodSeconds`, 30 s by default); SLURM sends SIGTERM to every process of the step
(`KillWait`, 30 s by default), or a signal of your choice ahead of time with `--signal=USR1@120`; a terminal sends
SIGINT to its foreground process group. A training process needs the rest of its step plus a checkpoint save
([`trl_smol.run_safety.InterruptCheckpoint`]).

`trl sft` runs accelerate's launcher in its own process (the CLI process). accelerate 1.16 answers a SIGTERM there by
terminating the training processes and killing them 5 s later, so a step longer than that lost its checkpoint. The
CLI process therefore *holds* the stop signals: [`hold_for_training_processes`] blocks them (so no handler of that
process, accelerate's included, runs) and a thread forwards each one to the training processes. They finish the step,
save and exit with 128 + the signal's number; accelerate then sees them end, and `trl sft` exits with their status.
The training processes inherit the blocked signals and release them as they start ([`release_held_signals`]).
A third interruption (a user who insists on a run that does not stop) kills the training processes, as accelerate
would.

```python
hold_for_training_processes()     # in the `trl sft` process, before accelerate launches training
release_held_signals()            # in each training process, at start-up
record_stop_signal(signal.SIGTERM); stop_signal()   # what stopped this process's training, process-wide
```

Standard library only (psutil when a signal arrives): [`trl_smol.hook`] calls this at interpreter start-up.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Iterable

# The signals that mean "stop with a checkpoint". SIGUSR1: SLURM's `--signal=USR1@SECONDS` warning ahead of the end.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name)
)
# Set by the CLI process for its children: the stop signals arrive blocked and are to be released.
HELD_ENV = "TRL_SMOL_HELD_SIGNALS"
# The same signal twice within this many seconds is one interruption (a process group signal reaches the training
# process directly and again through the CLI process).
SAME_SIGNAL_SECONDS = 1.0
# Interruptions of the CLI process that are forwarded before its own handlers (accelerate's) get one.
FORWARDED_INTERRUPTIONS = 2
# How long the main thread has to act on a held signal meant for this process before it ends here.
STOP_SELF_SECONDS = 3.0
# What a scheduler gives by default between its stop signal and SIGKILL (Kubernetes, SLURM's KillWait).
DEFAULT_GRACE_SECONDS = 30.0

# How the line that a run stopped by a signal ends with begins (`trl_smol.run_safety.stop_after_interrupt`).
STOPPED_PREFIX = "trl-smol: stopped by "

_stop: signal.Signals | None = None


def record_stop_signal(number: int | None) -> None:
    """Record (or with `None`, clear) the signal that stops this process's training."""
    global _stop
    _stop = None if number is None else signal.Signals(number)


def stop_signal() -> signal.Signals | None:
    """The signal that is stopping this process's training, if one is: no more work than the checkpoint then."""
    return _stop


def exit_status(number: int) -> int:
    """The exit status of a process stopped by signal `number` after its checkpoint, as a shell reports a kill."""
    return 128 + int(number)


# --- the `trl sft` process -----------------------------------------------------------------------------------------
def hold_for_training_processes(signals: Iterable[signal.Signals] = STOP_SIGNALS) -> threading.Thread | None:
    """Block the stop signals in this process and forward them to the training processes from a thread.

    Call it in the main thread before any other thread starts (the threads started later inherit the mask). Returns
    the forwarding thread, or `None` where signals cannot be held (not the main thread, no `pthread_sigmask`)."""
    held = set(signals)
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return None
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    os.environ[HELD_ENV] = ",".join(str(int(number)) for number in sorted(held))
    thread = threading.Thread(target=_forward_forever, args=(held,), name="trl-smol-signals", daemon=True)
    thread.start()
    return thread


def _forward_forever(held: set[signal.Signals]) -> None:
    last: tuple[int, float] | None = None
    interruptions = 0
    while True:
        number = signal.sigwait(held)
        now = time.monotonic()
        if last is None or last[0] != number or now - last[1] >= SAME_SIGNAL_SECONDS:
            interruptions += 1
        last = (number, now)
        children = training_processes()
        if not children:
            _stop_this_process(number)  # before training starts or after it ended
        elif interruptions <= FORWARDED_INTERRUPTIONS:
            _send(children, number)
        else:  # a third interruption: the training processes do not stop; end them as accelerate would
            _send(children, signal.SIGKILL)


def _send(processes: list, number: int) -> None:
    for process in processes:
        try:
            process.send_signal(number)
        except Exception:  # noqa: BLE001 - a process that just ended
            continue


def _stop_this_process(number: int) -> None:
    """The held signal's effect on this process itself: its own handler runs in the main thread (SystemExit,
    KeyboardInterrupt), as if the signal had not been held. A main thread blocked in a system call does not run it,
    so the process ends here if it is still running a few seconds later."""
    handler = signal.getsignal(number)
    if handler == signal.SIG_IGN:
        return
    if handler in (signal.SIG_DFL, None):
        os._exit(exit_status(number))  # no handler of its own: the signal's default effect, ending the process
    _thread.interrupt_main(number)
    time.sleep(STOP_SELF_SECONDS)
    os._exit(exit_status(number))


def training_processes() -> list:
    """The training processes of this `trl sft` process (its descendants running the training script), or its
    direct children when none is recognisable."""
    import psutil

    me = psutil.Process()
    found = []
    for child in me.children(recursive=True):
        try:
            if runs_training_script(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found or me.children()


def runs_training_script(cmdline: list[str]) -> bool:
    """Whether a command line runs TRL's SFT script (`.../trl/scripts/sft.py` or `python -m trl.scripts.sft`)."""
    script = os.path.join("trl", "scripts", "sft.py")
    return any(os.path.normpath(arg).endswith(script) for arg in cmdline) or "trl.scripts.sft" in cmdline


# --- a training process ----------------------------------------------------------------------------------------------
def release_held_signals(environ: dict[str, str] | None = None) -> bool:
    """In a process started by a CLI process that holds the stop signals: unblock them (they were inherited blocked).
    Returns whether any were released."""
    environ = os.environ if environ is None else environ
    value = environ.get(HELD_ENV, "")
    if not value or not hasattr(signal, "pthread_sigmask"):
        return False
    numbers = {int(number) for number in value.split(",") if number.strip().isdigit()}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers)
    return bool(numbers)
