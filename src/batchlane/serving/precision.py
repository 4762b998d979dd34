"""What the machine can do, and the number format and thread count the default model runs with.

``detect()`` reads the hardware once (CPU model and flags from ``/proc/cpuinfo``, physical cores within this
process's CPU affinity and cgroup quota, the CUDA device). ``choose_precision`` is a pure function of the requested
precision, the device and that description, so every rule is tested with plain tables.

The CPU rule under ``auto`` comes from measurements (``docs/performance.md``): bf16 runs on the matrix units of CPUs
with AMX (Sapphire Rapids and later, 3-4× fp32 for this model), and on CPUs with AVX512-BF16 dot products but no AMX
(AMD Zen 4/5, Cooper Lake), where bf16 matmuls still run at about 2.5× fp32 and the model at about 1.5-2× with the
same labels. Without either, bf16 is emulated and slower than fp32, so ``auto`` keeps fp32. fp16 is never chosen
on a CPU: its matmuls are emulated there (about 100× slower than fp32 on the machines we measured).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_CPUINFO = Path("/proc/cpuinfo")
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Hardware:
    """The parts of the machine that decide precision and threads."""

    cpu_model: str = "unknown CPU"
    physical_cores: int = 1
    logical_cpus: int = 1
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda_name: str | None = None
    cuda_bf16: bool = False

    @property
    def amx_bf16(self) -> bool:
        return "amx_bf16" in self.cpu_flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.cpu_flags

    @property
    def avx512_vnni(self) -> bool:
        return "avx512_vnni" in self.cpu_flags or "avx512vnni" in self.cpu_flags

    def describe(self) -> str:
        """One line for logs and benchmark reports, e.g. ``AMD EPYC 9R14, 2 cores (avx512_bf16, avx512_vnni)``."""
        units = [f for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni") if f in self.cpu_flags]
        cores = f"{self.physical_cores} core{'s' if self.physical_cores != 1 else ''}"
        if self.logical_cpus != self.physical_cores:
            cores += f" / {self.logical_cpus} threads"
        text = f"{self.cpu_model}, {cores}" + (f" ({', '.join(units)})" if units else "")
        return text + (f"; GPU {self.cuda_name}" if self.cuda_name else "")


@dataclass(frozen=True)
class Precision:
    """The chosen number format: ``name`` is ``fp32``, ``bf16`` or ``fp16``; ``reason`` says why (for the log).

    ``slow`` marks an explicit choice the hardware runs slower than fp32 (logged as a warning).
    """

    name: str
    reason: str
    slow: bool = False

    @property
    def dtype(self) -> Any:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]


def parse_cpuinfo(text: str, allowed: Iterable[int] | None = None) -> tuple[str, int, int, frozenset[str]]:
    """``(model name, physical cores, logical CPUs, flags)`` from ``/proc/cpuinfo`` text.

    Only processors in ``allowed`` (this process's affinity) are counted; a core is a distinct
    ``(physical id, core id)`` pair, so SMT siblings count once. Without core ids each processor is a core.
    """
    allowed_set = set(allowed) if allowed is not None else None
    model, flags = "", frozenset[str]()
    cores: set[tuple[str, str]] = set()
    logical = 0
    for block in text.strip().split("\n\n"):
        entry: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        if "processor" not in entry:
            continue
        processor = int(entry["processor"]) if entry["processor"].isdigit() else logical
        if allowed_set is not None and processor not in allowed_set:
            continue
        logical += 1
        model = model or entry.get("model name", "")
        flags = flags or frozenset(entry.get("flags", "").split())
        cores.add((entry.get("physical id", "0"), entry.get("core id", f"p{processor}")))
    return model or "unknown CPU", max(1, len(cores)), max(1, logical), flags


def cgroup_cpu_limit(text: str | None) -> int | None:
    """The CPU count a cgroup v2 ``cpu.max`` (``"quota period"`` or ``"max period"``) allows, rounded up."""
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return max(1, math.ceil(int(parts[0]) / int(parts[1])))
    except (ValueError, ZeroDivisionError):
        return None


def detect() -> Hardware:
    """Describe this machine (cheap: a few small files, and CUDA only when torch already has it)."""
    try:
        allowed: Iterable[int] | None = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        model, physical, logical, flags = parse_cpuinfo(_CPUINFO.read_text(), allowed)
    except OSError:
        logical = len(allowed) if allowed is not None else (os.cpu_count() or 1)
        model, physical, flags = "unknown CPU", logical, frozenset()
    try:
        quota = cgroup_cpu_limit(_CGROUP_CPU_MAX.read_text())
    except OSError:
        quota = None
    if quota is not None:
        physical, logical = min(physical, quota), min(logical, quota)
    cuda_name, cuda_bf16 = None, False
    try:
        import torch

        if torch.cuda.is_available():
            cuda_name, cuda_bf16 = torch.cuda.get_device_name(), bool(torch.cuda.is_bf16_supported())
    except ImportError:
        pass
    return Hardware(model, physical, logical, flags, cuda_name, cuda_bf16)


def choose_precision(requested: str, device: str, hardware: Hardware) -> Precision:
    """The number format for ``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``) on ``device``.

    An explicit choice is always honoured (with a reason that warns when it will be slow); ``auto`` picks bf16 on a
    GPU that supports it (else fp16), bf16 on a CPU with AMX or AVX512-BF16, and fp32 on other CPUs.
    """
    requested = requested.lower()
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    gpu = device.startswith("cuda")
    if requested == "fp32":
        return Precision("fp32", "requested")
    if requested == "fp16":
        if gpu:
            return Precision("fp16", "requested")
        return Precision(
            "fp16", "requested; fp16 matmuls are emulated on CPUs and much slower than fp32", True
        )
    if requested == "bf16":
        if gpu and not hardware.cuda_bf16:
            return Precision("bf16", "requested; this GPU has no native bf16, expect it to be slow", True)
        if not gpu and not (hardware.amx_bf16 or hardware.avx512_bf16):
            return Precision(
                "bf16", "requested; this CPU has no bf16 instructions, so it is slower than fp32", True
            )
        return Precision("bf16", "requested")
    if gpu:
        if hardware.cuda_bf16:
            return Precision("bf16", "auto: the GPU supports bf16")
        return Precision("fp16", "auto: the GPU has no bf16, fp16 instead")
    if hardware.amx_bf16:
        return Precision("bf16", "auto: the CPU has AMX bf16 tiles")
    if hardware.avx512_bf16:
        return Precision("bf16", "auto: the CPU has AVX512-BF16 (no AMX); bf16 still beats fp32 there")
    return Precision("fp32", "auto: the CPU has no bf16 instructions, so bf16 would be slower than fp32")


def default_threads(hardware: Hardware, env: dict[str, str] | None = None) -> int:
    """Intra-op threads when ``--threads`` is not given: ``OMP_NUM_THREADS`` if set, else the physical cores.

    One thread per physical core: a second SMT thread on a core shares its vector units and only adds contention.
    """
    raw = (env if env is not None else os.environ).get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return hardware.physical_cores


def configure_threads(threads: int) -> None:
    """Set torch's intra-op threads, and one inter-op thread (BERT-style graphs have no parallel branches).

    torch allows the inter-op pool to be sized only before it is first used, so a later call keeps what is set.
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already started in this process
            logger.debug("inter-op threads already started; keeping %d", torch.get_num_interop_threads())


# oneDNN's primitive cache and ideep's kernel LRU each keep up to 1,024 JIT-compiled kernels, one per input shape. With
# length-sorted batches nearly every forward has new shapes, so a bf16 server's RSS grew by hundreds of MB over a long
# job (measured: 500 → 950 MB over 200,000 records). A forward needs about five shapes, so 64 keeps every reuse that
# matters and bounds the memory. The variables are read when the first kernel is built; a value already set wins.
KERNEL_CACHE_CAPACITY = 64
KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_kernel_caches(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap the oneDNN/ideep kernel caches (bf16 on CPU) unless the environment already sets them."""
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(capacity))
