"""Machines you do not have, by name: plan a run for a GPU before renting it (`trl-smol doctor --hardware NAME`).

```python
from trl_smol.memory.devices import DEVICE_NAMES, described_hardware

described_hardware("h100-80gb")          # one H100 80GB as torch reports it: 79.1 GiB, compute capability 9.0
described_hardware("8xh100-80gb")        # eight of them
described_hardware("a100-40gb+fa2")      # with the flash-attn package installed
described_hardware("cpu-16")             # a 16-core CPU machine with 64 GiB of RAM
```

A name is `[Nx]DEVICE[+OPTION...]`: `Nx` for N GPUs of the kind, and options for what the machine has installed beyond
`pip install trl-smol` (FlashAttention and Liger are separate installs, so they are not assumed):

- `+fa2`: the `flash-attn` package (Ampere or newer), `+fa3`: FlashAttention 3 (Hopper);
- `+liger`: the `liger_kernel` package (Ampere or newer);
- `+offline`: the Hub cannot be reached (HF_HUB_OFFLINE), so no Hub kernel may be fetched at load.

Otherwise a described GPU machine has bitsandbytes (4-bit on CUDA), Triton and `kernels` (which transformers 5.25
installs), the Hub online, and attention SDPA, eager and flex attention.

The memory of a device is torch's `total_memory`, which is what the planner reads from a real device: a little less
than the nominal size. The figures are the "GPU 0 has a total capacity of X GiB" that PyTorch's out-of-memory message
prints on that GPU, as public reports quote it (the smallest common value); driver and ECC settings move them by about
0.1 GiB. The nvidia-smi totals in the comments are the drivers' (the H200's is this project's own,
`tests/benchmarks/results/gpu/machine_h200_2026-11-30.txt`). Host RAM is an assumption, per GPU as cloud instances
have it (AWS p5: 256 GiB, p4d: 144 GiB, g5 / g6 4xlarge: 64 GiB, g4dn.xlarge: 16 GiB; an RTX 4090 desktop: 64 GiB);
it bounds only the CPU tier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .hardware import GIB, DeviceInfo, HardwareInfo


class UnknownDeviceError(ValueError):
    """A described machine's name that is not in the catalogue, or an option that cannot apply to it."""


@dataclass(frozen=True)
class DescribedGPU:
    """One GPU kind: its name as torch reports it, torch's `total_memory` in GiB, compute capability, native bf16,
    and the host RAM per GPU assumed for the machine (GiB)."""

    device_name: str
    total_gib: float
    capability: tuple[int, int]
    bf16: bool
    host_ram_gib: float


# Memory: torch's `total_memory` as PyTorch's out-of-memory messages print it on each GPU (module docstring).
GPUS: dict[str, DescribedGPU] = {
    "h200": DescribedGPU("NVIDIA H200", 139.80, (9, 0), True, 256),  # nvidia-smi 143771 MiB
    "h100-80gb": DescribedGPU("NVIDIA H100 80GB HBM3", 79.10, (9, 0), True, 256),  # nvidia-smi 81559 MiB
    "a100-80gb": DescribedGPU("NVIDIA A100-SXM4-80GB", 79.15, (8, 0), True, 144),  # nvidia-smi 81920 MiB
    "a100-40gb": DescribedGPU("NVIDIA A100-SXM4-40GB", 39.39, (8, 0), True, 144),  # nvidia-smi 40960 MiB
    "a10g": DescribedGPU("NVIDIA A10G", 22.06, (8, 6), True, 64),
    "l4": DescribedGPU("NVIDIA L4", 22.03, (8, 9), True, 64),  # nvidia-smi 23034 MiB
    "rtx4090": DescribedGPU("NVIDIA GeForce RTX 4090", 23.64, (8, 9), True, 64),  # nvidia-smi 24564 MiB
    "t4": DescribedGPU("Tesla T4", 14.74, (7, 5), False, 16),  # nvidia-smi 15360 MiB; no bf16 on Turing
}

