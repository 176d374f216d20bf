"""Shared by the speed benchmarks: timing, machine load, memory high-water mark, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from seggpt_video.runtime import detect_cpu_features

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """What the numbers were measured on, and what else was running at the time."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_features": detect_cpu_features().to_dict(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "other_busy_processes": busy_processes(),
    }


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using more than ``threshold`` % of a CPU (contention for our timings)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True
        ).stdout
    except OSError:
        return []
    busy = []
    for line in out.splitlines()[1:]:
        pid, pcpu, args = line.split(None, 2)
        if int(pid) != os.getpid() and float(pcpu) >= threshold:
            busy.append(f"{pcpu}% {args[:100]}")
    return busy


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call, the device drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


class PeakMemory:
    """Peak bytes of tensors allocated during a block, above what was allocated at entry.

    CUDA: the allocator's own peak. CPU: replayed from the profiler's allocation events (resident
    memory cannot tell, as freed blocks stay in the process for reuse).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._profile = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
            )
            self._profile.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._profile.__exit__(*exc_info)
        # Each op's own net allocation ("[memory]" events are frees), in time order.
        live = peak = 0
        for event in sorted(self._profile.events(), key=lambda e: e.time_range.start):
            live += event.self_cpu_memory_usage
            peak = max(peak, live)
        self.peak_bytes = peak


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 4096, repeats: int = 3):
    """Best GFLOP/s of a large square GEMM in ``dtype``: the roofline's ceiling."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console(width=200).print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_json(name: str, data: dict, path: Path | None = None) -> Path:
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
