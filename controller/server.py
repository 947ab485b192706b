"""uvicorn HTTP protocol for the controller: httptools, one ``send`` per small response.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body on
``http.response.body``: two ``send`` syscalls, and on loopback two wake-ups of the client, which
reads a head without its body first. For a controller whose answers are a few hundred bytes that
doubles the per-response socket work. :class:`CoalescingHttpToolsProtocol` holds a response head
until the next write on the connection (the body, normally within the same event-loop step) and
sends both at once; a head not followed by a write in that step is sent on the next loop
iteration, and a close sends it first, so nothing is ever held back.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/1.1 "


class _CoalescingTransport:
    """Transport proxy: a response head waits for the write after it (or one loop step)."""

    __slots__ = ("_t", "_loop", "_head")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._t, self._loop, self._head = transport, loop, None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._t.write(head + data)
        elif data.startswith(_HEAD):
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._t.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._t.is_closing():
            self._t.write(head)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def __getattr__(self, name: str):  # everything else is the real transport's
        return getattr(self._t, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # flow control and addresses stay on the real transport; writes go through the proxy
        self.transport = _CoalescingTransport(transport, asyncio.get_running_loop())