# CPU machines: cores (for the description) and RAM in GiB.
CPUS: dict[str, tuple[int, float]] = {"cpu-16": (16, 64)}

DEVICE_NAMES: tuple[str, ...] = (*GPUS, *CPUS)
OPTIONS = ("fa2", "fa3", "liger", "offline")
MAX_GPUS = 64

_NAME = re.compile(r"(?:(\d+)x)?([a-z0-9-]+)")


def _unknown(name: str, why: str = "") -> UnknownDeviceError:
    return UnknownDeviceError(
        f"{why or f'unknown machine `{name}`'}. Valid names: {', '.join(DEVICE_NAMES)}; `Nx` before a GPU's name "
        f"for N of them (8xh100-80gb), and {', '.join('+' + option for option in OPTIONS)} after it for what is "
        "installed (a100-40gb+fa2)."
    )


def described_hardware(name: str) -> HardwareInfo:
    """The [`HardwareInfo`] of the machine `name` describes (module docstring); [`UnknownDeviceError`] otherwise."""
    text = str(name).strip().lower()
    base, *options = text.split("+")
    match = _NAME.fullmatch(base)
    if match is None or (match.group(2) not in GPUS and match.group(2) not in CPUS):
        raise _unknown(text)
    count, kind = int(match.group(1) or 1), match.group(2)
    for option in options:
        if option not in OPTIONS:
            raise _unknown(text, f"unknown option `+{option}` in `{text}`")
    if not 1 <= count <= MAX_GPUS:
        raise _unknown(text, f"`{text}`: a machine has 1 to {MAX_GPUS} GPUs")
    offline = "offline" in options
    if kind in CPUS:
        if match.group(1) or set(options) - {"offline"}:
            raise _unknown(text, f"`{text}`: a CPU machine takes no GPU count and no GPU package")
        cores, ram = CPUS[kind]
        return HardwareInfo(
            accelerator="cpu",
            host_ram=int(ram * GIB),
            host_ram_available=int(ram * GIB),
            # bitsandbytes >= 0.46 quantizes to 4-bit on a CPU too (the parity tests train QLoRA on one).
            bnb_4bit=True,
            attention_kernels=("sdpa", "eager", "flex_attention"),
            hub_kernels=True,
            hub_offline=offline,
            notes=(f"described machine `{text}`: {cores} CPU cores, {ram:g} GiB RAM",),
        )
    gpu = GPUS[kind]
    kernels = ["sdpa", "eager", "flex_attention"]
    for option, kernel, minimum, label in (
        ("fa2", "flash_attention_2", (8, 0), "FlashAttention 2 needs Ampere or newer (compute capability 8.0)"),
        ("fa3", "flash_attention_3", (9, 0), "FlashAttention 3 needs a Hopper GPU (compute capability 9.x)"),
        ("liger", None, (8, 0), "Liger's kernels need Ampere or newer (compute capability 8.0)"),
    ):
        if option not in options:
            continue
        if gpu.capability < minimum or (option == "fa3" and gpu.capability[0] != 9):
            capability = ".".join(map(str, gpu.capability))
            raise _unknown(text, f"`{text}`: {label}; {kind} is {capability}")
        if kernel:
            kernels.append(kernel)
    total = int(gpu.total_gib * GIB)
    installed = [f"+{option}" for option in options]
    return HardwareInfo(
        accelerator="cuda",
        devices=(DeviceInfo(gpu.device_name, total, total, gpu.capability),) * count,
        host_ram=int(gpu.host_ram_gib * count * GIB),
        host_ram_available=int(gpu.host_ram_gib * count * GIB),
        bf16=gpu.bf16,
        fp16=True,
        bnb_4bit=True,
        attention_kernels=tuple(kernels),
        hub_kernels=True,
        hub_offline=offline,
        liger_kernel="liger" in options,
        triton=True,
        notes=(f"described machine `{text}`" + (f" ({', '.join(installed)})" if installed else ""),),
    )
