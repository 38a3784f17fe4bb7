"""The scheduler: bounded queue, department fairness, queue positions, dynamic batching.

The first tests drive the Scheduler with a batch runner that records what it is given and
finishes requests when the test says so: that isolates the queueing policy (which requests,
in which order, in which batches) from the model. The batching tests then use the real engine
with its per-request scheduling (one ``generate`` call per batch, kept as the benchmarks'
baseline); the continuous scheduling has tests/inference/test_continuous.py.
"""

from __future__ import annotations

import threading

import pytest

from inference.engine.errors import ENGINE_BUSY, EngineBusy
from inference.engine.handles import Done, GenerationHandle, Queued, Usage
from inference.engine.inputs import GenerationRequest, Message, validate_params
from inference.engine.scheduler import Scheduler
from tests.support.waiting import wait_until

USER = (Message("user", "hi"),)


class GatedRunner:
    """Records batches; each batch blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Semaphore(0)
        self.started = threading.Semaphore(0)

    def __call__(self, batch, release) -> None:
        self.batches.append([p.request.request_id for p in batch])
        self.started.release()
        self.gate.acquire(timeout=10)
        for pending in batch:
            pending.handle._push(Done(Usage(1, 1, 0, 0, 0, 1, len(batch)), "stop"))
            release(pending)


def request(rid: str, department: str, **params) -> tuple[GenerationRequest, GenerationHandle]:
    req = GenerationRequest(messages=USER, params=validate_params(cap=64, **params), department=department)
    req.request_id = rid
    return req, GenerationHandle(rid, timeout=30)


@pytest.fixture
def gated():
    runner = GatedRunner()
    made = []

    def make(**kwargs) -> Scheduler:
        kwargs.setdefault("batch_window", 0)
        scheduler = Scheduler(runner, **kwargs)
        made.append(scheduler)
        return scheduler

    yield runner, make
    for _ in range(100):
        runner.gate.release()
    for scheduler in made:
        scheduler.shutdown()


def occupy(runner, scheduler) -> None:
    """Keep the single worker busy with a first request so the rest stay queued."""
    scheduler.submit(*request("busy", "x"))
    assert runner.started.acquire(timeout=5)


def test_a_full_queue_answers_busy_with_retry_after(gated):
    runner, make = gated
    scheduler = make(max_concurrent=1, max_batch=1, max_queue=2)
    occupy(runner, scheduler)
    scheduler.submit(*request("a", "finance"))
    scheduler.submit(*request("b", "finance"))
    with pytest.raises(EngineBusy) as caught:
        scheduler.submit(*request("c", "quality"))
    assert caught.value.queued == 2 and caught.value.retry_after >= 1
    assert str(caught.value) == ENGINE_BUSY.format(queued=2, retry_after=caught.value.retry_after)


def test_departments_are_served_round_robin(gated):
    runner, make = gated
    scheduler = make(max_concurrent=1, max_batch=1, max_queue=10)
    occupy(runner, scheduler)
    for rid in ("f1", "f2", "f3", "f4"):
        scheduler.submit(*request(rid, "finance"))  # a burst from one department...
    scheduler.submit(*request("q1", "quality"))  # ...must not make the other wait for all of it
    scheduler.submit(*request("q2", "quality"))
    for _ in range(6):
        runner.gate.release()
        assert runner.started.acquire(timeout=5)
    served = [batch[0] for batch in runner.batches[1:]]
    assert served[:4] == ["f1", "q1", "f2", "q2"]
    assert served[4:] == ["f3", "f4"]


def test_queue_positions_are_published_and_updated(gated):
    runner, make = gated
    scheduler = make(max_concurrent=1, max_batch=1, max_queue=10)
    occupy(runner, scheduler)
    handles = {}
    for rid, dept in (("f1", "finance"), ("f2", "finance"), ("q1", "quality")):
        req, handle = request(rid, dept)
        handles[rid] = handle
        scheduler.submit(req, handle)
    # Round-robin order: f1, q1, f2.
    assert (handles["f1"].position, handles["q1"].position, handles["f2"].position) == (1, 2, 3)
    runner.gate.release()  # "busy" ends, f1 starts
    assert runner.started.acquire(timeout=5)

    def published() -> list[int]:
        return [e.position for e in list(handles["f2"]._events) if isinstance(e, Queued)]

    # f1 leaving the queue makes the scheduler publish positions again (q1's, then f2's).
    wait_until(lambda: len(published()) >= 3, timeout=5, message="f1 started but no new positions were published")
    assert (handles["q1"].position, handles["f2"].position) == (1, 2)
    # f2 came second (2), q1's arrival moved it behind (3), f1 starting moved it up (2).
    assert published() == [2, 3, 2]


def test_a_request_cancelled_in_the_queue_leaves_it_at_once(gated):
    runner, make = gated
    scheduler = make(max_concurrent=1, max_batch=1)
    occupy(runner, scheduler)
    req, handle = request("a", "finance")
    handle._on_cancel = scheduler.withdraw
    scheduler.submit(req, handle)
    assert scheduler.queue_depth() == 1
    handle.cancel()
    assert scheduler.queue_depth() == 0
    assert isinstance(handle.final, Done) and handle.final.finish_reason == "cancelled"


def test_requests_that_arrive_together_share_one_batch(gated):
    runner, make = gated
    scheduler = make(max_concurrent=8, max_batch=8, batch_window=0.3)
    for n in range(5):
        scheduler.submit(*request(f"r{n}", "finance" if n % 2 else "quality"))
    assert runner.started.acquire(timeout=5)
    assert sorted(runner.batches[0]) == ["r0", "r1", "r2", "r3", "r4"]


def test_only_compatible_requests_are_batched(gated):
    runner, make = gated
    scheduler = make(max_concurrent=8, max_batch=8)
    occupy(runner, scheduler)
    scheduler.submit(*request("g1", "a"))
    scheduler.submit(*request("s1", "b", temperature=0.7))
    scheduler.submit(*request("g2", "c"))
    scheduler.submit(*request("seeded", "d", temperature=0.7, seed=1))
    for _ in range(3):
        runner.gate.release()
        assert runner.started.acquire(timeout=5)
    batches = runner.batches[1:]
    assert batches[0] == ["g1", "g2"]  # greedy with greedy
    assert ["s1"] in batches and ["seeded"] in batches  # a seeded request runs alone


def test_concurrent_engine_requests_run_as_one_generate_call(make_engine, red_image):
    engine = make_engine(batch_window_seconds=0.3, scheduling="per_request")
    generate = engine.loaded.model.generate
    calls = []

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    engine.loaded.model.generate = counting_generate
    try:
        handles = [
            engine.submit(
                [Message("user", f"question {n}", images=(red_image,) if n % 2 else ())],
                department=f"d{n % 2}",
                max_new_tokens=3 + n,
                min_new_tokens=3 + n,
            )
            for n in range(4)
        ]
        results = [h.result() for h in handles]
    finally:
        del engine.loaded.model.generate
    assert calls == [4]
    # Each row kept its own max_new_tokens and was streamed on its own.
    assert [r.usage.completion_tokens for r in results] == [3, 4, 5, 6]
    assert {r.usage.batch_size for r in results} == {4}


def test_batched_greedy_answers_equal_solo_answers(make_engine):
    prompts = ["short", "a somewhat longer question about invoices", "质量报告"]
    solo_engine = make_engine(batch_window_seconds=0, scheduling="per_request")
    solo = [solo_engine.generate([Message("user", p)], max_new_tokens=6, min_new_tokens=6).text for p in prompts]
    batch_engine = make_engine(batch_window_seconds=0.3, scheduling="per_request")
    handles = [batch_engine.submit([Message("user", p)], max_new_tokens=6, min_new_tokens=6) for p in prompts]
    batched = [h.result() for h in handles]
    assert {r.usage.batch_size for r in batched} == {3}
    assert [r.text for r in batched] == solo
