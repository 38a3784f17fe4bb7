"""What the hardware is doing: the GPU through NVML when present, else the host's CPU and RAM.

``nvidia-ml-py`` (module ``pynvml``) is optional: production images with a GPU install it;
without it, or without a GPU, the same keys are reported for the host so the UI and
``/metrics`` always have something true to show.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def _nvml_stats() -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no GPU: NVML raises its own error types
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            device = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(device)
            utilisation = pynvml.nvmlDeviceGetUtilizationRates(device)
            name = pynvml.nvmlDeviceGetName(device)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_used_bytes": int(memory.used),
                    "memory_total_bytes": int(memory.total),
                    "temperature_celsius": int(pynvml.nvmlDeviceGetTemperature(device, pynvml.NVML_TEMPERATURE_GPU)),
                    "utilisation_percent": int(utilisation.gpu),
                }
            )
        return gpus
    except Exception as exc:
        logger.warning("NVML query failed: %s", exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised NVML is best-effort
            logger.debug("nvmlShutdown failed", exc_info=True)


def _torch_cuda_stats() -> list[dict[str, Any]] | None:
    import sys

    torch = sys.modules.get("torch")  # never import torch just to learn there is no GPU
    if torch is None or not torch.cuda.is_available():
        return None
    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        gpus.append(
            {
                "index": index,
                "name": torch.cuda.get_device_name(index),
                "memory_used_bytes": int(total - free),
                "memory_total_bytes": int(total),
                "temperature_celsius": None,
                "utilisation_percent": None,
            }
        )
    return gpus


def _host_stats() -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count(),
        "memory_used_bytes": int(memory.total - memory.available),
        "memory_total_bytes": int(memory.total),
        "process_rss_bytes": int(psutil.Process().memory_info().rss),
    }


def device_stats() -> dict[str, Any]:
    gpus = _nvml_stats()
    source = "nvml"
    if gpus is None:
        gpus = _torch_cuda_stats()
        source = "torch.cuda"
    if not gpus:
        return {"source": "host", "gpus": [], "host": _host_stats()}
    return {"source": source, "gpus": gpus, "host": _host_stats()}
