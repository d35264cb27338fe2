"""What this machine offers for training: accelerator, memory, precision and optional kernels.

```python
from trl_smol.memory.hardware import detect_hardware

hardware = detect_hardware()
hardware.accelerator          # "cuda", "mps" or "cpu"
hardware.device_memory        # bytes usable on the smallest device (host RAM on CPU)
hardware.bf16                 # bf16 mixed precision supported
hardware.attention_kernels    # ("sdpa", "eager", "flex_attention", "flash_attention_2"): what loads without a download
```

Everything is read through torch, `importlib`, the environment and psutil; nothing is allocated on the device beyond
the CUDA context that `torch.cuda.mem_get_info` creates. A machine you do not have is described by name in
`trl_smol.memory.devices` (`trl-smol doctor --hardware h100-80gb`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import psutil

GIB = 1024**3


@dataclass(frozen=True)
class DeviceInfo:
    """One accelerator: its name, total and free memory in bytes, and CUDA compute capability (`None` elsewhere)."""

    name: str
    total_memory: int
    free_memory: int
    compute_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class HardwareInfo:
    """The hardware description the presets and the estimator work from. Build one by hand to plan for another machine.

    ```python
    t4 = DeviceInfo("Tesla T4", 16 * GIB, 16 * GIB, compute_capability=(7, 5))
    HardwareInfo(accelerator="cuda", devices=(t4,), host_ram=64 * GIB, fp16=True, bnb_4bit=True)
    ```
    """

    accelerator: str  # "cuda", "mps" or "cpu"
    devices: tuple[DeviceInfo, ...] = ()
    host_ram: int = 0
    host_ram_available: int = 0
    bf16: bool = False
    fp16: bool = False
    bnb_4bit: bool = False
    # transformers' `attn_implementation` names that load here without a download: SDPA and eager always, flex
    # attention where torch has it, FlashAttention 2 / 3 only where their packages are installed and the GPU runs them.
    attention_kernels: tuple[str, ...] = ("sdpa", "eager")
    # `kernels` is installed: transformers then fetches Hub kernels for some layers at load by default (for SmolLM3 on
    # CUDA, Liger's RMSNorm from `kernels-community/liger-kernels`), and with `use_kernels` (TRL 1.16's path to Liger).
    hub_kernels: bool = False
    hub_offline: bool = False  # HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing is fetched from the Hub
    liger_kernel: bool = False  # the `liger_kernel` package is installed and the GPU is Ampere or newer
    triton: bool = False  # Triton is installed: TRL's fused LM head then scores only labelled positions on CUDA
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def name(self) -> str:
        if not self.devices:
            return "CPU"
        names = sorted({device.name for device in self.devices})
        return f"{self.count}x {', '.join(names)}" if self.count > 1 else names[0]

    @property
    def device_memory(self) -> int:
        """Memory one training process can use: the smallest accelerator, or the host RAM on CPU."""
        if not self.devices:
            return self.host_ram
        return min(device.total_memory for device in self.devices)

    @property
    def free_device_memory(self) -> int:
        if not self.devices:
            return self.host_ram_available
        return min(device.free_memory for device in self.devices)

    @property
    def compute_capability(self) -> tuple[int, int] | None:
        capabilities = [device.compute_capability for device in self.devices if device.compute_capability]
        return min(capabilities) if capabilities else None

    @property
    def flash_attention(self) -> bool:
        """A FlashAttention package (2 or 3) is installed and runs on these GPUs (the boolean field of 0.3)."""
        return any(name.startswith("flash_attention") for name in self.attention_kernels)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that cannot be imported
        return False


def _package(module: str, distribution: str) -> bool:
    """`module` is importable and shipped by `distribution` (`flash_attn` is also the module of FlashAttention 4, whose
    distribution is `flash-attn-4`; transformers tells them apart the same way)."""
    if not _installed(module):
        return False
    from importlib.metadata import packages_distributions

    shipped = packages_distributions().get(module, [])
    return distribution in {name.lower().replace("_", "-") for name in shipped}


_TRUE = ("1", "on", "yes", "true", "y")


def hub_offline() -> bool:
    """Whether the environment forbids Hub downloads (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


def hub_kernels_installed() -> bool:
    """`kernels` is installed in a version transformers uses, and `USE_HUB_KERNELS` does not switch it off."""
    if os.environ.get("USE_HUB_KERNELS", "yes").strip().lower() not in _TRUE or not _installed("kernels"):
        return False
    try:
        from transformers.utils import is_kernels_available
    except ImportError:
        return False
    return bool(is_kernels_available())


def attention_kernels(accelerator: str, capability: tuple[int, int] | None) -> tuple[str, ...]:
    """The attention implementations that load on this machine without a download (see `HardwareInfo`).

    A Hub kernel never counts: `flash_attention_2` without the `flash_attn` package makes transformers fetch
    `kernels-community/flash-attn2` from the Hub when the model loads, which an offline machine cannot.
    """
    found = ["sdpa", "eager"]
    if _installed("torch.nn.attention.flex_attention"):
        found.append("flex_attention")
    if accelerator == "cuda" and capability is not None:
        if capability >= (8, 0) and _package("flash_attn", "flash-attn"):
            found.append("flash_attention_2")
        if capability[0] == 9 and _package("flash_attn_interface", "flash-attn-3"):
            found.append("flash_attention_3")
    return tuple(found)


def detect_hardware() -> HardwareInfo:
    """Describe this machine: CUDA devices first, then Apple MPS, else the CPU."""
    import torch

    memory = psutil.virtual_memory()
    host = {"host_ram": int(memory.total), "host_ram_available": int(memory.available)}
    notes: list[str] = []

    if torch.cuda.is_available():
        devices = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            try:
                free, total = torch.cuda.mem_get_info(index)
            except RuntimeError:  # e.g. a device in exclusive mode held by another process
                free, total = props.total_memory, props.total_memory
                notes.append(f"cuda:{index}: free memory unknown")
            devices.append(DeviceInfo(props.name, int(total), int(free), (props.major, props.minor)))
        capability = min(device.compute_capability for device in devices)
        return HardwareInfo(
            accelerator="cuda",
            devices=tuple(devices),
            bf16=bool(torch.cuda.is_bf16_supported(including_emulation=False)),
            fp16=True,
            bnb_4bit=_installed("bitsandbytes"),
            attention_kernels=attention_kernels("cuda", capability),
            hub_kernels=hub_kernels_installed(),
            hub_offline=hub_offline(),
            # The Liger (Triton) kernels need Ampere or newer.
            liger_kernel=capability >= (8, 0) and _installed("liger_kernel"),
            triton=_installed("triton"),
            notes=tuple(notes),
            **host,
        )

    if torch.backends.mps.is_available():
        # Unified memory: Metal's recommended working set is what one process can use without swapping.
        budget = int(torch.mps.recommended_max_memory())
        free = max(0, budget - int(torch.mps.driver_allocated_memory()))
        return HardwareInfo(
            accelerator="mps",
            devices=(DeviceInfo("Apple MPS", budget, free),),
            bf16=True,
            fp16=True,
            attention_kernels=attention_kernels("mps", None),
            hub_kernels=hub_kernels_installed(),
            hub_offline=hub_offline(),
            notes=("bitsandbytes 4-bit, FlashAttention and Liger need CUDA",),
            **host,
        )

    return HardwareInfo(
        accelerator="cpu",
        attention_kernels=attention_kernels("cpu", None),
        hub_kernels=hub_kernels_installed(),
        hub_offline=hub_offline(),
        notes=("no accelerator found: training runs on the CPU",),
        **host,
    )


def bitsandbytes_4bit_error(device: str | None = None) -> str | None:
    """Why bitsandbytes cannot quantize to 4-bit on `device` (default: CUDA if present, else CPU); None if it can.

    Importing bitsandbytes is not enough (it imports without a backend for the device), so a tiny NF4 quantisation is
    tried on the device, as loading a 4-bit model would.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        import bitsandbytes.functional as bnb_functional

        bnb_functional.quantize_4bit(torch.ones(64, dtype=torch.float32, device=device), quant_type="nf4")
    except Exception as error:  # ImportError, RuntimeError or NotImplementedError from a missing backend
        return f"{type(error).__name__}: {error}"
    return None


# CPU features that compute bf16 natively: x86 AVX512-BF16 and AMX, Arm's BF16 extension.
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively. Without it, bf16 autocast on the CPU is emulated and many times slower
    than float32. Read from `/proc/cpuinfo`; where that cannot be read, assumed true (nothing is claimed)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            lines = [line for line in file if line.startswith(("flags", "Features"))]
    except OSError:
        return True
    return any(_NATIVE_BF16_FLAGS & set(line.split(":", 1)[-1].split()) for line in lines)
