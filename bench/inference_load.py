"""Load time and resident memory of the demo model in fp32 vs NF4 (bitsandbytes, on this CPU).

Each mode is loaded in a fresh interpreter (so neither benefits from the other's imports or
caches); the figures are the load time (manifest check + from_pretrained) and the growth of
the process's RSS caused by the load, with NF4 reported as a ratio to fp32.

    .venv/bin/python bench/inference_load.py [--model DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from inference_common import bench_model_dir

CHILD = """
import json, sys, time
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/platform"]
import psutil, torch, transformers, bitsandbytes, accelerate  # imports are not part of the load
import inference
from inference.engine.loading import load_model
process = psutil.Process()
before = process.memory_info().rss
started = time.perf_counter()
loaded = load_model(sys.argv[1], quantization=sys.argv[2])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rss_growth": process.memory_info().rss - before,
                  "footprint": loaded.model.get_memory_footprint(),
                  "parameters": loaded.parameter_count, "quantization": loaded.quantization}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = bench_model_dir(args.model)
    repo = str(Path(__file__).resolve().parents[1])
    figures: dict[str, list[dict]] = {"fp32": [], "nf4": []}
    for _ in range(args.runs):
        for mode in figures:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(model), mode, repo], capture_output=True, text=True, check=True
            )
            figures[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    weights = sum(p.stat().st_size for p in Path(model).glob("*.safetensors"))
    print(f"model: {model} ({weights / 2**20:.1f} MiB of fp32 weights on disk)")
    summary = {}
    for mode, runs in figures.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = statistics.median(r["rss_growth"] for r in runs)
        footprint = runs[0]["footprint"]
        summary[mode] = (seconds, rss, footprint)
        print(
            f"{mode}: load {seconds:.2f} s (median of {len(runs)}), RSS growth {rss / 2**20:.1f} MiB, "
            f"model weights in memory {footprint / 2**20:.1f} MiB"
        )
    (t32, m32, f32), (t4, m4, f4) = summary["fp32"], summary["nf4"]
    print(f"nf4 / fp32: load time {t4 / t32:.2f}x, RSS growth {m4 / m32:.2f}x, weights in memory {f4 / f32:.2f}x")


if __name__ == "__main__":
    main()
