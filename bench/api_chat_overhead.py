"""/v1/chat/completions over HTTP vs the engine called directly with the same request, same run.

The platform is served by uvicorn on loopback (tests/support/live_server.py: own SQLite database, the
bench-size demo model); this process loads the same model into its own engine. Both answer the
same greedy request (an inline 96×96 PNG + text, 128 new tokens at most, so both produce the same
tokens); runs alternate. Figures:

- non-streaming: median(API) / median(engine)            goal <= 1.10
- streaming time to first token: median(API TTFT) - median(engine TTFT), in ms   goal <= 10 ms
  (on a 1-token answer: API = request sent → first chunk after the role chunk; engine = submit →
  first event), because the demo model's noise often decodes to printable text only at the end

    .venv/bin/python bench/api_chat_overhead.py [--model DIR] [--runs 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from inference_common import REPO, api_client, bench_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each process (both the same)")
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(REPO))
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)

    from inference.engine.core import Engine, EngineLimits
    from inference.engine.handles import Done, Token
    from inference.engine.inputs import Message
    from inference.engine.loading import load_model
    from tests.support.live_server import LiveServer

    model_dir = bench_model_dir(args.model)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (40, 120, 200)).save(buffer, format="PNG")
    png = buffer.getvalue()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    text = "Describe this picture in detail."

    server = LiveServer(
        Path(tempfile.mkdtemp(prefix="bench-api-")),
        model_path=model_dir,
        env={
            "MODEL_QUANTIZATION": "fp32",
            "API_KEY_RATE_PER_MINUTE": "1000000",
            "PLATFORM_PROFILE": "test",
            "OMP_NUM_THREADS": str(args.threads),  # the server's torch uses as many threads as this one
        },
    )
    server.start()
    try:
        client, model = api_client(server, timeout=300)
        inline = "data:image/png;base64," + base64.b64encode(png).decode()
        body = {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": text},
                        {"type": "image_url", "image_url": {"url": inline}},
                    ],
                }
            ],
            "max_tokens": args.tokens,
            "temperature": 0,
        }
        engine = Engine(load_model(model_dir, quantization="fp32"), EngineLimits())
        messages = [Message("user", text, images=(image,))]

        def direct() -> tuple[float, int]:
            started = time.perf_counter()
            result = engine.submit(messages, department="bench", max_new_tokens=args.tokens, temperature=0.0).result()
            return time.perf_counter() - started, result.usage.completion_tokens

        def api() -> tuple[float, int]:
            started = time.perf_counter()
            answer = client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            return elapsed, answer.json()["usage"]["completion_tokens"]

        # Time to first token: the random-weight model's byte-level output often completes a
        # printable piece only at the end, so "first token" is measured on a 1-token answer:
        # submit → its first event (Token or Done) vs request sent → the first chunk after the
        # role chunk (its content or its finish). The difference is the API's overhead on TTFT
        # (parsing, image decoding and validation, authentication, audit context, SSE framing).
        def direct_ttft() -> float:
            started = time.perf_counter()
            handle = engine.submit(messages, department="bench", max_new_tokens=1, temperature=0.0)
            first = None
            for event in handle.events():
                if first is None and isinstance(event, Token | Done):
                    first = time.perf_counter() - started
            return first

        role_times: list[float] = []
        nonstream_one: list[float] = []

        def api_ttft() -> float:
            started = time.perf_counter()
            first = role = None
            with client.stream(
                "POST", "/v1/chat/completions", json={**body, "max_tokens": 1, "stream": True}
            ) as stream:
                for line in stream.iter_lines():
                    if role is None and '"role":"assistant"' in line:
                        role = time.perf_counter() - started
                        role_times.append(role)
                    if first is None and line.startswith("data: {"):
                        choices = json.loads(line[6:])["choices"]
                        if choices and (choices[0]["delta"].get("content") or choices[0]["finish_reason"]):
                            first = time.perf_counter() - started
            return first

        for run in (direct, api, direct_ttft, api_ttft):  # warm-up: caches, first-call costs
            run()
        direct_times, api_times, counts = [], [], set()
        direct_first, api_first = [], []
        for _ in range(args.runs):
            seconds, tokens = direct()
            direct_times.append(seconds)
            counts.add(("engine", tokens))
            seconds, tokens = api()
            api_times.append(seconds)
            counts.add(("api", tokens))
            direct_first.append(direct_ttft())
            api_first.append(api_ttft())
            started = time.perf_counter()
            client.post("/v1/chat/completions", json={**body, "max_tokens": 1}).raise_for_status()
            nonstream_one.append(time.perf_counter() - started)
        engine.shutdown()
    finally:
        server.stop()

    ratio = statistics.median(api_times) / statistics.median(direct_times)
    ttft_overhead_ms = (statistics.median(api_first) - statistics.median(direct_first)) * 1000
    print(f"completion tokens per answer: {sorted(counts)}")
    print(f"engine direct   median {statistics.median(direct_times) * 1000:8.1f} ms  (runs: {args.runs})")
    print(f"/v1 non-stream  median {statistics.median(api_times) * 1000:8.1f} ms")
    print(f"non-streaming overhead ratio: {ratio:.3f}  (goal <= 1.10)")
    print(f"engine TTFT     median {statistics.median(direct_first) * 1000:8.1f} ms")
    print(f"/v1 stream TTFT median {statistics.median(api_first) * 1000:8.1f} ms")
    print(f"streaming TTFT overhead: {ttft_overhead_ms:.1f} ms  (goal <= 10 ms)")
    print(
        f"(diagnostics: role chunk after {statistics.median(role_times) * 1000:.1f} ms; "
        f"non-streaming 1-token answer {statistics.median(nonstream_one) * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
