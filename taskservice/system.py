"""Host load figures for health endpoints: CPU and memory from psutil, GPUs from NVML when present."""

from __future__ import annotations

import functools

import psutil
import pynvml


@functools.cache
def _nvml_ready() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    return True


def gpu_utilization() -> list[float]:
    """Per-GPU utilisation in percent; an empty list on a machine without NVIDIA GPUs."""
    if not _nvml_ready():
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        return [
            float(pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu)
            for i in range(count)
        ]
    except pynvml.NVMLError:
        return []


def cpu_percent() -> float:
    # interval=None compares with the previous call: non-blocking, as a request handler must be.
    return float(psutil.cpu_percent(interval=None))


def memory_percent() -> float:
    return float(psutil.virtual_memory().percent)
