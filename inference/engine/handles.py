"""The caller's side of one request: a stream of events, usable from threads and from asyncio.

Events, in order: ``Queued`` (zero or more, whenever the position changes), ``Token`` (one per
piece of text), then exactly one terminal event: ``Done`` (with ``Usage``) or ``Error``.
Leaving an ``async for`` early (the websocket closed, the task was cancelled) cancels the
request, so the model stops working for a client that is gone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from inference.engine.errors import GENERATION_TIMEOUT, GenerationFailed, InferenceError


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    queue_seconds: float
    time_to_first_token: float | None  # seconds from submission to the first token
    latency: float  # seconds from submission to the end
    tokens_per_second: float  # completion tokens over the decoding time (first token → end)
    batch_size: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Queued:
    position: int  # 1 = next to be served
    kind = "queued"


@dataclass(frozen=True)
class Token:
    text: str
    kind = "token"


@dataclass(frozen=True)
class Done:
    usage: Usage
    finish_reason: str  # "stop" (end of turn or a stop string), "length", "cancelled"
    kind = "done"


@dataclass(frozen=True)
class Error:
    message: str
    code: str
    kind = "error"


Event = Queued | Token | Done | Error


def event_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready form for websocket frames and logs."""
    return {"type": event.kind, **asdict(event)}


@dataclass(frozen=True)
class Result:
    text: str
    usage: Usage | None
    finish_reason: str


class GenerationHandle:
    def __init__(self, request_id: str, *, timeout: float, on_cancel=None) -> None:
        self.request_id = request_id
        self.submitted_at = time.perf_counter()
        self.deadline = self.submitted_at + timeout
        self.timeout = timeout
        self._events: deque[Event] = deque()
        self._history_text: list[str] = []
        self._lock = threading.Condition()
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._finished = False
        self._cancelled = threading.Event()
        self._on_cancel = on_cancel
        self.position: int | None = None
        self.final: Event | None = None

    # --- producer side (the scheduler) ----------------------------------------------------------
    def _push(self, event: Event) -> None:
        with self._lock:
            if self._finished:
                return
            if isinstance(event, Queued):
                if event.position == self.position:
                    return
                self.position = event.position
            if isinstance(event, Token):
                self._history_text.append(event.text)
            if isinstance(event, Done | Error):
                self._finished = True
                self.final = event
            self._events.append(event)
            self._lock.notify_all()
            wakers = list(self._wakers)
        for loop, waker in wakers:
            try:
                loop.call_soon_threadsafe(waker.set)
            except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
                pass

    def timed_out(self, now: float | None = None) -> bool:
        return (now or time.perf_counter()) >= self.deadline

    def fail_timeout(self) -> None:
        self._push(Error(GENERATION_TIMEOUT.format(seconds=self.timeout), "timeout"))

    def fail(self, error: InferenceError | str, code: str = "generation_failed") -> None:
        if isinstance(error, InferenceError):
            self._push(Error(str(error), error.code))
        else:
            self._push(Error(error, code))

    # --- consumer side --------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def finished(self) -> bool:
        return self._finished

    def cancel(self) -> None:
        """Stop this request: out of the queue at once, or at the next decoding step."""
        if self._finished or self._cancelled.is_set():
            return
        self._cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, poll: float = 0.5) -> Iterator[Event]:
        """Blocking iterator (commands, benchmarks, worker threads)."""
        try:
            while True:
                with self._lock:
                    while not self._events:
                        if self._finished:
                            return
                        self._lock.wait(poll)
                    event = self._events.popleft()
                yield event
        finally:
            if not self._finished:
                self.cancel()

    async def __aiter__(self) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        waker = asyncio.Event()
        with self._lock:
            self._wakers.append((loop, waker))
        try:
            while True:
                waker.clear()
                with self._lock:
                    pending = list(self._events)
                    self._events.clear()
                    finished = self._finished
                for event in pending:
                    yield event
                if finished and not pending:
                    return
                if not pending:
                    await waker.wait()
        finally:
            with self._lock:
                self._wakers = [(lp, w) for lp, w in self._wakers if w is not waker]
            if not self._finished:
                self.cancel()

    def result(self) -> Result:
        """Block until the end and return the whole text; raise InferenceError on failure."""
        for _event in self.events():
            pass
        final = self.final
        if isinstance(final, Error):
            raise GenerationFailed(final.message, final.code)
        assert isinstance(final, Done)
        return Result(text="".join(self._history_text), usage=final.usage, finish_reason=final.finish_reason)
