"""Continuous (iteration-level) batching: requests join the running batch at the next decoding
step and leave it the step they end, and every request's greedy answer is the one a bare
``model.generate`` of that request alone gives — for every native family, whatever joins or
leaves around it (fp32: token for token; NF4: up to the first near-tie of the solo run's best
two logits).

The reference is transformers' own ``generate`` on the same model, called directly (no engine);
the engine's tokens are read from each row as it ends (an observer on the engine's bookkeeping,
nothing replaced). Arrivals are ordered by conditions (a request has streamed so many tokens),
never by sleeps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import inference  # noqa: F401  (sets the offline switches before transformers loads)
from inference.engine.core import CONTINUOUS, Engine, EngineLimits
from inference.engine.demo_model import DemoModelSpec
from inference.engine.errors import ENGINE_BUSY, GENERATION_FAILED, OUT_OF_MEMORY, EngineBusy
from inference.engine.generation import Row
from inference.engine.handles import Done, Error, GenerationHandle, Token, Usage
from inference.engine.inputs import GenerationRequest, Message, validate_params
from inference.engine.scheduler import ContinuousScheduler
from tests.inference.conftest import generate_greedy, steps_before_a_near_tie
from tests.support.waiting import wait_until

NATIVE = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v", "glm46v", "llava", "idefics3")
RED = Image.new("RGB", (96, 64), (200, 30, 30))
BLUE = Image.new("RGB", (64, 80), (20, 40, 210))
GREEN = Image.new("RGB", (72, 72), (20, 180, 60))


@pytest.fixture(scope="session")
def continuous_model(demo_model_factory, model_loaded_once):
    """``continuous_model(family, quantization)``: each tiny demo model loaded once per session."""

    def load(family: str, quantization: str = "fp32"):
        return model_loaded_once(demo_model_factory(DemoModelSpec(family=family)), quantization)

    return load


class Recorder:
    """An engine whose rows' token ids are kept (by request id) as each row ends."""

    def __init__(self, loaded, **limits) -> None:
        limits.setdefault("scheduling", CONTINUOUS)
        self.engine = Engine(loaded, EngineLimits(**limits))
        self.tokens: dict[str, list[int]] = {}
        finished = self.engine._row_finished

        def observe(row: Row, pending, release) -> None:
            self.tokens[row.request.request_id] = list(row.generated)
            finished(row, pending, release)

        self.engine._row_finished = observe

    def submit(self, messages, **params) -> GenerationHandle:
        return self.engine.submit(messages, **params)

    def ids(self, handle: GenerationHandle) -> list[int]:
        return self.tokens[handle.request_id]


@pytest.fixture
def recorder():
    made: list[Recorder] = []

    def make(loaded, **limits) -> Recorder:
        made.append(Recorder(loaded, **limits))
        return made[-1]

    yield make
    for made_one in made:
        made_one.engine.shutdown()


def count_prefill_chunks(recorder: Recorder) -> dict[str, int]:
    """Prefill chunks per request id, counted as the engine runs them (an observer)."""
    batch = recorder.engine.scheduler._runner.batch
    counts: dict[str, int] = {}
    run_chunk = batch._prefill_chunk

    def counted(state, **how):
        counts[state.row.request.request_id] = counts.get(state.row.request.request_id, 0) + 1
        return run_chunk(state, **how)

    batch._prefill_chunk = counted
    return counts


def bare_generate(loaded, messages, *, max_new_tokens: int, min_new_tokens: int = 0, logits: bool = False):
    """transformers' generate on this one request: greedy token ids (and its logits if asked)."""
    out, prompt_length = generate_greedy(
        loaded, [messages], max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, logits=logits
    )
    ids = out.sequences[0, prompt_length:].tolist()
    eos = set(loaded.eos_token_ids)
    answer = []
    for token in ids:  # the engine's answer stops before end-of-turn (it is not a token of the text)
        if token in eos:
            break
        answer.append(token)
    if logits:
        return answer, torch.stack(out.logits, dim=1)[0].float()
    return answer


def tokens_streamed(handle: GenerationHandle) -> int:
    return len(handle._history_text)


def streamed_or_ended(handle: GenerationHandle, count: int):
    return lambda: tokens_streamed(handle) >= count or handle.finished


REQUESTS = [
    # long enough to be running still when the others arrive (a step of a tiny model is a few ms)
    ([Message("system", "Answer briefly."), Message("user", "What colour is this?", images=(RED,))], 200),
    ([Message("user", "a somewhat longer text-only question about this invoice")], 7),
    ([Message("user", "金额是多少？", images=(BLUE,))], 16),
    (
        [
            Message("user", "Look.", images=(RED,)),
            Message("assistant", "I see."),
            Message("user", "Now this?", images=(GREEN,)),
        ],
        3,
    ),
    ([Message("system", "You read invoices."), Message("user", "What is the total amount?")], 24),
]


