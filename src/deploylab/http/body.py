"""A request body that arrives piece by piece, for a proxy that forwards it as it comes.

:class:`RequestBody` sits between the connection reading the client and the handler sending
the body upstream (nginx's ``proxy_request_buffering off``). It holds at most ``window``
bytes: past that it asks the connection to stop reading (``on_full``) and, once the handler
has taken half of it, to read again (``on_drain``), so an upload of any size costs a bounded
amount of memory. A client that stalls, leaves or sends too much makes the handler's next
read raise the :class:`~deploylab.http.messages.HTTPError` to answer (408, 413, 400).

>>> import asyncio
>>> async def demo():
...     body = RequestBody(length=None)
...     body.push(b"ab"); body.push(b"c"); body.finish()
...     return [piece async for piece in body], body.received
>>> asyncio.run(demo())
([b'ab', b'c'], 3)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from deploylab.http.messages import HTTPError

__all__ = ["BODY_WINDOW", "RequestBody"]

#: Bytes of a request body held between the client and the upstream before the server
#: stops reading from the client (one nginx ``client_body_buffer_size`` of 64 KiB or so).
BODY_WINDOW = 64 * 1024


def _nothing() -> None:
    return None


class RequestBody:
    """The body of one request, streamed (see the module docstring).

    ``length``: the client's ``Content-Length``, or None when it sent the body chunked (the
    upstream then gets it chunked too). ``received``: bytes pushed so far; ``complete``: the
    client sent all of it.
    """

    def __init__(self, length: int | None, window: int = BODY_WINDOW) -> None:
        self.length = length
        self.window = window
        self.received = 0
        self.complete = False
        self.error: HTTPError | None = None
        self.full = False
        self.on_full: Callable[[], None] = _nothing
        self.on_drain: Callable[[], None] = _nothing
        self._pieces: deque[bytes] = deque()
        self._held = 0
        self._waiter: asyncio.Future[None] | None = None

    # the connection's side --------------------------------------------------------------------
    def push(self, piece: bytes) -> None:
        """A piece of the body from the client."""
        if self.error is not None or not piece:
            return
        self._pieces.append(piece)
        self._held += len(piece)
        self.received += len(piece)
        self._wake()
        if self._held > self.window and not self.full:
            self.full = True
            self.on_full()

    def finish(self) -> None:
        """The client sent the whole body."""
        self.complete = True
        self._wake()

    def fail(self, error: HTTPError) -> None:
        """The body will never be complete: the handler's next read raises ``error``."""
        if not self.complete and self.error is None:
            self.error = error
            self._pieces.clear()
            self._held = 0
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the handler's side -----------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            if self.error is not None:
                raise self.error
            if self._pieces:
                piece = self._pieces.popleft()
                self._held -= len(piece)
                if self.full and self._held <= self.window // 2:
                    self.full = False
                    self.on_drain()
                yield piece
                continue
            if self.complete:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read(self) -> bytes:
        """The whole body at once (for a handler that needs it all; bounded by the
        server's ``Limits.max_body``)."""
        return b"".join([piece async for piece in self])
