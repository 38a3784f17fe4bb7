"""Continuous batching: the figures, each a ratio against a baseline of the same run.

Every newcomer carries one 672×672 image and at least 300 prompt tokens (the count is printed).
The baseline is the engine's former per-request batching (``EngineLimits(scheduling=
"per_request")``: one ``generate`` call per batch, run until its longest answer ends), kept
selectable for exactly this comparison, on the same loaded model.

1. newcomer's time to first token behind two running long answers ÷ alone (goal ≤ 2×)
2. mixed workload, random arrivals, answers of 16–512 tokens: throughput vs per-request (≥ 1.5×)
3. same workload: p95 time to first token, per-request ÷ continuous (≥ 5×)
4. 8 concurrent vs 1, aggregate tokens/s (≥ 4×)
5. single stream vs bare ``model.generate`` (≤ 1.05×)
6. worst inter-token gap of a running stream while 4 newcomers join ÷ its median gap (≤ 3×)

    .venv/bin/python bench/inference_continuous.py [--model DIR] [--long 384] [--requests 16] [--rounds 3]

A shared, busy machine stretches single steps at random: ``--rounds N`` repeats figures 1 and 6
and prints each round's ratio and their median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time

from inference_common import bench_model_dir, long_prompt, newcomer_prompt

CONTINUOUS, PER_REQUEST = "continuous", "per_request"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait_for(predicate, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        pause.wait(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--long", type=int, default=384, help="tokens of the running long answers")
    parser.add_argument("--requests", type=int, default=16, help="requests in the mixed workload")
    parser.add_argument("--gap", type=float, default=0.25, help="mean seconds between mixed arrivals")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--places", type=int, default=8, help="MAX_CONCURRENT_GENERATIONS = MAX_BATCH_SIZE, both")
    parser.add_argument("--chunk", type=int, default=0, help="prefill chunk tokens (0: the engine's default)")
    parser.add_argument("--only", default="1,2,4,5,6", help="figures to run (3 comes with 2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of figures 1 and 6 (median printed)")
    args = parser.parse_args()
    only = {int(n) for n in args.only.split(",")}

    import torch

    from inference.engine.core import Engine, EngineLimits
    from inference.engine.loading import load_model, vision_dtype_device
    from inference.engine.prompting import model_inputs, place_inputs

    loaded = load_model(bench_model_dir(args.model), quantization="fp32")
    torch.set_num_threads(torch.get_num_threads())
    prompt_tokens = model_inputs(loaded, [newcomer_prompt(0)])["input_ids"].shape[1]
    print(
        f"model: {loaded.name} ({loaded.parameter_count / 1e6:.1f} M parameters, fp32, {loaded.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"newcomer: one 672x672 image, {prompt_tokens} prompt tokens")

    def engine(scheduling: str) -> Engine:
        limits = EngineLimits(
            max_concurrent=args.places,
            max_batch=args.places,
            max_queue=64,
            scheduling=scheduling,
            prefill_chunk_tokens=args.chunk,
        )
        return Engine(loaded, limits)

    def newcomer_ttft(eng: Engine, n: int, tokens: int = 16) -> float:
        result = eng.submit(newcomer_prompt(n), max_new_tokens=tokens, min_new_tokens=tokens).result()
        return result.usage.time_to_first_token

    # Warm both paths once (first calls allocate).
    for scheduling in (CONTINUOUS, PER_REQUEST):
        eng = engine(scheduling)
        newcomer_ttft(eng, 0, 4)
        eng.shutdown()

    if 1 in only:
        print(f"\n1. newcomer's time to first token behind two running {args.long}-token answers / alone")
        ratios: dict[str, list[float]] = {CONTINUOUS: [], PER_REQUEST: []}
        for scheduling in [CONTINUOUS, PER_REQUEST] * args.rounds:
            eng = engine(scheduling)
            alone = statistics.median(newcomer_ttft(eng, n) for n in range(3))
            behind = []
            for n in range(2):
                longs = [
                    eng.submit(long_prompt(n * 2 + k), max_new_tokens=args.long, min_new_tokens=args.long)
                    for k in range(2)
                ]
                wait_for(lambda longs=longs: all(h._history_text for h in longs))  # both are streaming
                behind.append(newcomer_ttft(eng, 10 + n))
                for handle in longs:
                    handle.result()
            eng.shutdown()
            worst = max(behind)
            ratios[scheduling].append(worst / alone)
            print(
                f"   {scheduling:11s}: alone {alone * 1000:7.1f} ms, behind {worst * 1000:8.1f} ms (worst of 2)"
                f"  = {worst / alone:6.2f}x   (goal <= 2x)"
            )
        if args.rounds > 1:
            for scheduling, values in ratios.items():
                listed = ", ".join(f"{value:.2f}" for value in values)
                print(
                    f"   {scheduling:11s}: median of {len(values)} rounds {statistics.median(values):6.2f}x ({listed})"
                )

    if 2 in only:
        rng = random.Random(args.seed)
        workload = []
        at = 0.0
        for n in range(args.requests):
            at += rng.expovariate(1 / args.gap)
            workload.append((at, n, rng.randint(16, 512)))
        total_tokens = sum(tokens for _, _, tokens in workload)
        print(
            f"\n2./3. mixed workload: {args.requests} newcomers, Poisson arrivals (mean gap {args.gap} s), "
            f"answers of 16-512 tokens ({total_tokens} in all)"
        )
        figures = {}
        for scheduling in (PER_REQUEST, CONTINUOUS):
            eng = engine(scheduling)
            handles = []
            started = time.perf_counter()
            for at, n, tokens in workload:
                delay = started + at - time.perf_counter()
                if delay > 0:
                    threading.Event().wait(delay)
                handles.append(eng.submit(newcomer_prompt(n), max_new_tokens=tokens, min_new_tokens=tokens))
            results = [h.result() for h in handles]
            wall = time.perf_counter() - started
            eng.shutdown()
            produced = sum(r.usage.completion_tokens for r in results)
            ttfts = [r.usage.time_to_first_token for r in results]
            figures[scheduling] = (produced / wall, percentile(ttfts, 0.95), statistics.median(ttfts), wall)
            rate, p95, median, wall = figures[scheduling]
            print(
                f"   {scheduling:11s}: {rate:7.1f} tokens/s ({wall:6.1f} s), "
                f"TTFT p95 {p95:7.2f} s, median {median:6.2f} s"
            )
        (base_rate, base_p95, *_), (rate, p95, *_) = figures[PER_REQUEST], figures[CONTINUOUS]
        print(f"   throughput continuous / per-request: {rate / base_rate:5.2f}x   (goal >= 1.5x)")
        print(f"   p95 TTFT per-request / continuous:   {base_p95 / p95:5.2f}x   (goal >= 5x better)")

    if 4 in only:
        print("\n4. aggregate tokens/s, 8 concurrent newcomers vs 1 (128 tokens each)")
        for scheduling in (CONTINUOUS, PER_REQUEST):
            eng = engine(scheduling)
            rates = {}
            for level in (1, 8):
                best = 0.0
                for _ in range(2):
                    started = time.perf_counter()
                    handles = [
                        eng.submit(newcomer_prompt(n), department=f"d{n % 3}", max_new_tokens=128, min_new_tokens=128)
                        for n in range(level)
                    ]
                    tokens = sum(h.result().usage.completion_tokens for h in handles)
                    best = max(best, tokens / (time.perf_counter() - started))
                rates[level] = best
            eng.shutdown()
            print(
                f"   {scheduling:11s}: 1 -> {rates[1]:7.1f} tokens/s, 8 -> {rates[8]:7.1f} tokens/s"
                f"  = {rates[8] / rates[1]:5.2f}x   (goal >= 4x)"
            )

    if 5 in only:
        print("\n5. one stream through the engine vs bare model.generate (newcomer prompt, 128 tokens)")
        messages = newcomer_prompt(0)

        def bare() -> float:
            started = time.perf_counter()
            inputs = model_inputs(loaded, [messages])
            dtype, device = vision_dtype_device(loaded.model)
            placed = place_inputs(inputs, input_device=device, vision_dtype=dtype, vision_device=device)
            with torch.inference_mode():
                loaded.model.generate(
                    **placed, max_new_tokens=128, min_new_tokens=128, do_sample=False, top_p=None, top_k=None
                )
            return time.perf_counter() - started

        eng = engine(CONTINUOUS)

        def through_engine() -> float:
            started = time.perf_counter()
            eng.submit(messages, max_new_tokens=128, min_new_tokens=128).result()
            return time.perf_counter() - started

        bare(), through_engine()
        bare_times, engine_times = [], []
        for _ in range(5):
            bare_times.append(bare())
            engine_times.append(through_engine())
        eng.shutdown()
        b, e = statistics.median(bare_times), statistics.median(engine_times)
        print(f"   bare {b:.3f} s, engine {e:.3f} s (medians of 5) = {e / b:5.3f}x   (goal <= 1.05x)")

    if 6 in only:
        print("\n6. a running stream's inter-token gaps while 4 newcomers join")
        worst_ratios, p95_ratios = [], []
        for _ in range(args.rounds):
            worst_ratio, p95_ratio = gap_round(engine(CONTINUOUS), args.long)
            worst_ratios.append(worst_ratio)
            p95_ratios.append(p95_ratio)
        if args.rounds > 1:
            listed = ", ".join(f"{value:.2f}" for value in worst_ratios)
            print(
                f"   median of {args.rounds} rounds: worst / median {statistics.median(worst_ratios):5.2f}x "
                f"({listed}); p95 / median {statistics.median(p95_ratios):5.2f}x"
            )


def gap_round(eng, long: int) -> tuple[float, float]:
    """One round of figure 6 on a fresh engine: (worst gap ÷ median gap, p95 gap ÷ median gap)."""
    batch = eng.scheduler._runner.batch
    tracker = batch.tracker
    stamps: dict[str, list[float]] = {}
    advance = tracker._advance

    def timed_advance(row, token, now):  # the engine's own per-token moment, per row
        stamps.setdefault(row.request.request_id, []).append(now)
        advance(row, token, now)

    tracker._advance = timed_advance
    running = eng.submit(long_prompt(0), max_new_tokens=long, min_new_tokens=long)
    wait_for(lambda: len(stamps.get(running.request_id, ())) >= 20)
    for n in range(4):
        newcomer = eng.submit(newcomer_prompt(20 + n), max_new_tokens=64, min_new_tokens=64)
        wait_for(lambda newcomer=newcomer: newcomer.request_id in stamps)  # it joined
        wait_for(lambda n=n: len(stamps[running.request_id]) >= 20 * (n + 2) or running.finished)
    running.result()
    fused = getattr(batch, "fused_steps", None)  # absent before fused steps existed
    chunking = f"{batch.chunk_tokens} tokens at the end" + ("" if fused is None else f", {fused} fused steps")
    eng.shutdown()
    times = stamps[running.request_id]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    median, worst, p95 = statistics.median(gaps), max(gaps), percentile(gaps, 0.95)
    top = ", ".join(f"{gap * 1000:.1f}" for gap in sorted(gaps)[-5:])
    print(f"   {len(gaps)} gaps; p95 {p95 * 1000:.1f} ms ({p95 / median:.2f}x); largest five (ms): {top}")
    print(
        f"   median gap {median * 1000:6.2f} ms, worst {worst * 1000:7.2f} ms  = {worst / median:5.2f}x   "
        f"(goal <= 3x; prefill chunks: {chunking})"
    )
    return worst / median, p95 / median


if __name__ == "__main__":
    main()
