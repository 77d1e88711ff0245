"""The faster header parser gives exactly what nats-py's own parser gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.natsfast import original_parser, parse_header_lines

tricky = [b"ce-id", b" Nats-Sequence ", b"a b", b"x\tz", b"\xff\xfe", b"\x1ckey", b"k\x0b",
          b"\xc2\xa0k", b"\xe2", b"caf\xc3\xa9", b"\x85k", b"v \xe2\x80", b"\r", b"\n"]
header_bytes = st.binary(max_size=40) | st.sampled_from(tricky)
value_bytes = (st.binary(max_size=60) | st.text(max_size=30).map(str.encode)
               | st.sampled_from(tricky))
lines = st.tuples(header_bytes, st.sampled_from([b":", b": ", b"", b"::", b" :\t"]),
                  value_bytes)
blocks = st.lists(lines, max_size=25).map(
    lambda ls: b"\r\n".join(n + s + v for n, s, v in ls) + b"\r\n\r\n")


# Blocks as NATS writes them, where the one-pass split answers, with now and then one
# line that sends the whole block line by line.
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=":"),
                min_size=1, max_size=20)
values = st.text(max_size=30).filter(lambda v: "\r\n" not in v)
canonical = st.lists(st.tuples(names, values).map(lambda nv: f"{nv[0]}: {nv[1]}".encode()),
                     max_size=25)
odd_lines = st.tuples(header_bytes, st.sampled_from([b":", b": ", b"", b"  :"]),
                      value_bytes).map(lambda t: b"".join(t))
mostly_canonical = st.tuples(canonical, st.lists(odd_lines, max_size=1), st.integers(0, 25)).map(
    lambda t: b"\r\n".join(t[0][:t[2]] + t[1] + t[0][t[2]:]) + b"\r\n\r\n")


@settings(max_examples=800)
@given(blocks | mostly_canonical)
def test_the_fast_parser_agrees_with_nats_py_on_any_header_block(raw):
    assert parse_header_lines(raw) == original_parser()(raw)


def test_a_real_event_header_block():
    raw = (b"ce-specversion: 1.0\r\nce-id: 01a2\r\nce-type: bapas.ClientRegistered.v1\r\n"
           b"ce-time: 2026-11-30T09:44:28.734253Z\r\nNats-Msg-Id: 01a2\r\n"
           b"ce-actor: p\xc3\xa9k\r\n\r\n")
    parsed = parse_header_lines(raw)
    assert parsed == original_parser()(raw)
    assert parsed["ce-time"] == "2026-11-30T09:44:28.734253Z" and parsed["ce-actor"] == "pék"


async def test_a_fetch_whose_deadline_runs_out_between_requests_raises_nats_timeout(monkeypatch):
    """nats-py 2.16 raises a bare asyncio.TimeoutError there; FastStream's batch loop catches
    only nats' own and would drop the batch it had collected."""
    import asyncio

    import nats.errors

    from shared import natsfast

    async def deadline_spent(self, *args, **kwargs):
        raise asyncio.TimeoutError  # as nats-py's _fetch_n does when no time is left

    monkeypatch.setattr(natsfast, "_ORIGINAL_FETCH", deadline_spent)
    with pytest.raises(nats.errors.TimeoutError):
        await natsfast._fetch(object(), batch=10, timeout=0.05)

    async def delivered(self, *args, **kwargs):
        return ["m1", "m2"]

    monkeypatch.setattr(natsfast, "_ORIGINAL_FETCH", delivered)
    assert await natsfast._fetch(object(), batch=10, timeout=0.05) == ["m1", "m2"]


def test_the_fetch_fix_is_installed_with_the_parser():
    from nats.js.client import JetStreamContext

    from shared import natsfast

    assert natsfast.install()
    assert JetStreamContext.PullSubscription.fetch is natsfast._fetch


async def test_next_msg_takes_what_waits_in_order_and_still_times_out(nc):
    """The queued message comes without a task; an empty queue waits as nats-py's does."""
    import asyncio

    import nats.errors
    from nats.aio.subscription import Subscription

    from shared import natsfast

    assert natsfast.install() and Subscription.next_msg is natsfast._next_msg
    sub = await nc.subscribe("natsfast.next")
    for i in range(3):
        await nc.publish("natsfast.next", b"m%d" % i)
    await nc.flush()
    for _ in range(50):  # the read loop queues them
        if sub.pending_msgs == 3:
            break
        await asyncio.sleep(0.01)
    got = [(await sub.next_msg(timeout=1)).data for _ in range(3)]
    assert got == [b"m0", b"m1", b"m2"]
    assert sub.pending_msgs == 0 and sub.pending_bytes == 0
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.05)
    late = asyncio.create_task(sub.next_msg(timeout=2))  # nothing queued yet: it waits
    await nc.publish("natsfast.next", b"late")
    assert (await late).data == b"late"
    await sub.unsubscribe()
