"""`MemoryMonitorCallback`: peak memory at every log, and at the end the measured peak against the estimate.

```python
from trl_smol import MemoryMonitorCallback, SmolSFTTrainer

trainer = SmolSFTTrainer(..., callbacks=[MemoryMonitorCallback()])
# or in a recipe: `callbacks: [memory]`; `memory_preset` other than `none` adds it by itself
```

On CUDA it logs the allocator's peak allocated and reserved memory (`memory/peak_allocated_gib`,
`memory/peak_reserved_gib`); on CPU the process's peak resident memory (`memory/peak_rss_gib`) and how much of it
training added since the trainer was created (`memory/rss_added_gib`). When a memory preset produced an estimate, the
end of training prints measured peak / estimate.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from .hardware import GIB
from .measure import current_rss, peak_rss, reset_peak_rss


class MemoryMonitorCallback(TrainerCallback):
    """Log peak device memory (process RSS on CPU) at each logging step, and compare the peak with the estimate.

    Args:
        estimate_bytes (`int`, *optional*):
            The estimate to compare against at the end of training. `SmolSFTTrainer` passes the estimate of the
            memory preset of its run plan.

    The memory values are added to the `logs` of each log event, which the reporters (trackio, wandb, ...) send when
    they run after this callback: `SmolSFTTrainer` puts it first (`SmolSFTTrainer.order_callbacks`); in a plain
    `transformers.Trainer`, pass it in `callbacks=` and move it first with `trl_smol.callbacks.run_first`.
    `state.log_history` is not edited.
    """

    def __init__(self, estimate_bytes: int | None = None):
        self.estimate_bytes = estimate_bytes
        # On CPU the measurement is the RSS added since here: the trainer builds callbacks before it loads the model.
        self.baseline_rss = current_rss()
        self.device_type = "cpu"
        self.context_bytes = 0
        self.summary: dict[str, Any] = {}

    @classmethod
    def from_args(cls, args: Any) -> MemoryMonitorCallback:
        return cls()

    # --- measurement -------------------------------------------------------------------------------------------
    def measure(self) -> dict[str, float]:
        """Current peak figures in bytes, keyed by metric name."""
        import torch

        if self.device_type == "cuda":
            return {
                "peak_allocated": float(torch.cuda.max_memory_allocated()),
                "peak_reserved": float(torch.cuda.max_memory_reserved()),
                "peak_device": float(torch.cuda.max_memory_reserved() + self.context_bytes),
            }
        if self.device_type == "mps":
            allocated = float(torch.mps.driver_allocated_memory())
            self._mps_peak = max(getattr(self, "_mps_peak", 0.0), allocated)
            return {"driver_allocated": allocated, "peak_device": self._mps_peak}
        peak = float(peak_rss())
        return {"peak_rss": peak, "rss_added": peak - self.baseline_rss, "peak_device": peak - self.baseline_rss}

    def measured_peak(self) -> float:
        return self.measure()["peak_device"]

    # --- events ------------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        self.device_type = args.device.type if args.device.type in ("cuda", "mps") else "cpu"
        if self.device_type == "cuda":
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            # The CUDA context and other processes' memory, which the allocator's counters do not see.
            self.context_bytes = max(0, (total - free) - torch.cuda.memory_reserved())
            torch.cuda.reset_peak_memory_stats()
        elif self.device_type == "cpu":
            reset_peak_rss()  # loading transients (a second copy of the weights) are not training memory

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        values = {f"memory/{key}_gib": round(value / GIB, 4) for key, value in self.measure().items()}
        values.pop("memory/peak_device_gib", None)
        logs.update(values)

    def on_train_end(self, args, state, control, **kwargs):
        measured = self.measured_peak()
        estimate = self.estimate_bytes
        what = {"cuda": "peak device memory", "mps": "peak MPS driver memory"}.get(
            self.device_type, "peak RSS added by training"
        )
        self.summary = {"measured_bytes": measured, "estimate_bytes": estimate, "measured": what}
        if estimate:
            self.summary["ratio"] = measured / estimate
        if not state.is_world_process_zero:
            return
        from rich.console import Console

        line = f"trl-smol memory: {what} {measured / GIB:.2f} GiB"
        if estimate:
            line += f", estimate {estimate / GIB:.2f} GiB, measured/estimate {measured / estimate:.2f}"
        Console().print(line)
