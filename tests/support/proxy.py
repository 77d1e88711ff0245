"""A TCP proxy the test controls: it forwards to a target until cut, then holds no
connection and accepts none, as a dropped office link does. Runs its own event loop in a
thread, so the link keeps flowing while the test's loop waits on something else."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from shared.local.servers import free_port


class LinkProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cuts = 0
        self._up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxy",
                                        daemon=True)

    def start(self) -> LinkProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", self.port), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Drop every connection through the link and refuse new ones until `restore`."""
        async def drop() -> None:
            self._up = False
            for w in list(self._writers):
                w.transport.abort()
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)
        self.cuts += 1

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_up", True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
