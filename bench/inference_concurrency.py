"""Throughput under concurrency: 1, 4 and 8 simultaneous requests → aggregate tokens/s.

Each level submits N requests at once (different prompts, different departments), greedy,
128 tokens each with end-of-turn suppressed, and measures total completion tokens over the
wall time until the last one is done. Figures are ratios to the single-request level.
Goal with batching: 8 concurrent >= 3x the single-request tokens/s.

    .venv/bin/python bench/inference_concurrency.py [--model DIR] [--tokens 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

from inference_common import bench_model_dir, prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--levels", default="1,4,8")
    args = parser.parse_args()

    from inference.engine.core import Engine, EngineLimits
    from inference.engine.loading import load_model

    loaded = load_model(bench_model_dir(args.model), quantization="fp32")
    engine = Engine(loaded, EngineLimits(max_concurrent=8, max_batch=8, max_queue=64))
    levels = [int(n) for n in args.levels.split(",")]

    def run(concurrency: int) -> tuple[float, int, float]:
        started = time.perf_counter()
        handles = [
            engine.submit(prompt(n), department=f"dept{n % 3}", max_new_tokens=args.tokens, min_new_tokens=args.tokens)
            for n in range(concurrency)
        ]
        results = [handle.result() for handle in handles]
        wall = time.perf_counter() - started
        tokens = sum(r.usage.completion_tokens for r in results)
        return tokens / wall, max(r.usage.batch_size for r in results), wall

    run(1)  # warm-up
    best: dict[int, tuple[float, int, float]] = {}
    for _ in range(args.repeats):
        for level in levels:
            figure = run(level)
            if level not in best or figure[0] > best[level][0]:
                best[level] = figure
    engine.shutdown()
    base = best[levels[0]][0]
    print(f"model: {loaded.name} ({loaded.parameter_count / 1e6:.1f} M parameters, fp32, {loaded.device})")
    for level in levels:
        rate, batch, wall = best[level]
        print(
            f"{level} concurrent: {rate:8.1f} tokens/s aggregate  ({wall:.2f} s wall, largest batch {batch})"
            f"  = {rate / base:.2f}x single"
        )
    print(f"goal: 8 concurrent >= 3x single -> {'met' if best.get(8, (0,))[0] >= 3 * base else 'NOT met'}")


if __name__ == "__main__":
    main()
