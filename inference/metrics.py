"""Prometheus metrics of the loaded engines, exposed by whichever view serves ``/metrics``.

A custom collector reads each engine's stats at scrape time, so nothing is updated on the hot
path and nothing is reported (not even zeros) before the default model is loaded. Every engine
has its own scheduler: its queue, generations and counters carry a ``model`` label.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

_registered = False


class EngineCollector(Collector):
    def collect(self) -> Iterator:
        from inference.runtime import engines_loaded

        engines = engines_loaded()  # the default one first
        if not engines:
            return
        every = [(engine, engine.stats()) for engine in engines]
        info = InfoMetricFamily(
            "platform_model",
            'A loaded model (the default one has default="true")',
            labels=["name", "family", "quantization", "device", "demo", "default"],
        )
        for position, (_engine, stats) in enumerate(every):
            model = stats["model"]
            info.add_metric(
                [
                    model["name"],
                    model["family"],
                    model["quantization"],
                    model["device"],
                    str(model["is_demo"]).lower(),
                    str(position == 0).lower(),
                ],
                {},
            )
        yield info
        # Each engine's own scheduler: its queue, generations and counters, labelled by model.
        for name, documentation, key in (
            ("platform_inference_queue_depth", "Requests waiting for the model", "queue_depth"),
            ("platform_inference_active_generations", "Requests being generated", "active_generations"),
            (
                "platform_inference_tokens_per_second",
                "Completion tokens per second over the last minute",
                "tokens_per_second",
            ),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["model"])
            for _engine, stats in every:
                gauge.add_metric([stats["model"]["name"]], stats[key])
            yield gauge
        for key, documentation in (
            ("requests_total", "Finished model requests"),
            ("errors_total", "Model requests that ended in an error"),
            ("prompt_tokens_total", "Prompt tokens processed"),
            ("completion_tokens_total", "Completion tokens generated"),
        ):
            counter = CounterMetricFamily(
                f"platform_inference_{key.removesuffix('_total')}", documentation, labels=["model"]
            )
            for _engine, stats in every:
                counter.add_metric([stats["model"]["name"]], stats[key])
            yield counter
        # The machine's devices and host are shared by every model: read once.
        stats = every[0][1]
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