@pytest.mark.parametrize("family", NATIVE)
def test_each_familys_answers_equal_bare_generate_whatever_joins_or_leaves(family, continuous_model, recorder):
    loaded = continuous_model(family)
    solo = [bare_generate(loaded, m, max_new_tokens=n, min_new_tokens=n) for m, n in REQUESTS]
    # Small prefill chunks: a newcomer's prompt goes in over several steps of the running rows.
    engine = recorder(loaded, max_concurrent=3, prefill_chunk_tokens=8)
    chunks = count_prefill_chunks(engine)
    first_messages, first_length = REQUESTS[0]
    first = engine.submit(first_messages, max_new_tokens=first_length, min_new_tokens=first_length)
    wait_until(streamed_or_ended(first, 1), timeout=30, message="the first request never streamed")
    # The others arrive while it runs: they join at its next step; shorter ones leave before it,
    # and with three places the last ones wait in the queue for a place to free.
    handles = [first] + [engine.submit(m, max_new_tokens=n, min_new_tokens=n) for m, n in REQUESTS[1:]]
    results = [handle.result() for handle in handles]
    assert [engine.ids(h) for h in handles] == solo
    assert [r.usage.completion_tokens for r in results] == [n for _, n in REQUESTS]
    assert results[0].usage.batch_size == 3  # it shared steps with two newcomers at most
    assert chunks[first.request_id] == 1  # alone: prefilled whole, as generate does
    assert all(chunks[h.request_id] >= 2 for h in handles[1:3])  # joined: in chunks between steps
    # text chunks went into the running rows' decoding forwards (one packed forward each)
    batch = engine.engine.scheduler._runner.batch
    assert batch.fused_steps >= 2 and batch.fused_image_steps >= 1  # images too, the vision tower in it
    assert max(r.usage.batch_size for r in results) <= 3
    assert engine.engine.scheduler.active() == 0


@pytest.mark.parametrize("family", NATIVE)
def test_each_familys_nf4_answers_equal_bare_generate_up_to_the_first_near_tie(family, continuous_model, recorder):
    loaded = continuous_model(family, "nf4")
    steps = 12
    requests = [m for m, _ in REQUESTS]
    engine = recorder(loaded, max_concurrent=8, prefill_chunk_tokens=8)
    first = engine.submit(requests[0], max_new_tokens=steps + 150, min_new_tokens=steps + 150)
    wait_until(streamed_or_ended(first, 1), timeout=30, message="the first request never streamed")
    handles = [engine.submit(m, max_new_tokens=steps, min_new_tokens=steps) for m in requests[1:]]
    for handle in [first, *handles]:
        handle.result()
    compared = 0
    for handle, messages in zip([first, *handles], requests, strict=True):
        solo, logits = bare_generate(loaded, messages, max_new_tokens=steps, min_new_tokens=steps, logits=True)
        compared += steps_before_a_near_tie(solo, engine.ids(handle)[:steps], logits, steps)
    assert compared >= 2 * steps, f"only {compared} tokens were compared: the comparison proved little"


@dataclass(frozen=True)
class Arrival:
    messages: int  # index into PROPERTY_PROMPTS
    max_new_tokens: int
    min_new_tokens: int
    after_tokens: int  # submitted once the previous request has streamed this many pieces (or ended)
    cancel_after: int | None  # cancelled once it has streamed this many pieces (None: never)


PROPERTY_PROMPTS = [
    [Message("user", "What colour?", images=(RED,))],
    [Message("user", "plain text question")],
    [Message("system", "Be brief."), Message("user", "发票", images=(BLUE,))],
    [Message("user", "two images", images=(RED, GREEN))],
    [Message("user", "x")],
    [Message("user", "see", images=(GREEN,)), Message("assistant", "ok"), Message("user", "and the total?")],
]

