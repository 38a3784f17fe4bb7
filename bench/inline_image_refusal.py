"""The time to refuse 40 oversized inline images on /v1/chat/completions, against baselines of the
same run (IP-2: before the image budget, 40 inline 40-megapixel images ran for 70 s).

The platform is served by uvicorn on loopback (tests/support/live_server.py: own database, the
bench-size demo model). Each image is a well-formed PNG whose header declares 8000 x 5000 grey
pixels (40 MP, the upload limit; ~40 KB compressed, so the request body is ~2 MB). Rounds
alternate; each figure is the median:

- refuse 40: the 40 images in one request, answered 400 ``too_many_images`` (counted, nothing
  resolved or decoded)
- refuse 6: six of them, answered 413 ``too_many_pixels`` (each header read, nothing decoded)
- baseline, tiny request: one 64 x 48 inline PNG, one new token, answered 200
- baseline, decode one: this process decoding one of those images with Pillow (what the server
  did 40 times over before the budget)

Printed: each time and the ratios refuse-40 / tiny request and refuse-40 / decode one.

    .venv/bin/python bench/inline_image_refusal.py [--model DIR] [--rounds 7]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import tempfile
import time
from pathlib import Path

from inference_common import REPO, api_client, bench_model_dir


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _body(model: str, urls: list[str], max_tokens: int = 1) -> dict:
    parts = [{"type": "text", "text": "What is in these pictures?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": max_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(REPO))
    import httpx
    from PIL import Image

    from tests.assets.damaged_samples import png_declaring
    from tests.support.live_server import LiveServer

    huge = png_declaring(8000, 5000)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 60)).save(buffer, format="PNG")
    tiny = buffer.getvalue()

    server = LiveServer(
        Path(tempfile.mkdtemp(prefix="bench-refusal-")),
        model_path=bench_model_dir(args.model),
        env={"MODEL_QUANTIZATION": "fp32", "API_KEY_RATE_PER_MINUTE": "1000000", "PLATFORM_PROFILE": "test"},
    )
    server.start()
    try:
        client, model = api_client(server, timeout=600)
        forty = _body(model, [_data_url(huge)] * 40)
        six = _body(model, [_data_url(huge)] * 6)
        small = _body(model, [_data_url(tiny)])

        def timed_post(body: dict, status: int, code: str | None) -> float:
            started = time.perf_counter()
            answer = client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - started
            if answer.status_code != status or (code and answer.json()["error"]["code"] != code):
                raise SystemExit(f"expected {status} {code}, got {answer.status_code}: {answer.text[:300]}")
            return elapsed

        def decode_one() -> float:
            started = time.perf_counter()
            with Image.open(io.BytesIO(huge)) as image:
                image.load()
            return time.perf_counter() - started

        runs = {
            "refuse 40": lambda: timed_post(forty, 400, "too_many_images"),
            "refuse 6": lambda: timed_post(six, 413, "too_many_pixels"),
            "tiny request": lambda: timed_post(small, 200, None),
            "decode one": decode_one,
        }
        for run in runs.values():  # warm-up: first-call costs
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(run())
    finally:
        server.stop()

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"request body: 40 images {len(httpx.Request('POST', '/', json=forty).content) / 1e6:.2f} MB")
    for name, value in medians.items():
        print(f"{name:14s} median {value * 1000:9.1f} ms  (rounds: {args.rounds})")
    print(f"refuse 40 / tiny request: {medians['refuse 40'] / medians['tiny request']:.3f}")
    print(f"refuse 40 / decode one:   {medians['refuse 40'] / medians['decode one']:.3f}")
    print(f"refuse 6  / decode one:   {medians['refuse 6'] / medians['decode one']:.3f}")


if __name__ == "__main__":
    main()
