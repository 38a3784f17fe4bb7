"""A bounded, department-fair queue in front of the model, forming batches for the workers.

- **Bounded:** at most ``max_queue`` requests wait; the next one gets ``EngineBusy`` with a
  retry-after estimate (HTTP 429 + Retry-After on REST) instead of an ever-growing backlog.
- **Fair:** one FIFO per department, served round-robin: a department that just got a place
  in a batch goes to the back of the rotation, so a burst from one department cannot starve
  the others.
- **Batched:** a free worker waits a short window for companions, then takes up to
  ``max_batch`` compatible requests (same decoding strategy) into one ``generate`` call.
- **Bounded concurrency:** at most ``max_concurrent`` requests are generating at once; a slot
  is released the moment its request finishes (even while the rest of its batch goes on).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inference.engine.errors import ENGINE_STOPPED, EngineBusy, ModelUnavailable
from inference.engine.handles import Done, GenerationHandle, Queued, Usage
from inference.engine.inputs import GenerationRequest

logger = logging.getLogger(__name__)

_IDLE_POLL = 0.25  # how often a waiting worker purges timed-out requests


@dataclass
class Pending:
    request: GenerationRequest
    handle: GenerationHandle


BatchRunner = Callable[[list[Pending], Callable[[Pending], None]], None]


class Scheduler:
    def __init__(
        self,
        run_batch: BatchRunner,
        *,
        max_concurrent: int = 8,
        max_queue: int = 32,
        max_batch: int = 8,
        batch_window: float = 0.015,
        workers: int = 1,
    ) -> None:
        self._run_batch = run_batch
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_batch = max(1, min(max_batch, max_concurrent))
        self.batch_window = batch_window
        self._queues: dict[str, deque[Pending]] = {}
        self._rotation: deque[str] = deque()  # departments with waiting requests, next first
        self._cond = threading.Condition()
        self._active = 0
        self._stopped = False
        self._batch_seconds = 0.0  # moving average, for retry-after
        self.batches_run = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"inference-worker-{n}", daemon=True) for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    # --- callers --------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, handle: GenerationHandle) -> None:
        with self._cond:
            if self._stopped:
                raise ModelUnavailable(ENGINE_STOPPED)
            queued = self._queued_locked()
            if queued >= self.max_queue:
                raise EngineBusy(queued=queued, retry_after=self._retry_after_locked(queued))
            key = request.department or "-"
            if key not in self._queues:
                self._queues[key] = deque()
                self._rotation.append(key)
            self._queues[key].append(Pending(request, handle))
            self._publish_positions_locked()
            self._cond.notify_all()

    def withdraw(self, handle: GenerationHandle) -> bool:
        """Remove a cancelled request that is still waiting; False if it already started."""
        with self._cond:
            for key, queue in self._queues.items():
                for pending in queue:
                    if pending.handle is handle:
                        queue.remove(pending)
                        self._drop_empty_locked(key)
                        self._publish_positions_locked()
                        break
                else:
                    continue
                break
            else:
                return False
        handle._push(Done(_empty_usage(handle), "cancelled"))
        return True

    def queue_depth(self) -> int:
        with self._cond:
            return self._queued_locked()

    def active(self) -> int:
        with self._cond:
            return self._active

    def queue_by_department(self) -> dict[str, int]:
        with self._cond:
            return {key: len(queue) for key, queue in self._queues.items() if queue}

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            waiting = [p for q in self._queues.values() for p in q]
            self._queues.clear()
            self._rotation.clear()
            self._cond.notify_all()
        for pending in waiting:
            pending.handle.fail(ModelUnavailable(ENGINE_STOPPED))
        for worker in self._workers:
            worker.join(timeout)

    # --- internals ------------------------------------------------------------------------------
    def _queued_locked(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _retry_after_locked(self, queued: int) -> int:
        per_batch = self._batch_seconds or 5.0
        batches_ahead = math.ceil((queued + 1) / self.max_batch) / max(1, len(self._workers))
        return int(min(300, max(1, math.ceil(per_batch * batches_ahead))))

    def _drop_empty_locked(self, key: str) -> None:
        if key in self._queues and not self._queues[key]:
            del self._queues[key]
            try:
                self._rotation.remove(key)
            except ValueError:
                pass

    def _service_order_locked(self) -> list[Pending]:
        """The order in which waiting requests would be served: round-robin over departments."""
        order = []
        depth = 0
        queues = [self._queues[key] for key in self._rotation]
        while True:
            added = False
            for queue in queues:
                if depth < len(queue):
                    order.append(queue[depth])
                    added = True
            if not added:
                return order
            depth += 1

    def _publish_positions_locked(self) -> None:
        for position, pending in enumerate(self._service_order_locked(), start=1):
            pending.handle._push(Queued(position))

    def _purge_expired_locked(self) -> None:
        now = time.perf_counter()
        for key in list(self._queues):
            queue = self._queues[key]
            for pending in [p for p in queue if p.handle.timed_out(now) or p.handle.finished]:
                queue.remove(pending)
                if not pending.handle.finished:
                    pending.handle.fail_timeout()
            self._drop_empty_locked(key)

    def _take_batch_locked(self) -> list[Pending]:
        limit = min(self.max_batch, self.max_concurrent - self._active)
        batch: list[Pending] = []
        served: list[str] = []
        batch_key = None
        while len(batch) < limit:
            progressed = False
            for key in list(self._rotation):
                if len(batch) >= limit:
                    break
                queue = self._queues.get(key)
                if not queue:
                    continue
                head = queue[0]
                head_key = head.request.params.batch_key()
                if batch_key is None:
                    batch_key = head_key
                elif head_key != batch_key:
                    continue
                batch.append(queue.popleft())
                served.append(key)
                progressed = True
                if head_key[0] == "seeded":
                    limit = len(batch)  # a seeded request always runs alone
            if not progressed:
                break
        for key in served:  # served departments go to the back of the rotation, in order
            if key in self._rotation:
                self._rotation.remove(key)
                self._rotation.append(key)
            self._drop_empty_locked(key)
        self._active += len(batch)
        return batch

    def _release(self, pending: Pending) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    self._purge_expired_locked()
                    if self._queued_locked() and self._active < self.max_concurrent:
                        break
                    self._cond.wait(_IDLE_POLL)
                # Let requests that arrive together share this call.
                deadline = time.perf_counter() + self.batch_window
                while self._queued_locked() < self.max_batch and not self._stopped:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._purge_expired_locked()
                batch = self._take_batch_locked()
                self._publish_positions_locked()
            if not batch:
                continue
            started = time.perf_counter()
            released: set[int] = set()

            def release(pending: Pending, released: set[int] = released) -> None:
                if id(pending) not in released:
                    released.add(id(pending))
                    self._release(pending)

            try:
                self._run_batch(batch, release)
            except Exception:  # the runner should never raise; if it does, keep serving
                logger.exception("batch runner raised")
            finally:
                for pending in batch:
                    if not pending.handle.finished:
                        pending.handle.fail("the request ended without a result", "generation_failed")
                    release(pending)
            elapsed = time.perf_counter() - started
            with self._cond:
                self.batches_run += 1
                self._batch_seconds = elapsed if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * elapsed


def _empty_usage(handle: GenerationHandle) -> Usage:
    waited = time.perf_counter() - handle.submitted_at
    return Usage(0, 0, round(waited, 6), None, round(waited, 6), 0.0, 0)


class StepRunner:
    """What the continuous scheduler drives (``ContinuousBatch`` behind the engine)."""

    busy: bool

    def add(self, pending: Pending, release: Callable[[Pending], None]) -> None: ...

    def work(self) -> None: ...

    def fail_all(self, message: str, code: str) -> None: ...


class ContinuousScheduler(Scheduler):
    """The same queue, admission and fairness, served per decoding step by one thread.

    Whenever a place is free (fewer than ``max_concurrent`` requests admitted), the next request
    in round-robin order is admitted, whatever its decoding strategy (each row samples on its
    own), and joins the running batch at its next step; a request that finishes frees its place
    at once. Between two steps the thread admits, purges timed-out waiting requests and publishes
    queue positions.
    """

    def __init__(self, runner: StepRunner, *, max_concurrent: int = 8, max_queue: int = 32) -> None:
        self._runner = runner
        self._latency = 0.0  # moving average of a request's time from admission to its end
        self._admitted_at: dict[int, float] = {}
        super().__init__(
            lambda batch, release: None,
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            max_batch=max_concurrent,
            batch_window=0.0,
            workers=1,
        )

    def _retry_after_locked(self, queued: int) -> int:
        per_request = self._latency or 5.0
        rounds = math.ceil((queued + 1) / self.max_concurrent)
        return int(min(300, max(1, math.ceil(per_request * rounds))))

    def _admit_locked(self) -> list[Pending]:
        admitted: list[Pending] = []
        while self._active < self.max_concurrent and self._rotation:
            key = self._rotation[0]
            queue = self._queues.get(key)
            if queue:
                admitted.append(queue.popleft())
                self._active += 1
            self._rotation.rotate(-1)  # served (or empty): to the back of the rotation
            self._drop_empty_locked(key)
        return admitted

    def _release(self, pending: Pending) -> None:
        with self._cond:
            self._active -= 1
            started = self._admitted_at.pop(id(pending), None)
            if started is not None:
                elapsed = time.perf_counter() - started
                self._latency = elapsed if not self._latency else 0.8 * self._latency + 0.2 * elapsed
            self._cond.notify_all()

    def _work(self) -> None:
        runner = self._runner
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        break
                    self._purge_expired_locked()
                    if runner.busy or (self._queued_locked() and self._active < self.max_concurrent):
                        break
                    self._cond.wait(_IDLE_POLL)
                if self._stopped:
                    admitted = []
                else:
                    admitted = self._admit_locked()
                    if admitted:
                        self._publish_positions_locked()
                        now = time.perf_counter()
                        for pending in admitted:
                            self._admitted_at[id(pending)] = now
            if self._stopped:
                runner.fail_all(ENGINE_STOPPED, "model_unavailable")
                return
            for pending in admitted:
                runner.add(pending, self._release_once())
            try:
                runner.work()
            except Exception:  # the runner should never raise; if it does, fail its rows and go on
                logger.exception("a decoding round raised")
                runner.fail_all("the request ended without a result", "generation_failed")
            with self._cond:
                self.batches_run += 1

    def _release_once(self) -> Callable[[Pending], None]:
        released: set[int] = set()

        def release(pending: Pending) -> None:
            if id(pending) not in released:
                released.add(id(pending))
                self._release(pending)

        return release