arrivals = st.builds(
    Arrival,
    messages=st.integers(0, len(PROPERTY_PROMPTS) - 1),
    max_new_tokens=st.integers(1, 24),
    min_new_tokens=st.integers(0, 24),
    after_tokens=st.integers(0, 6),
    cancel_after=st.one_of(st.none(), st.integers(0, 8)),
)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "llava"])
def test_random_arrivals_lengths_cancellations_and_images_keep_every_answer_solo(family, continuous_model):
    loaded = continuous_model(family)
    references: dict[tuple[int, int, int], list[int]] = {}

    def reference(arrival: Arrival) -> list[int]:
        key = (arrival.messages, arrival.max_new_tokens, min(arrival.min_new_tokens, arrival.max_new_tokens))
        if key not in references:
            references[key] = bare_generate(
                loaded, PROPERTY_PROMPTS[key[0]], max_new_tokens=key[1], min_new_tokens=key[2]
            )
        return references[key]

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(
        schedule=st.lists(arrivals, min_size=2, max_size=5),
        places=st.integers(1, 4),
        chunk=st.sampled_from([3, 8, 16, 512]),
    )
    def check(schedule: list[Arrival], places: int, chunk: int) -> None:
        engine = Recorder(loaded, max_concurrent=places, prefill_chunk_tokens=chunk)
        try:
            handles: list[GenerationHandle] = []
            for arrival in schedule:
                if handles:
                    wait_until(streamed_or_ended(handles[-1], arrival.after_tokens), timeout=30)
                handles.append(
                    engine.submit(
                        PROPERTY_PROMPTS[arrival.messages],
                        max_new_tokens=arrival.max_new_tokens,
                        min_new_tokens=min(arrival.min_new_tokens, arrival.max_new_tokens),
                        department=f"d{arrival.messages % 2}",
                    )
                )
            for arrival, handle in zip(schedule, handles, strict=True):
                if arrival.cancel_after is not None:
                    wait_until(streamed_or_ended(handle, arrival.cancel_after), timeout=30)
                    handle.cancel()
            for handle in handles:
                wait_until(lambda handle=handle: handle.finished, timeout=60)
            for arrival, handle in zip(schedule, handles, strict=True):
                final = handle.final
                assert isinstance(final, Done), final
                expected = reference(arrival)
                got = engine.tokens.get(handle.request_id, [])  # a request cancelled while queued has none
                if final.finish_reason == "cancelled":
                    assert got == expected[: len(got)]
                else:
                    assert got == expected
            assert engine.engine.scheduler.active() == 0 and engine.engine.scheduler.queue_depth() == 0
        finally:
            engine.engine.shutdown()

    check()


def test_a_newcomer_answers_while_a_long_answer_is_still_running(continuous_model, recorder):
    engine = recorder(continuous_model("qwen2_5_vl"))
    long = engine.submit([Message("user", "talk")], max_new_tokens=1500, min_new_tokens=1500)
    wait_until(streamed_or_ended(long, 1), timeout=30, message="the long request never streamed")
    short = engine.submit([Message("user", "Colour?", images=(RED,))], max_new_tokens=4, min_new_tokens=4)
    assert short.result().usage.completion_tokens == 4
    assert not long.finished, "the newcomer waited for the long answer"
    assert short.result().usage.batch_size == 2
    long.cancel()
    wait_until(lambda: long.finished, timeout=10)


def test_the_models_own_repetition_penalty_applies_as_in_generate(continuous_model, recorder, monkeypatch):
    # Qwen-VL checkpoints ship a penalty in generation_config.json; generate applies it unless told
    # otherwise. Set on the session's shared model for this test only: an engine reads it when it
    # is built, and monkeypatch puts the shared config back after, whether the test passed or not.
    loaded = continuous_model("qwen2_vl")
    monkeypatch.setattr(loaded.model.generation_config, "repetition_penalty", 1.5)
    messages, steps = [Message("user", "Say it again and again.", images=(RED,))], 40
    solo = bare_generate(loaded, messages, max_new_tokens=steps, min_new_tokens=steps)
    engine = recorder(loaded, prefill_chunk_tokens=8)
    long = engine.submit([Message("user", "talk")], max_new_tokens=1500, min_new_tokens=1500)
    wait_until(streamed_or_ended(long, 1), timeout=30)
    handle = engine.submit(messages, max_new_tokens=steps, min_new_tokens=steps)
    handle.result()
    long.cancel()
    assert engine.ids(handle) == solo
    monkeypatch.setattr(loaded.model.generation_config, "repetition_penalty", 1.0)
    assert bare_generate(loaded, messages, max_new_tokens=steps, min_new_tokens=steps) != solo  # it mattered


