"""Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping.

The pause between two looks is an ``Event.wait`` (threads) or ``asyncio.sleep`` (event loop):
a poll, not a guess. A timeout fails with the caller's message, so the assertion a test waits
for reads the same as the one it used to make after a sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an assertion failure in a test)."""


def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, message: str = "") -> T:
    """Call ``predicate`` until it returns something true and return that; fail after ``timeout``.

    An exception from ``predicate`` propagates at once (a condition that can no longer come true
    should say so rather than wait out the deadline).
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: wait() is a pause that does not hold the GIL
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(message or f"condition not met within {timeout:g} s: {predicate!r}")
        pause.wait(interval)


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.02, message: str = ""
) -> T:
    """``wait_until`` for the event loop: the loop keeps running between looks."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(message or f"condition not met within {timeout:g} s: {predicate!r}")
        await asyncio.sleep(interval)
