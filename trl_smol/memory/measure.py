"""Measuring memory: the process's current and peak RSS, and the peak of the device allocator.

```python
from trl_smol.memory.measure import peak_rss, reset_peak_rss

reset_peak_rss()          # Linux: start a new peak window
...
peak_rss()                # bytes
```
"""

from __future__ import annotations


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0, `/proc/self/clear_refs`); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak resident memory of this process since start or the last [`reset_peak_rss`], in bytes."""
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def measured_peak_bytes() -> tuple[int, str]:
    """The peak memory so far: CUDA/MPS allocator peak, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_reserved()), "peak reserved CUDA memory"
    if torch.backends.mps.is_available():
        return int(torch.mps.driver_allocated_memory()), "MPS driver memory"
    return peak_rss(), "peak RSS"
