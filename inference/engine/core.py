"""The engine: one loaded model, a scheduler in front of it, and its public API. No Django here.

Callers (the chat consumer, the REST and OpenAI-compatible APIs, commands) use only this, through
the process's engine that ``inference.runtime`` builds from the settings:

    from inference.engine.inputs import Message
    from inference.runtime import require_engine

    engine = require_engine()                  # ModelUnavailable (503) while the model loads
    handle = engine.submit(
        [Message("system", "You read invoices."), Message("user", "Total?", images=(pil_image,))],
        department=department.slug,            # the fairness key
        max_new_tokens=256, temperature=0.0, stop=["</answer>"],
    )                                          # InvalidRequest / EngineBusy raised here
    async for event in handle: ...             # Queued / Token / Done / Error (inference.engine.handles)
    handle.cancel()                            # stop button; leaving the async for also cancels

See docs/inference.md for the whole contract.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from inference.engine.errors import (
    MODEL_IMAGES_OVER_LIMIT,
    SCHEDULING_ONE_AT_A_TIME,
    InvalidRequest,
    ModelUnavailable,
)
from inference.engine.handles import Done, GenerationHandle, Result
from inference.engine.inputs import GenerationRequest, Message, validate_messages, validate_params
from inference.engine.loading import LoadedModel
from inference.engine.scheduler import ContinuousScheduler, Pending, Scheduler

CONTINUOUS = "continuous"  # iteration-level: requests join and leave the running batch per step
PER_REQUEST = "per_request"  # one generate call per batch of requests, run to its longest answer
SCHEDULINGS = (CONTINUOUS, PER_REQUEST)
ONE_AT_A_TIME = "one_at_a_time"  # what a family the engine cannot batch per step gets

# The Error code of a request ended because the process is stopping (Engine.drain_begin /
# end_running): a caller stores the turn as failed with this code and tells the person so.
SHUTTING_DOWN = "shutting_down"

DEMO_LABEL = "demo model — random weights, answers are noise"
_THROUGHPUT_WINDOW = 60.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    quantization: str
    quantization_reason: str
    device: str
    is_demo: bool
    label: str  # what a UI shows next to the model name ("" for a real model)
    manifest_sha256: str
    parameter_count: int
    max_context: int
    max_new_tokens_cap: int
    # "continuous", "per_request", or "one_at_a_time" (a family that cannot batch per step)
    scheduling: str = CONTINUOUS
    scheduling_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EngineLimits:
    max_concurrent: int = 8
    max_batch: int = 8
    max_queue: int = 32
    max_new_tokens_cap: int = 2048
    default_max_new_tokens: int = 512
    timeout_seconds: float = 300.0
    batch_window_seconds: float = 0.015
    workers: int = 1
    # CONTINUOUS, or PER_REQUEST (the former static batching: kept as a benchmark baseline)
    scheduling: str = CONTINUOUS
    # Prompt tokens of a newcomer prefilled between two decoding steps while others are running
    # (0: 512 on a GPU, 32 on a CPU).
    prefill_chunk_tokens: int = 0


class Engine:
    def __init__(self, loaded: LoadedModel, limits: EngineLimits | None = None) -> None:
        self.loaded = loaded
        self.limits = limits or EngineLimits()
        self._stats_lock = threading.Lock()
        self._finished: deque[tuple[float, int]] = deque()  # (end time, completion tokens)
        self.requests_total = 0
        self.completion_tokens_total = 0
        self.prompt_tokens_total = 0
        self.errors_total = 0
        # Requests not finished yet, for a shutdown that ends them (weak: a handle nobody holds
        # any more is nobody's business); _draining: why submit refuses, once a shutdown began.
        self._live: weakref.WeakSet[GenerationHandle] = weakref.WeakSet()
        self._draining = ""
        limits = self.limits
        if limits.scheduling not in SCHEDULINGS:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULINGS)}, not {limits.scheduling!r}")
        self.scheduling = limits.scheduling
        self.scheduling_note = ""
        if limits.scheduling == CONTINUOUS and not loaded.profile.step_batching:
            self.scheduling = ONE_AT_A_TIME
            self.scheduling_note = SCHEDULING_ONE_AT_A_TIME.format(family=loaded.profile.label)
        self.scheduler: Scheduler
        if self.scheduling == CONTINUOUS:
            from inference.engine.continuous import ContinuousBatch

            batch = ContinuousBatch(loaded, prefill_chunk_tokens=limits.prefill_chunk_tokens)
            self.scheduler = ContinuousScheduler(
                _StepRunner(self, batch), max_concurrent=limits.max_concurrent, max_queue=limits.max_queue
            )
        else:
            alone = self.scheduling == ONE_AT_A_TIME
            self.scheduler = Scheduler(
                self._run,
                max_concurrent=1 if alone else limits.max_concurrent,
                max_queue=limits.max_queue,
                max_batch=1 if alone else limits.max_batch,
                batch_window=0.0 if alone else limits.batch_window_seconds,
                workers=1 if alone else limits.workers,
            )

    # --- the API --------------------------------------------------------------------------------
    def submit(
        self,
        messages: list[Message] | tuple[Message, ...],
        *,
        department: str = "",
        max_new_tokens: Any = None,
        temperature: Any = 0.0,
        top_p: Any = 1.0,
        stop: Any = None,
        seed: Any = None,
        min_new_tokens: Any = 0,
        request_id: str | None = None,
    ) -> GenerationHandle:
        """Validate and queue a request; raise InvalidRequest or EngineBusy straight away."""
        params = validate_params(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            min_new_tokens=min_new_tokens,
            cap=self.limits.max_new_tokens_cap,
            default_max_new_tokens=self.limits.default_max_new_tokens,
        )
        messages = validate_messages(messages)
        profile = self.loaded.profile
        if sum(len(message.images) for message in messages) > profile.max_images:
            raise InvalidRequest(MODEL_IMAGES_OVER_LIMIT.format(family=profile.label, limit=profile.max_images))
        request = GenerationRequest(messages=messages, params=params, department=str(department))
        if request_id:
            request.request_id = request_id
        if self._draining:
            raise ModelUnavailable(self._draining)
        handle = GenerationHandle(
            request.request_id, timeout=self.limits.timeout_seconds, on_cancel=self.scheduler.withdraw
        )
        self.scheduler.submit(request, handle)
        with self._stats_lock:
            self._live.add(handle)
        return handle

    def generate(self, messages: list[Message] | tuple[Message, ...], **kwargs: Any) -> Result:
        """Blocking convenience: submit and wait for the whole answer."""
        return self.submit(messages, **kwargs).result()

    def info(self) -> ModelInfo:
        loaded = self.loaded
        return ModelInfo(
            name=loaded.name,
            family=loaded.family,
            quantization=loaded.quantization,
            quantization_reason=loaded.quantization_reason,
            device=loaded.device,
            is_demo=loaded.is_demo,
            label=DEMO_LABEL if loaded.is_demo else "",
            manifest_sha256=loaded.manifest_sha256,
            parameter_count=loaded.parameter_count,
            max_context=loaded.max_positions,
            max_new_tokens_cap=self.limits.max_new_tokens_cap,
            scheduling=self.scheduling,
            scheduling_note=self.scheduling_note,
        )

    def stats(self, *, include_device: bool = True) -> dict[str, Any]:
        now = time.perf_counter()
        with self._stats_lock:
            while self._finished and now - self._finished[0][0] > _THROUGHPUT_WINDOW:
                self._finished.popleft()
            recent = sum(tokens for _, tokens in self._finished)
            counters = {
                "requests_total": self.requests_total,
                "errors_total": self.errors_total,
                "prompt_tokens_total": self.prompt_tokens_total,
                "completion_tokens_total": self.completion_tokens_total,
            }
        stats: dict[str, Any] = {
            "model": self.info().as_dict(),
            "queue_depth": self.scheduler.queue_depth(),
            "queue_by_department": self.scheduler.queue_by_department(),
            "active_generations": self.scheduler.active(),
            "max_concurrent_generations": self.limits.max_concurrent,
            "max_queue": self.limits.max_queue,
            "tokens_per_second": round(recent / _THROUGHPUT_WINDOW, 3),
            **counters,
        }
        if include_device:
            from inference.engine.device_stats import device_stats

            stats["device"] = device_stats()
        return stats

    def shutdown(self) -> None:
        self.scheduler.shutdown()

    # --- stopping the process (inference.shutdown drives these) -----------------------------------
    def drain_begin(self, message: str) -> int:
        """Take no new request (``submit`` raises ModelUnavailable(message)) and end the waiting
        ones with ``Error(message, SHUTTING_DOWN)``; running ones go on. Returns how many waited."""
        self._draining = message
        with self.scheduler._cond:
            waiting = [p.handle for queue in self.scheduler._queues.values() for p in queue]
        for handle in waiting:
            handle.fail(message, SHUTTING_DOWN)  # the scheduler drops finished requests from its queue
        return len(waiting)

    def unfinished(self) -> int:
        """Requests submitted and not finished yet (waiting or running)."""
        return len(self._unfinished())

    def end_running(self, message: str) -> int:
        """End every unfinished request with ``Error(message, SHUTTING_DOWN)`` and free its row
        at the next decoding step. Returns how many were ended."""
        handles = self._unfinished()
        for handle in handles:
            handle.fail(message, SHUTTING_DOWN)
            # The Error is final; the cancellation flag makes its row leave the batch at the next
            # step (cancel() itself does nothing for a finished handle).
            handle._cancelled.set()
        return len(handles)

    def _unfinished(self) -> list[GenerationHandle]:
        with self._stats_lock:
            return [handle for handle in list(self._live) if not handle.finished]

    # --- the worker side ------------------------------------------------------------------------
    def _run(self, batch: list[Pending], release) -> None:
        from inference.engine.generation import Row, run_batch

        rows = []
        for pending in batch:
            row = Row(request=pending.request, handle=pending.handle)
            row.on_finish = lambda row, pending=pending: self._row_finished(row, pending, release)
            rows.append(row)
        run_batch(self.loaded, rows)

    def _row_finished(self, row: Any, pending: Pending, release) -> None:
        release(pending)
        with self._stats_lock:
            self.requests_total += 1
            final = pending.handle.final
            if final is not None and not isinstance(final, Done):
                self.errors_total += 1
            self.prompt_tokens_total += row.prompt_tokens
            self.completion_tokens_total += len(row.generated)
            self._finished.append((time.perf_counter(), len(row.generated)))


class _StepRunner:
    """The engine's rows in a ContinuousBatch: each row's end frees its place and counts."""

    def __init__(self, engine: Engine, batch: Any) -> None:
        self.engine = engine
        self.batch = batch

    @property
    def busy(self) -> bool:
        return self.batch.busy

    def add(self, pending: Pending, release) -> None:
        from inference.engine.generation import Row

        row = Row(request=pending.request, handle=pending.handle)
        row.on_finish = lambda row, pending=pending: self.engine._row_finished(row, pending, release)
        self.batch.add(row)

    def work(self) -> None:
        self.batch.work()

    def fail_all(self, message: str, code: str) -> None:
        self.batch.fail_all(message, code)
