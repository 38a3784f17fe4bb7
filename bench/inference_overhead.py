"""Platform overhead: one streamed request through engine + scheduler vs bare ``model.generate``.

Same model, same inputs, same greedy 128 tokens (end-of-turn suppressed so both produce
exactly 128), alternating runs in one process; the figure is median(engine) / median(bare).
Goal: <= 1.05.

    .venv/bin/python bench/inference_overhead.py [--model DIR] [--runs 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

from inference_common import bench_model_dir, prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    import torch

    from inference.engine.core import Engine, EngineLimits
    from inference.engine.handles import Done
    from inference.engine.loading import load_model, vision_dtype_device
    from inference.engine.prompting import batch_inputs, place_inputs

    loaded = load_model(bench_model_dir(args.model), quantization="fp32")
    model, tokens = loaded.model, args.tokens
    messages = prompt()
    engine = Engine(loaded, EngineLimits())  # default settings, incl. the 15 ms batching window

    def bare() -> float:
        started = time.perf_counter()
        # The same preparation the engine does: chat template, processor, placement.
        inputs = batch_inputs(loaded.processor, [messages])
        dtype, device = vision_dtype_device(model)
        placed = place_inputs(inputs, input_device=device, vision_dtype=dtype, vision_device=device)
        with torch.inference_mode():
            out = model.generate(
                **placed, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, top_p=None, top_k=None
            )
        assert out.shape[1] - placed["input_ids"].shape[1] == tokens
        return time.perf_counter() - started

    def through_engine() -> float:
        started = time.perf_counter()
        handle = engine.submit(messages, max_new_tokens=tokens, min_new_tokens=tokens)
        final = None
        for event in handle.events(poll=0.05):
            final = event
        assert isinstance(final, Done) and final.usage.completion_tokens == tokens, final
        return time.perf_counter() - started

    bare()
    through_engine()  # warm-up both paths
    bare_times, engine_times = [], []
    for _ in range(args.runs):
        bare_times.append(bare())
        engine_times.append(through_engine())
    engine.shutdown()
    b, e = statistics.median(bare_times), statistics.median(engine_times)
    print(f"model: {loaded.name} ({loaded.parameter_count / 1e6:.1f} M parameters, fp32, {loaded.device})")
    bare_runs = ", ".join(f"{t:.3f}" for t in bare_times)
    engine_runs = ", ".join(f"{t:.3f}" for t in engine_times)
    print(f"bare model.generate, {tokens} tokens: median {b:.3f} s  (runs: {bare_runs})")
    print(f"engine + scheduler, streamed:     median {e:.3f} s  (runs: {engine_runs})")
    print(f"overhead ratio engine/bare: {e / b:.3f}x  (goal <= 1.05x)")


if __name__ == "__main__":
    main()