def test_the_models_suppressed_tokens_are_never_chosen_as_in_generate(continuous_model, recorder, monkeypatch):
    # generation_config.json's suppress_tokens: generate never picks them; neither does a row here,
    # greedy or sampled hot, nor does a suppressed end-of-turn token end an answer early. Set on
    # the session's shared model for this test only (monkeypatch puts its config back after).
    loaded = continuous_model("qwen2_vl")
    vocabulary = loaded.model.get_output_embeddings().weight.shape[0]
    allowed = {40, 41, 42}
    suppressed = [t for t in range(vocabulary) if t not in allowed]
    monkeypatch.setattr(loaded.model.generation_config, "suppress_tokens", suppressed)
    engine = recorder(loaded)
    greedy = engine.submit([Message("user", "Colour?", images=(RED,))], max_new_tokens=24)
    hot = engine.submit([Message("user", "Tell a story.")], max_new_tokens=24, temperature=2.0, seed=3)
    for handle in (greedy, hot):
        result = handle.result()
        assert result.usage.completion_tokens == 24, result.finish_reason
        assert set(engine.ids(handle)) <= allowed, engine.ids(handle)
    monkeypatch.setattr(loaded.model.generation_config, "suppress_tokens", None)
    free = recorder(loaded).submit([Message("user", "Tell a story.")], max_new_tokens=24, temperature=2.0, seed=3)
    assert not set(free.result().text) <= set(loaded.processor.tokenizer.decode(sorted(allowed)))  # it mattered


def test_sampled_and_greedy_requests_share_steps_and_a_seed_still_reproduces(continuous_model, recorder):
    engine = recorder(continuous_model("qwen2_5_vl"))
    messages = [Message("user", "Tell a story.")]
    sampled = dict(max_new_tokens=10, min_new_tokens=10, temperature=1.5, top_p=0.95)
    alone = engine.submit(messages, seed=7, **sampled).result().text
    long = engine.submit([Message("user", "talk")], max_new_tokens=1500, min_new_tokens=1500)
    wait_until(streamed_or_ended(long, 1), timeout=30)
    beside = engine.submit(messages, seed=7, **sampled).result()
    other_seed = engine.submit(messages, seed=8, **sampled).result().text
    long.cancel()
    assert beside.usage.batch_size == 2 and beside.text == alone
    assert other_seed != alone


def _failing_once(model, *, when):
    """``model.forward`` raises torch's own OutOfMemoryError once, on the first call ``when``
    accepts (a real CUDA OOM cannot happen on this CPU-only machine: the stand-in for the GPU)."""
    real = model.forward
    failed = threading.Event()

    def forward(*args, **kwargs):
        if not failed.is_set() and when(kwargs):
            failed.set()
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    model.forward = forward
    return failed


def _decoding(kwargs) -> bool:
    return kwargs["input_ids"].shape[1] == 1


def test_a_failed_prefill_fails_its_request_alone(continuous_model, recorder):
    loaded = continuous_model("qwen2_5_vl")
    engine = recorder(loaded)
    long = engine.submit([Message("user", "talk")], max_new_tokens=1500, min_new_tokens=1500)
    wait_until(streamed_or_ended(long, 1), timeout=30)
    failed = _failing_once(loaded.model, when=lambda kwargs: not _decoding(kwargs))
    try:
        doomed = engine.submit([Message("user", "Colour?", images=(RED,))], max_new_tokens=4)
        final = list(doomed.events())[-1]
    finally:
        del loaded.model.forward
    assert failed.is_set()
    assert isinstance(final, Error) and final.code == "out_of_memory" and final.message == OUT_OF_MEMORY
    assert not long.finished  # the running request went on
    nxt = engine.submit([Message("user", "next")], max_new_tokens=2, min_new_tokens=2).result()
    assert nxt.usage.completion_tokens == 2
    long.cancel()
    wait_until(lambda: long.finished and engine.engine.scheduler.active() == 0, timeout=10)


def test_a_failed_decoding_step_fails_the_rows_in_it_and_the_engine_keeps_serving(continuous_model, recorder):
    loaded = continuous_model("qwen2_5_vl")
    engine = recorder(loaded)
    long = engine.submit([Message("user", "talk")], max_new_tokens=1500, min_new_tokens=1500)
    wait_until(streamed_or_ended(long, 1), timeout=30)
    failed = _failing_once(loaded.model, when=_decoding)
    try:
        final = list(long.events())[-1]
    finally:
        del loaded.model.forward
    assert failed.is_set()
    assert isinstance(final, Error) and final.code == "out_of_memory"
    assert engine.engine.scheduler.active() == 0
    nxt = engine.submit([Message("user", "next")], max_new_tokens=2, min_new_tokens=2).result()
    assert nxt.usage.completion_tokens == 2
    assert engine.engine.stats(include_device=False)["errors_total"] == 1
    assert GENERATION_FAILED  # the other code path's message (any other exception) is the same constant


# --- the queue in front of the steps: fairness, bound, positions, cancellation --------------------


