"""What machine this is and how to run on it: device, precision, CPU features, threads.

The CPU path is decided here from what the CPU does natively (README, Speed per CPU kind):
bf16 only where the CPU has bf16 instructions (AMX or AVX512-BF16); elsewhere it is emulated
and about 7x slower than fp32 (measured: one ViT-L frame 72 s in bf16 against 10.7 s in fp32
on an AVX2-only AMD EPYC), so the command line refuses it there.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from seggpt_video.errors import UserError

# The features that decide the CPU path, by their Linux /proc/cpuinfo names, with display names.
FEATURE_NAMES = {
    "amx_bf16": "AMX-BF16",
    "avx512_bf16": "AVX512-BF16",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx2": "AVX2",
    "bf16": "BF16 (Arm)",
}
# torch.cpu.get_capabilities() names that differ from /proc/cpuinfo's.
_TORCH_NAMES = {"avx512_f": "avx512f"}

BF16_REFUSED = (
    "--dtype bf16: this CPU has no native bfloat16 (no AVX512-BF16 or AMX); emulated bf16 runs "
    "about 7x slower than fp32: use --dtype fp32 (or auto)"
)


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU does natively, as /proc/cpuinfo's flag names (empty: could not tell).

    source: where the flags came from ("torch", "/proc/cpuinfo", or "given" for a made-up CPU);
    capability: the vector kernels torch dispatches to ("AVX512", "AVX2", ...), None if unknown.
    """

    flags: frozenset[str] = frozenset()
    capability: str | None = None
    source: str = "given"

    @classmethod
    def from_flags(cls, flags: Iterable[str], capability: str | None = None) -> CpuFeatures:
        """A CPU with these flags (e.g. {"avx2"}), so tests can stand in any machine."""
        return cls(frozenset(flags), capability, "given")

    @property
    def known(self) -> bool:
        """Whether anything was detected (an unknown CPU is not refused anything)."""
        return bool(self.flags)

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls in hardware: AMX tiles or AVX512-BF16 dot products (or Arm's BF16)."""
        return bool(self.flags & {"amx_bf16", "avx512_bf16", "bf16"})

    def names(self) -> list[str]:
        """Display names of the features that matter here, strongest first."""
        return [name for flag, name in FEATURE_NAMES.items() if flag in self.flags]

    def to_dict(self) -> dict:
        """For result files: the deciding flags, native bf16, torch's kernel level, the source."""
        return {
            "flags": sorted(self.flags & FEATURE_NAMES.keys()),
            "native_bf16": self.native_bf16,
            "torch_capability": self.capability,
            "source": self.source,
        }


def _torch_flags() -> set[str] | None:
    """The CPU's features as torch's cpuinfo sees them (it checks the OS enables them too)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.10
    if get_capabilities is None:
        return None
    try:
        capabilities = get_capabilities()
    except RuntimeError:
        return None
    return {_TORCH_NAMES.get(key, key) for key, value in capabilities.items() if value is True}


def _proc_cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The first processor's flags (x86 "flags", Arm "Features") from Linux's cpuinfo."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


@functools.cache
def detect_cpu_features() -> CpuFeatures:
    """This machine's CPU features: torch's answer where it has one, else /proc/cpuinfo."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    for source, flags in (("torch", _torch_flags()), ("/proc/cpuinfo", _proc_cpuinfo_flags())):
        if flags:
            return CpuFeatures(frozenset(flags), capability, source)
    return CpuFeatures(frozenset(), capability, "none")


@dataclass(frozen=True)
class CpuPath:
    """How inference runs on a CPU: threads, bf16, packed linears, the bf16 attention form.

    attention: the form ``SegGPT.set_attention`` is given ("sdpa": per dtype, the bias as the
    mask in fp32 and folded into q and k in bf16/fp16; "bias": the mask in every dtype).
    """

    threads: int
    native_bf16: bool
    packed_linears: bool
    attention: str


def choose_cpu_path(features: CpuFeatures, threads: int | None = None) -> CpuPath:
    """The CPU path for these features; threads default to OMP_NUM_THREADS or physical cores.

    Packed bf16 linears (model/packed.py) skip oneDNN's weight reorder on every call: faster with
    AMX (1.08x a ViT-L frame) and with AVX512-BF16 alone (1.03x a frame); without native bf16
    the command line refuses bf16, so they are off. The bias folded into q and k widens the
    attention matmuls from 64 to 160 channels, which pays only where matmuls are cheap: with
    AMX a bf16 frame is 1.22x faster than with the bias as the mask, with AVX512-BF16 alone
    1.46x slower (measured: README, Speed per CPU kind), so without AMX the bias is the mask in
    every dtype. Arm and unknown CPUs are unmeasured and get the masked form.
    """
    threads = default_threads() if threads is None else threads
    native = features.native_bf16
    attention = "sdpa" if "amx_bf16" in features.flags else "bias"
    return CpuPath(threads=threads, native_bf16=native, packed_linears=native, attention=attention)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    return resolved


def resolve_dtype(
    dtype: str, device: torch.device, features: CpuFeatures | None = None
) -> torch.dtype:
    """'auto' is fp16 on CUDA and fp32 on the CPU; bf16 on a CPU only where it is native.

    bf16 is not exact, so it stays the user's choice; emulated it would cost ~7x fp32's time.
    fp16 on the CPU is allowed but slow. features: the CPU's (default: this machine's).
    """
    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    aliases = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = aliases.get(dtype, dtype)
    if dtype not in names:
        raise UserError(f"--dtype {dtype}: expected auto, fp32, fp16 or bf16")
    if dtype == "bf16" and device.type == "cpu":
        features = features or detect_cpu_features()
        if features.known and not features.native_bf16:
            raise UserError(BF16_REFUSED)
    return names[dtype]


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share one core's matmul units)."""
    cpus = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(len(cores), 1)


def default_threads() -> int:
    """OMP_NUM_THREADS when set (a shared machine), else the physical cores this process may use."""
    return int(os.environ.get("OMP_NUM_THREADS") or physical_cores())


def tune_cpu_runtime(threads: int | None = None) -> int:
    """Set torch's CPU threads (default: physical cores, or OMP_NUM_THREADS) and keep freed memory.

    glibc hands every block above 32 MB back to the OS on free, so each ViT-L block page-faults
    its attention bias and activations in afresh (measured: README, Speed); keeping freed
    blocks in the heap avoids that. Returns the thread count.
    """
    threads = default_threads() if threads is None else threads
    torch.set_num_threads(threads)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return threads
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)
    return threads
