"""A faster header parser for nats-py, installed by the kernel's NATS connection.

Every event carries about eighteen headers (CloudEvents attributes, hash chain, NATS
metadata). nats-py 2.16 checks each header name for whitespace one character at a time
through a generator, which cost more than everything else the projector does with a
message (about 22 µs of 35 per message, measured with cProfile). This parser gives the same
result for every input (a property test compares the two on random header blocks). Blocks
as NATS writes them (`Name: value` lines) are split in one pass and their names and values
checked as a whole; anything else goes line by line. It is installed only on the nats-py
version it was compared with; on any other the library's own parser stays.

It also makes a pull subscription's `fetch` time out the way its callers expect: nats-py
2.16 raises a bare `asyncio.TimeoutError` when a fetch's deadline runs out between its two
requests, where it otherwise raises `nats.errors.TimeoutError`. FastStream's batch loop
catches only the latter, so the bare one ended its fetch task and dropped the messages it
had collected (delivered, never handled). nats' error is a subclass of asyncio's, so any
caller that caught the bare one still catches it.

And it takes a message already waiting in a subscription's queue without a task: nats-py's
`next_msg` makes a UUID, a task and a `wait_for` for each call, and a pull fetch calls it
once per message, so for FastStream's subscribers that was most of what a fetched message
cost on our side. A queue with nothing waiting goes the library's own way, timeout and all.
"""

from __future__ import annotations

import re
from importlib.metadata import version as installed_version

import asyncio

import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext

__all__ = ["parse_header_lines", "install"]

VERIFIED_VERSIONS = ("2.16.",)
_BYTES_WHITESPACE = " \t\n\r\x0b\x0c"
_SPACE = re.compile(r"\s")  # for str patterns: exactly the characters str.isspace() accepts
_ORIGINAL = Client.__dict__.get("_parse_header_lines")
_ORIGINAL_FETCH = JetStreamContext.PullSubscription.fetch
_ORIGINAL_NEXT_MSG = Subscription.next_msg


def parse_header_lines(raw: bytes) -> dict[str, str]:
    text = raw.decode("utf-8", "replace")
    try:
        out = dict([line.split(": ", 1) for line in text.split("\r\n") if line])
    except ValueError:  # a line without ": "
        return _line_by_line(text)
    # The one-pass split is right when no name holds a colon or whitespace (which the
    # careful parser would split at or drop) and no value starts or ends with whitespace
    # (which it would strip): printable ASCII covers both for names.
    names = "".join(out)
    if (names.isascii() and names.isprintable() and " " not in names and ":" not in names
            and all(v.strip(_BYTES_WHITESPACE) == v for v in out.values())):
        return out
    return _line_by_line(text)


def _line_by_line(text: str) -> dict[str, str]:
    # One decode of the whole block: CR, LF and ':' are ASCII, so lines and names split
    # where they did in bytes, and an invalid byte becomes U+FFFD where it stood. Stripping
    # uses the bytes-level whitespace set, as `bytes.strip()` did.
    out: dict[str, str] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip(_BYTES_WHITESPACE)
        if not key.isascii() or _SPACE.search(key):
            continue
        out[key] = value.strip(_BYTES_WHITESPACE)
    return out


def original_parser():
    """nats-py's own parser (for the equivalence test)."""
    return _ORIGINAL.__func__ if isinstance(_ORIGINAL, staticmethod) else _ORIGINAL


def install() -> bool:
    """Use the faster parser if this nats-py is one it was verified against."""
    if _ORIGINAL is None or not installed_version("nats-py").startswith(VERIFIED_VERSIONS):
        return False
    Client._parse_header_lines = staticmethod(parse_header_lines)
    JetStreamContext.PullSubscription.fetch = _fetch
    Subscription.next_msg = _next_msg
    return True


async def _next_msg(self: Subscription, timeout: float | None = 1.0):
    queue = self._pending_queue
    if queue is not None and not queue.empty() and not self._cb and not self._conn.is_closed:
        msg = queue.get_nowait()  # what the library's path ends with, less its task
        self._pending_size -= len(msg.data)
        queue.task_done()
        return msg
    return await _ORIGINAL_NEXT_MSG(self, timeout)


async def _fetch(self, *args, **kwargs):
    try:
        return await _ORIGINAL_FETCH(self, *args, **kwargs)
    except nats.errors.TimeoutError:
        raise
    except asyncio.TimeoutError as exc:
        raise nats.errors.TimeoutError from exc
