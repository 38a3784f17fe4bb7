"""A failed generation fails its own requests with a clear error and the engine keeps serving.

These tests run the per-request scheduling (one ``generate`` call per batch), whose failure
point is that call; the continuous scheduling's failures (a prefill, a decoding step) are
tests/inference/test_continuous.py's.

A real CUDA out-of-memory cannot happen on this CPU-only machine, so the model's ``generate``
is replaced for one call by one that raises torch's own OutOfMemoryError — the stand-in for
the GPU, as the style guide allows; everything around it (engine, scheduler, handles) is real.
"""

from __future__ import annotations

import pytest
import torch

from inference.engine.errors import GENERATION_FAILED, OUT_OF_MEMORY, PROMPT_TOO_LONG, GenerationFailed
from inference.engine.handles import Error
from inference.engine.inputs import Message


def _fail_once(engine, exc):
    real = engine.loaded.model.generate

    def failing(*args, **kwargs):
        engine.loaded.model.generate = real
        raise exc

    engine.loaded.model.generate = failing
    return real


@pytest.mark.parametrize(
    ("exc", "message", "code"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), OUT_OF_MEMORY, "out_of_memory"),
        (RuntimeError("shape mismatch"), GENERATION_FAILED.format(error="RuntimeError"), "generation_failed"),
    ],
)
def test_a_failed_batch_fails_its_requests_and_the_next_one_is_served(make_engine, exc, message, code):
    engine = make_engine(batch_window_seconds=0.2, scheduling="per_request")
    _fail_once(engine, exc)
    try:
        handles = [engine.submit([Message("user", f"q{n}")], max_new_tokens=3) for n in range(2)]
        finals = [list(h.events())[-1] for h in handles]
    finally:
        engine.loaded.model.__dict__.pop("generate", None)
    assert all(isinstance(f, Error) and f.message == message and f.code == code for f in finals)
    assert engine.scheduler.active() == 0
    result = engine.generate([Message("user", "again")], max_new_tokens=2, min_new_tokens=2)
    assert result.usage.completion_tokens == 2
    assert engine.stats(include_device=False)["errors_total"] == 2


def test_result_raises_the_error(make_engine):
    engine = make_engine(scheduling="per_request")
    _fail_once(engine, RuntimeError("boom"))
    try:
        with pytest.raises(GenerationFailed) as caught:
            engine.generate([Message("user", "x")], max_new_tokens=2)
    finally:
        engine.loaded.model.__dict__.pop("generate", None)
    assert caught.value.code == "generation_failed"


def test_a_prompt_longer_than_the_context_fails_alone(make_engine, loaded_model):
    engine = make_engine(batch_window_seconds=0.2)
    limit = loaded_model.max_positions
    too_long = engine.submit([Message("user", "word " * limit)], max_new_tokens=2)
    fine = engine.submit([Message("user", "short")], max_new_tokens=2, min_new_tokens=2)
    final = list(too_long.events())[-1]
    assert isinstance(final, Error) and final.code == "prompt_too_long"
    assert final.message.startswith(PROMPT_TOO_LONG.split("{")[0])
    assert fine.result().usage.completion_tokens == 2
