"""Prometheus metrics of the engine, exposed by whichever view serves ``/metrics``.

A custom collector reads the engine's stats at scrape time, so nothing is updated on the hot
path and nothing is reported (not even zeros) before the model is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

_registered = False


class EngineCollector(Collector):
    def collect(self) -> Iterator:
        from inference.runtime import current_engine

        engine = current_engine()
        if engine is None:
            return
        stats = engine.stats()
        model = stats["model"]
        yield InfoMetricFamily(
            "platform_model",
            "The loaded model",
            value={
                "name": model["name"],
                "family": model["family"],
                "quantization": model["quantization"],
                "device": model["device"],
                "demo": str(model["is_demo"]).lower(),
            },
        )
        gauges = {
            "platform_inference_queue_depth": ("Requests waiting for the model", stats["queue_depth"]),
            "platform_inference_active_generations": ("Requests being generated", stats["active_generations"]),
            "platform_inference_tokens_per_second": (
                "Completion tokens per second over the last minute",
                stats["tokens_per_second"],
            ),
        }
        for name, (documentation, value) in gauges.items():
            yield GaugeMetricFamily(name, documentation, value=value)
        for key, documentation in (
            ("requests_total", "Finished model requests"),
            ("errors_total", "Model requests that ended in an error"),
            ("prompt_tokens_total", "Prompt tokens processed"),
            ("completion_tokens_total", "Completion tokens generated"),
        ):
            yield CounterMetricFamily(
                f"platform_inference_{key.removesuffix('_total')}", documentation, value=stats[key]
            )
        device = stats["device"]
        memory_used = GaugeMetricFamily("platform_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"])
        memory_total = GaugeMetricFamily("platform_gpu_memory_total_bytes", "GPU memory in total", labels=["gpu"])
        temperature = GaugeMetricFamily("platform_gpu_temperature_celsius", "GPU temperature", labels=["gpu"])
        utilisation = GaugeMetricFamily("platform_gpu_utilisation_percent", "GPU utilisation", labels=["gpu"])
        for gpu in device["gpus"]:
            label = [str(gpu["index"])]
            memory_used.add_metric(label, gpu["memory_used_bytes"])
            memory_total.add_metric(label, gpu["memory_total_bytes"])
            if gpu["temperature_celsius"] is not None:
                temperature.add_metric(label, gpu["temperature_celsius"])
            if gpu["utilisation_percent"] is not None:
                utilisation.add_metric(label, gpu["utilisation_percent"])
        yield from (memory_used, memory_total, temperature, utilisation)
        host = device["host"]
        yield GaugeMetricFamily("platform_host_cpu_percent", "Host CPU utilisation", value=host["cpu_percent"])
        yield GaugeMetricFamily(
            "platform_host_memory_used_bytes", "Host memory in use", value=host["memory_used_bytes"]
        )
        yield GaugeMetricFamily(
            "platform_process_resident_bytes", "This process's RSS", value=host["process_rss_bytes"]
        )


def register_metrics() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(EngineCollector())
        _registered = True
