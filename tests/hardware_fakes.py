"""Made-up machines for tests that plan for hardware they do not run on (moved out of `HardwareInfo` in 0.3.0).

```python
from hardware_fakes import fake_cpu_hardware, fake_cuda_hardware

fake_cuda_hardware(16, name="Tesla T4", bf16=False, compute_capability=(7, 5))   # one 16 GiB T4
fake_cpu_hardware()                                                              # a CPU with 16 GiB of RAM
```

They live in the tests, not in `trl_smol.testing`, because that module sits in the lowest import layer and may not
import `trl_smol.memory` (pyproject.toml `[tool.importlinter]`).
"""

from __future__ import annotations

from trl_smol.memory.hardware import GIB, DeviceInfo, HardwareInfo


def fake_cuda_hardware(
    gib: float,
    *,
    name: str = "NVIDIA GPU",
    count: int = 1,
    bf16: bool = True,
    compute_capability: tuple[int, int] = (8, 0),
    flash_attention: bool = False,
    liger_kernel: bool = False,
    host_ram_gib: float = 64,
    hub_offline: bool = False,
) -> HardwareInfo:
    """A CUDA machine with `count` devices of `gib` GiB each (all free), bitsandbytes 4-bit, Triton and `kernels`
    installed; `flash_attention`: the flash-attn package too (FlashAttention 2)."""
    device = DeviceInfo(name, int(gib * GIB), int(gib * GIB), compute_capability)
    return HardwareInfo(
        accelerator="cuda",
        devices=(device,) * count,
        host_ram=int(host_ram_gib * GIB),
        host_ram_available=int(host_ram_gib * GIB),
        bf16=bf16,
        fp16=True,
        bnb_4bit=True,
        attention_kernels=("sdpa", "eager", "flex_attention") + (("flash_attention_2",) if flash_attention else ()),
        hub_kernels=True,
        hub_offline=hub_offline,
        liger_kernel=liger_kernel,
        triton=True,
    )


def fake_cpu_hardware(ram_gib: float = 16) -> HardwareInfo:
    """A machine without an accelerator and with `ram_gib` GiB of RAM, all available."""
    ram = int(ram_gib * GIB)
    return HardwareInfo(accelerator="cpu", host_ram=ram, host_ram_available=ram)
