"""Stopping the serving process without losing a turn (docs/operations.md, "Stopping").

On SIGTERM the server (``manage.py serve``) runs ``graceful_stop`` before it closes its
connections:

1. ``stop_taking_turns``: ``require_engine()`` refuses every new turn or API call with
   ``SHUTTING_DOWN`` (503), /readyz answers 503 with it, the engine's waiting requests end with
   that error (code ``shutting_down``); running streams go on.
2. Running streams get up to ``SHUTDOWN_GRACE_SECONDS`` to finish. Whatever still runs then ends
   with ``Error(STREAM_ENDED, "shutting_down")``: the chat consumer stores the turn as failed with
   that code and sends the person the message, the API ends its response with it.
3. The server then closes the connections and waits (a bounded time) for the consumers to store
   their turns; ``audit_pending_seal`` chains the audit entries still pending. An entry it cannot
   chain in time stays pending in the database, committed, and the next seal (the next process's
   sealer, ``audit_checkpoint``, ``audit_export``) chains it: none is lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference.runtime import engines_loaded, stopping_set

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "the server is shutting down and takes no new requests; try again in a moment"
STREAM_ENDED = "the server is shutting down: this answer was ended after the {seconds:g} s grace period"
POLL_SECONDS = 0.05
RELAY_SECONDS = 3.0  # at most, for the relays of ended streams to store them and say so
SEAL_SECONDS = 3.0  # at most, for chaining the pending audit entries at the end


@dataclass
class StopReport:
    waiting_ended: int = 0  # requests that had not started, ended at once
    finished_in_grace: bool = True  # every running stream finished by itself
    running_ended: int = 0  # streams ended when the grace period ran out
    seconds: float = 0.0


def stop_taking_turns() -> int:
    """From now on no new turn; every loaded engine's waiting requests end. Returns how many waited."""
    stopping_set(SHUTTING_DOWN)
    return sum(engine.drain_begin(SHUTTING_DOWN) for engine in engines_loaded())


async def graceful_stop(grace: float, *, hurry: Callable[[], bool] = lambda: False) -> StopReport:
    """Stop taking turns, give running streams ``grace`` seconds, then end the rest.

    ``hurry()`` true (a second signal) ends the streams at once. Runs on the event loop and
    never blocks it: the streams it waits for are relayed by that same loop.
    """
    started = time.monotonic()
    report = StopReport(waiting_ended=stop_taking_turns())
    engines = engines_loaded()  # each model loaded at once drains the same way
    if engines:
        deadline = started + grace
        while any(e.unfinished() for e in engines) and time.monotonic() < deadline and not hurry():
            await asyncio.sleep(POLL_SECONDS)
        if any(e.unfinished() for e in engines):
            report.finished_in_grace = False
            relays = _relay_tasks()
            report.running_ended = sum(e.end_running(STREAM_ENDED.format(seconds=grace)) for e in engines)
            # The relays store the ended turns and send their error frames before the server
            # closes the sockets (closing first would leave the person a bare close code).
            if relays:
                await asyncio.wait(relays, timeout=RELAY_SECONDS)
    report.seconds = time.monotonic() - started
    logger.warning(
        "shutting down: %d waiting request(s) refused, %s, after %.1f s",
        report.waiting_ended,
        "every running stream finished"
        if report.finished_in_grace
        else f"{report.running_ended} running stream(s) ended at the {grace:g} s grace period",
        report.seconds,
    )
    return report


def _relay_tasks() -> set[asyncio.Task]:
    """The event loop's tasks relaying an answer to a websocket (the chat consumer's ``_relay``,
    found by name: the consumer registers nothing with the engine)."""
    current = asyncio.current_task()
    return {
        task
        for task in asyncio.all_tasks()
        if task is not current and getattr(task.get_coro(), "__qualname__", "").endswith("._relay")
    }


def audit_pending_seal() -> int:
    """Chain the audit entries still pending (blocking; call it off the event loop). Returns how
    many are left pending, for the next seal to chain (0 when all were chained)."""
    from django.db import connection

    from compliance.sealing import pending_status, seal_pending

    try:
        seal_pending(wait=True)
        left, _age = pending_status()
    except Exception:
        logger.exception("audit entries left pending at shutdown; the next seal chains them")
        return -1
    finally:
        connection.close()
    if left:
        logger.warning("%d audit entries left pending at shutdown; the next seal chains them", left)
    return left


async def audit_pending_seal_bounded(seconds: float = SEAL_SECONDS) -> int | None:
    """``audit_pending_seal`` on a thread, given at most ``seconds``; None if it ran out of time
    (the entries stay pending, committed, for the next seal)."""
    # A daemon thread, not the loop's executor: asyncio.run joins the executor's threads at its end,
    # so a sealing stuck on a locked database would hold the exit beyond the bound.
    loop = asyncio.get_running_loop()
    result: asyncio.Future[int] = loop.create_future()

    def seal() -> None:
        left = audit_pending_seal()
        try:
            loop.call_soon_threadsafe(lambda: result.done() or result.set_result(left))
        except RuntimeError:  # the loop is gone: the process is exiting anyway
            pass

    threading.Thread(target=seal, name="audit-seal-at-shutdown", daemon=True).start()
    try:
        return await asyncio.wait_for(result, seconds)
    except TimeoutError:
        logger.warning("audit sealing at shutdown took over %g s; the next seal chains what is left", seconds)
        return None


def engine_stop() -> None:
    for engine in engines_loaded():
        engine.shutdown()


_daphne_hooked = False


def daphne_drain_install() -> bool:
    """Under ``make run``'s server (``runserver``: daphne, Twisted's reactor on asyncio), drain as
    ``manage.py serve`` does before the reactor stops; False where no such reactor runs.

    Daphne cancels its connections' application instances at the same moment (its own "before
    shutdown" trigger), so a running chat turn keeps streaming to the end of the grace period and
    is then ended and stored, but a person whose socket daphne closed first sees a bare close.
    """
    global _daphne_hooked
    import sys

    if _daphne_hooked or "twisted.internet.reactor" not in sys.modules:
        return _daphne_hooked
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        return False

    def before_shutdown():
        from django.conf import settings

        return Deferred.fromFuture(loop.create_task(_daphne_stop(float(settings.SHUTDOWN_GRACE_SECONDS))))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    _daphne_hooked = True
    return True


async def _daphne_stop(grace: float) -> None:
    await graceful_stop(grace)
    await audit_pending_seal_bounded()
