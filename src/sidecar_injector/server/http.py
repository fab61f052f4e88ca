"""A small HTTP/1.1 server protocol for asyncio: just what a webhook needs, and fast.

Why not a framework: measured on this machine (docs/server.md), an ``asyncio.Protocol`` on
uvloop with httptools' parser serves the same HTTPS keep-alive load at about twice the rate
of uvicorn and 1.5x granian, and it lets us own the ``SSLContext`` (certificate reload) and
the limits below. Handlers are synchronous: the admission work is pure CPU, so each request
is answered inside the ``data_received`` call that completed it, which also keeps pipelined
responses in order without any queue.

Limits enforced here, not in handlers:

- request line + headers over ``max_header_bytes``: 431 and close;
- a body over ``max_body`` (declared by Content-Length, or counted while chunked): 413 at
  once, the rest is discarded unread and the connection closed, so a huge body never sits
  in memory;
- a request not complete within ``request_timeout`` (slow client): 408 and close;
- a keep-alive connection idle for ``idle_timeout``: closed. Keep it above the client's own
  idle timeout (Go's transport: 90 s) so the client, not us, closes idle connections: a
  server-side close racing a new POST is a failed webhook call.

Timeouts are checked by one sweep per second over all connections (:class:`Connections`)
instead of a timer per request, which would cost more than the request itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["Connections", "HttpProtocol", "Limits", "Request", "Response", "text_response"]

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (see the module docstring)."""

    max_body: int = 7 * 1024 * 1024
    """Largest request body accepted: controller-runtime's 7 MiB (the apiserver's own cap is 3 MiB)."""
    max_header_bytes: int = 64 * 1024
    request_timeout: float = 10.0
    """Seconds from a request's first byte to its last."""
    idle_timeout: float = 120.0
    """Seconds a keep-alive connection may sit idle between requests."""


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    """The path without the query string: the apiserver appends ``?timeout=10s``."""
    content_type: bytes | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Response]


def text_response(status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    return Response(status, message.encode() + b"\n", b"text/plain; charset=utf-8", headers)


class Connections:
    """The open connections of one or more listeners: timeouts and graceful shutdown."""

    def __init__(self, on_reject: Callable[[int, str], None] | None = None) -> None:
        self.open: set[HttpProtocol] = set()
        self.on_reject = on_reject
        """Told of each request the protocol itself refuses (status, message): for metrics."""
        self.closing = False
        """Set during shutdown: every response carries ``Connection: close``."""

    def sweep(self, now: float) -> None:
        for conn in list(self.open):
            if now >= conn.deadline:
                conn.timed_out()

    def close_idle(self) -> None:
        """Close connections between requests; the others close after their response."""
        self.closing = True
        for conn in list(self.open):
            if not conn.busy:
                conn.close()


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parses requests and answers them through ``handler``."""

    __slots__ = (
        "_body",
        "_body_size",
        "_content_type",
        "_discarding",
        "_header_bytes",
        "_parser",
        "_transport",
        "_url",
        "busy",
        "conns",
        "deadline",
        "handler",
        "limits",
    )

    def __init__(self, handler: Handler, conns: Connections, limits: Limits) -> None:
        self.handler = handler
        self.conns = conns
        self.limits = limits
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self.busy = False
        """Between the first byte of a request and its response."""
        self.deadline = time.monotonic() + limits.idle_timeout
        self._discarding = False
        self._reset()

    def _reset(self) -> None:
        self._url: list[bytes] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._header_bytes = 0
        self._content_type: bytes | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.conns.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.open.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._discarding or self._transport is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request itself was answered (Upgrade ignored, as HTTP allows); what follows
            # would be another protocol, which we do not speak.
            self.close()
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed HTTP request: {e}")

    def pause_writing(self) -> None:
        # The client is not reading its responses: stop reading its requests.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.busy = True
        self.deadline = time.monotonic() + self.limits.request_timeout

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        if self._discarding:
            return
        lname = name.lower()
        if lname == b"content-type":
            self._content_type = value
        elif lname == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return  # the parser itself rejects a malformed Content-Length
            if declared > self.limits.max_body:
                self._too_large()

    def on_body(self, body: bytes) -> None:
        if self._discarding:
            return
        self._body_size += len(body)
        if self._body_size > self.limits.max_body:
            self._too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._discarding:
            self.close()
            return
        url = b"".join(self._url)
        query = url.find(b"?")
        path = url if query < 0 else url[:query]
        method = self._parser.get_method()
        request = Request(method, path, self._content_type, b"".join(self._body))
        keep_alive = self._parser.should_keep_alive()
        self._reset()
        try:
            response = self.handler(request)
        except Exception as e:  # a bug in a route costs one answer, not the connection
            response = text_response(500, f"internal error: {type(e).__name__}")
        self._respond(response, keep_alive, head=method == b"HEAD")

    # internals

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes and not self._discarding:
            self._fail(431, "request line and headers are too large")

    def _too_large(self) -> None:
        self._fail(413, f"request body is larger than {self.limits.max_body} bytes")

    def _fail(self, status: int, message: str) -> None:
        """Answer an unusable request and stop reading; what else arrives is discarded unread.

        The connection stays open for up to a second so that a client still sending its
        body is not reset before it reads the answer; the sweep then closes it.
        """
        self._respond(text_response(status, message), keep_alive=False, linger=True)
        self._discarding = True
        if self.conns.on_reject is not None:
            self.conns.on_reject(status, message)
        self._reset()

    def _respond(self, response: Response, keep_alive: bool, linger: bool = False, head: bool = False) -> None:
        transport = self._transport
        if transport is None:
            return
        close = not keep_alive or self.conns.closing
        lines = [
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            % (response.status, _REASONS.get(response.status, b"Unknown"), response.content_type,
               len(response.body))
        ]
        for name, value in response.headers:
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
        if not head:  # the answer to HEAD has the headers of the GET answer, no body
            lines.append(response.body)
        transport.write(b"".join(lines))
        self.busy = False
        if close and not linger:
            self.close()
        elif close:
            self.deadline = time.monotonic() + 1.0
        else:
            self.deadline = time.monotonic() + self.limits.idle_timeout

    def timed_out(self) -> None:
        if self.busy and not self._discarding:
            self._fail(408, "request not received in time")
            self.close()
        else:
            self.close()

    def close(self) -> None:
        """Close from our side. The connection leaves ``conns.open`` at once: a TLS transport
        may wait for the peer's close_notify before it is really gone, and shutdown must not."""
        if self._transport is not None:
            self._transport.close()
        self.conns.open.discard(self)
