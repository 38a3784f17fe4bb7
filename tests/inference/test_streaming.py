"""Streaming events, cancellation (stop button, client gone) and the per-request timeout."""

from __future__ import annotations

import asyncio
import time

from inference.engine.errors import GENERATION_TIMEOUT
from inference.engine.handles import Done, Error, Queued, Token, event_dict
from inference.engine.inputs import Message
from tests.support.waiting import wait_until, wait_until_async

LONG = {"max_new_tokens": 400, "min_new_tokens": 400}


async def test_async_iteration_streams_queued_tokens_then_done(engine, red_image):
    handle = engine.submit([Message("user", "describe", images=(red_image,))], max_new_tokens=6, min_new_tokens=6)
    events = [event async for event in handle]
    assert isinstance(events[0], Queued) and events[0].position == 1
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) >= 1 and all(t.text for t in tokens)
    assert isinstance(events[-1], Done) and events[-1].usage.completion_tokens == 6
    assert event_dict(events[-1])["type"] == "done"
    assert event_dict(events[-1])["usage"]["completion_tokens"] == 6


def test_cancel_stops_at_the_next_step_and_frees_the_model(engine):
    handle = engine.submit([Message("user", "talk")], **LONG)
    for event in handle.events():
        if isinstance(event, Token):
            started = time.perf_counter()
            handle.cancel()
            break
    final = wait_until(lambda: handle.final, timeout=10, message="the cancelled request did not finish")
    assert isinstance(final, Done) and final.finish_reason == "cancelled"
    assert final.usage.completion_tokens < 50
    # The worker is free again: the next request starts without waiting for 400 tokens.
    nxt = engine.generate([Message("user", "next")], max_new_tokens=2, min_new_tokens=2)
    assert nxt.usage.queue_seconds < 2
    assert time.perf_counter() - started < 5
    assert engine.scheduler.active() == 0


async def test_leaving_the_async_loop_cancels_the_request(engine):
    handle = engine.submit([Message("user", "talk")], **LONG)
    async for event in handle:
        if isinstance(event, Token):
            break  # the websocket went away
    await wait_until_async(lambda: handle.final, timeout=5, message="leaving the loop did not finish the request")
    assert isinstance(handle.final, Done) and handle.final.finish_reason == "cancelled"
    assert handle.final.usage.completion_tokens < 50


async def test_a_cancelled_task_cancels_the_request(engine):
    handle = engine.submit([Message("user", "talk")], **LONG)
    streaming = asyncio.Event()

    async def consume():
        async for event in handle:
            if isinstance(event, Token):
                streaming.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(streaming.wait(), timeout=10)  # cancelled while tokens are arriving
    task.cancel()
    await wait_until_async(lambda: handle.final, timeout=5, message="cancelling the task did not finish the request")
    assert isinstance(handle.final, Done) and handle.final.finish_reason == "cancelled"


def test_the_timeout_stops_a_long_generation(make_engine):
    engine = make_engine(timeout_seconds=0.5)
    handle = engine.submit([Message("user", "talk")], max_new_tokens=2000, min_new_tokens=2000)
    events = list(handle.events())
    assert isinstance(events[-1], Error)
    assert events[-1].code == "timeout"
    assert events[-1].message == GENERATION_TIMEOUT.format(seconds=0.5)
    assert sum(isinstance(e, Token) for e in events) < 2000
