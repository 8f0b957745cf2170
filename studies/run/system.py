"""System measures of a trial's worker process, sampled at each report, carried with the
report and logged by the driver under `system/` (MLflow charts them in their own section).
They never enter the Trainer's history, so golden histories do not see them."""

from __future__ import annotations

import os
import time

import torch

from textvae_core.measures import key as metric_key, prefix

SYSTEM_PREFIX = prefix("system")  # the group's keys: measures.key("system", name)
CPU = metric_key("system", "process_cpu_percent")  # CPU time over wall time since the last report
RSS = metric_key("system", "process_rss_megabytes")  # resident memory now
GPU_MEMORY = metric_key("system", "gpu_memory_megabytes")  # the process's peak CUDA allocation
GPU_UTILIZATION = metric_key(
    "system", "gpu_utilization_percent"
)  # NVML's sample, where NVML answers
SYSTEM_MEASURES = (CPU, RSS, GPU_MEMORY, GPU_UTILIZATION)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_megabytes() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except (OSError, ValueError, IndexError):
        import resource  # no /proc (macOS): the peak instead, in kilobytes there too on Linux

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SystemSampler:
    """Samples this process: each call to `sample()` covers the time since the last."""

    def __init__(self):
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def sample(self) -> dict[str, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        out = {}
        if wall > self._wall:
            out[CPU] = 100.0 * (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        rss = _rss_megabytes()
        if rss is not None:
            out[RSS] = rss
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out[GPU_MEMORY] = torch.cuda.max_memory_allocated() / 2**20
            try:
                out[GPU_UTILIZATION] = float(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 - no NVML (pynvml) or no permission: leave it out
                pass
        return out
