"""Waiting for an asynchronous outcome without timing assertions."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

_MISSING = object()


async def eventually(fn: Callable[[], Any], *, equals: Any = _MISSING,
                     until: Callable[[Any], bool] | None = None, timeout: float = 30.0,
                     every: float = 0.05) -> Any:
    """Call `fn` (sync or async) until its value equals `equals` or satisfies `until`.

    Fails with the last value seen, so a failure says what the system showed instead.
    """
    if until is None:
        if equals is _MISSING:
            until = bool
        else:
            until = lambda v: v == equals  # noqa: E731
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        if time.monotonic() > deadline:
            want = f"== {equals!r}" if equals is not _MISSING else "the condition"
            raise AssertionError(f"after {timeout}s still {value!r}, wanted {want}")
        await asyncio.sleep(every)
