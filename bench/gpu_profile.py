"""For the record on a GPU: tokens/s single and 8-concurrent, NF4 vs bf16, peak memory,
time to first token — through the engine (continuous batching), on the newcomer prompt of
bench/inference_continuous.py (one 672×672 image, a long instruction). Not part of CI.

It measures only where CUDA is present and says so otherwise: no figure here is claimed for a
machine it has not run on.

    .venv/bin/python bench/gpu_profile.py --model DIR [--tokens 256] [--quantizations nf4,bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from inference_common import bench_model_dir, newcomer_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model directory (default: the bench-size demo model)")
    parser.add_argument("--tokens", type=int, default=256, help="answer tokens per request")
    parser.add_argument("--quantizations", default="nf4,bf16")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_profile: no CUDA device here; nothing measured.")
        sys.exit(2)

    from inference.engine.core import Engine, EngineLimits
    from inference.engine.loading import load_model

    path = bench_model_dir(args.model)
    print(f"model: {path}  device: {torch.cuda.get_device_name(0)}  answers: {args.tokens} tokens")
    print(f"{'quant':6s} {'TTFT ms':>9s} {'1 tok/s':>9s} {'8 tok/s':>9s} {'8 / 1':>6s} {'peak GiB':>9s}")
    for quantization in args.quantizations.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        loaded = load_model(path, quantization=quantization)
        engine = Engine(loaded, EngineLimits(max_concurrent=8, max_batch=8, max_queue=64))

        run(engine, 1, args.tokens)  # warm-up: first calls allocate
        single, ttfts = zip(*(run(engine, 1, args.tokens) for _ in range(3)), strict=True)
        eight = max(run(engine, 8, args.tokens)[0] for _ in range(2))
        rate = statistics.median(single)
        ttft = statistics.median(t[0] for t in ttfts)
        peak = torch.cuda.max_memory_allocated() / 2**30
        engine.shutdown()
        print(f"{quantization:6s} {ttft * 1000:9.1f} {rate:9.1f} {eight:9.1f} {eight / rate:6.2f} {peak:9.2f}")
        del engine, loaded
        torch.cuda.empty_cache()


def run(engine, concurrency: int, tokens: int) -> tuple[float, list[float]]:
    """``concurrency`` newcomers at once: aggregate tokens/s and each one's time to first token."""
    started = time.perf_counter()
    handles = [
        engine.submit(newcomer_prompt(n), department=f"d{n % 3}", max_new_tokens=tokens, min_new_tokens=tokens)
        for n in range(concurrency)
    ]
    results = [handle.result() for handle in handles]
    wall = time.perf_counter() - started
    produced = sum(result.usage.completion_tokens for result in results)
    return produced / wall, [result.usage.time_to_first_token for result in results]


if __name__ == "__main__":
    main()