class GatedSteps:
    """A stand-in for the model's steps: each admitted request ends when the test opens the gate."""

    def __init__(self) -> None:
        self.admitted: list[str] = []
        self.rows: list[tuple] = []
        self.gate = threading.Semaphore(0)
        self.busy = False

    def add(self, pending, release) -> None:
        self.admitted.append(pending.request.request_id)
        self.rows.append((pending, release))
        self.busy = True

    def work(self) -> None:
        if self.rows and self.gate.acquire(timeout=0.05):
            pending, release = self.rows.pop(0)
            pending.handle._push(Done(Usage(1, 1, 0, 0, 0, 1, 1), "stop"))
            release(pending)
        self.busy = bool(self.rows)

    def fail_all(self, message: str, code: str) -> None:
        for pending, release in self.rows:
            pending.handle.fail(message, code)
            release(pending)
        self.rows.clear()


def _request(rid: str, department: str) -> tuple[GenerationRequest, GenerationHandle]:
    req = GenerationRequest(messages=(Message("user", "hi"),), params=validate_params(cap=64), department=department)
    req.request_id = rid
    return req, GenerationHandle(rid, timeout=30)


@pytest.fixture
def gated_steps():
    steps = GatedSteps()
    made: list[ContinuousScheduler] = []

    def make(**kwargs) -> ContinuousScheduler:
        made.append(ContinuousScheduler(steps, **kwargs))
        return made[-1]

    yield steps, make
    for scheduler in made:
        scheduler.shutdown()


def test_places_are_given_round_robin_over_departments_as_they_free(gated_steps):
    steps, make = gated_steps
    scheduler = make(max_concurrent=1, max_queue=10)
    scheduler.submit(*_request("busy", "x"))
    wait_until(lambda: steps.admitted == ["busy"], timeout=5)
    for rid in ("f1", "f2", "f3", "f4"):
        scheduler.submit(*_request(rid, "finance"))
    scheduler.submit(*_request("q1", "quality"))
    scheduler.submit(*_request("q2", "quality"))
    for count in range(2, 8):
        steps.gate.release()  # one ends, the next is admitted
        wait_until(lambda count=count: len(steps.admitted) >= count, timeout=5)
    assert steps.admitted[1:] == ["f1", "q1", "f2", "q2", "f3", "f4"]


def test_a_full_queue_answers_busy_with_retry_after_and_a_queued_cancel_leaves_at_once(gated_steps):
    steps, make = gated_steps
    scheduler = make(max_concurrent=1, max_queue=2)
    scheduler.submit(*_request("busy", "x"))
    wait_until(lambda: steps.admitted == ["busy"], timeout=5)
    scheduler.submit(*_request("a", "finance"))
    req, waiting = _request("b", "finance")
    waiting._on_cancel = scheduler.withdraw
    scheduler.submit(req, waiting)
    with pytest.raises(EngineBusy) as caught:
        scheduler.submit(*_request("c", "quality"))
    assert caught.value.queued == 2 and caught.value.retry_after >= 1
    assert str(caught.value) == ENGINE_BUSY.format(queued=2, retry_after=caught.value.retry_after)
    assert waiting.position == 2
    waiting.cancel()
    assert scheduler.queue_depth() == 1
    assert isinstance(waiting.final, Done) and waiting.final.finish_reason == "cancelled"


# --- incremental detokenisation -----------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_incremental_detokenisation_gives_the_whole_decode(family, continuous_model):
    tokenizer = continuous_model(family).processor.tokenizer
    vocab = len(tokenizer)

    @settings(max_examples=60, deadline=None, database=None)
    @given(ids=st.lists(st.integers(0, vocab - 1), min_size=1, max_size=60))
    def check(ids: list[int]) -> None:
        row = Row(request=None, handle=None)  # type: ignore[arg-type]
        for n, token in enumerate(ids, start=1):
            row.generated.append(token)
            final = n == len(ids)
            whole = tokenizer.decode(ids[:n], skip_special_tokens=True)
            # What the whole decode would let us send: all of it but a trailing incomplete character.
            assert row.decode_new(tokenizer, final=final) == (whole if final else whole.rstrip("\ufffd"))

    check()


def test_token_events_follow_the_answer_piece_by_piece(continuous_model, recorder):
    loaded = continuous_model("qwen2_5_vl")
    engine = recorder(loaded)
    handle = engine.submit([Message("user", "Describe.", images=(RED,))], max_new_tokens=30, min_new_tokens=30)
    pieces = [event.text for event in handle.events() if isinstance(event, Token)]
    assert "".join(pieces) == loaded.processor.tokenizer.decode(engine.ids(handle), skip_special_tokens=True)
