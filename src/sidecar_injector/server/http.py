"""A small HTTP/1.1 server protocol for asyncio: just what a webhook needs, and fast.

Why not a framework: measured on this machine (docs/server.md), an ``asyncio.Protocol`` on
uvloop with httptools' parser serves the same HTTPS keep-alive load at about twice the rate
of uvicorn and 1.5x granian, and it lets us own the ``SSLContext`` (certificate reload) and
the limits below. Handlers are synchronous: the admission work is pure CPU, so each request
is answered inside the ``data_received`` call that completed it, which also keeps pipelined
responses in order without any queue.

Limits enforced here, not in handlers (docs/server.md, "Limits", lists them with their
defaults and metrics):

- connections: at most ``max_connections`` open (including those still in the TLS
  handshake) and ``max_connections_per_address`` from one client address. One over a cap is
  closed as soon as it is accepted, before any TLS handshake (which is why TLS is started
  here, on the admitted connection, rather than by the listener: the listener would
  handshake first, and only then tell the protocol who the peer is);
- a new connection must complete its TLS handshake and send its first request byte within
  ``first_byte_timeout`` (a silent connection otherwise held a slot for the idle timeout);
- request line and headers over ``max_header_bytes``: 431 and close. Counted on the bytes
  as they arrive, so a header line that never ends is cut off at the limit instead of being
  buffered (by httptools) until the request timeout, separators included;
- a body over ``max_body`` (declared by Content-Length, or counted while chunked): 413 at
  once, the rest is discarded unread and the connection closed, so a huge body never sits
  in memory. A chunked body's framing and trailers count against the same budget plus
  ``max_header_bytes``;
- bodies buffered by all connections together over ``max_buffered`` (:class:`Connections`):
  503 for the request that would pass it, so that many slow clients each sending a body
  just under the limit cannot add up to more memory than the pod has;
- a request not complete within ``request_timeout`` (slow client): 408 and close;
- a keep-alive connection idle for ``idle_timeout``: closed. Keep it above the client's own
  idle timeout (Go's transport: 90 s) so the client, not us, closes idle connections: a
  server-side close racing a new POST is a failed webhook call;
- after we close a TLS connection, at most ``tls_shutdown_timeout`` for the peer's
  close_notify (asyncio's default is 30 s), and nothing it sends meanwhile is processed.

Timeouts are checked by one sweep per second over all connections (:class:`Connections`)
instead of a timer per request, which would cost more than the request itself.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any, cast

import httptools

from sidecar_injector.server.connections import Connections, Limits
from sidecar_injector.server.messages import Handler, Request, Response, text_response

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


_REFUSED_PLAIN = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s")
_REFUSED_MESSAGES = {
    "total": b"too many connections to this server\n",
    "per-address": b"too many connections from this address\n",
}


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS layer the running loop itself uses for ``create_server(ssl=...)``: uvloop's own
    (compiled, as fast as the listener's) or asyncio's."""
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop

        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    from asyncio import sslproto

    return sslproto.SSLProtocol


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parses requests and answers them through ``handler``.

    With ``tls``, the listener hands over the plain TCP connection and this protocol starts
    TLS itself once the connection caps have admitted it (module docstring).
    """

    __slots__ = (
        "_address",
        "_body",
        "_body_size",
        "_content_type",
        "_discarding",
        "_in_body",
        "_parser",
        "_phase",
        "_raw",
        "_room",
        "_slot",
        "_tls",
        "_transport",
        "_url",
        "busy",
        "conns",
        "deadline",
        "handler",
        "limits",
    )

    def __init__(self, handler: Handler, conns: Connections, limits: Limits,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.conns = conns
        self.limits = limits
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._raw: asyncio.Transport | None = None
        """The TCP transport while the TLS handshake runs."""
        self._address = ""
        self._slot = False
        self._parser = httptools.HttpRequestParser(self)
        self.busy = False
        """Between the first byte of a request and its response."""
        self.deadline = time.monotonic() + limits.first_byte_timeout
        self._discarding = False
        self._body_size = 0
        self._in_body = False
        self._phase = 0
        """Counts head and body phases passed: tells whether a bounded feed ended one. A head
        ends at the first body byte or, with no body, at the end of the message."""
        self._room = limits.max_header_bytes
        """Bytes that may still arrive before the current phase (head or body) must end."""
        self._reset()

    def _reset(self) -> None:
        self._url: list[bytes] = []
        self._body: list[bytes] = []
        if self._body_size:
            self._drop_body()
        self._content_type: bytes | None = None

    def _drop_body(self) -> None:
        if self._body_size:
            self.conns.buffered -= self._body_size
        self._body_size = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        tcp = cast(asyncio.Transport, transport)
        if self._raw is not None:  # the TLS layer, handshake done, hands over its transport
            self._raw = None
            self._transport = tcp
            return
        if self._discarding:  # closed during the handshake
            tcp.close()
            return
        get_extra_info = getattr(tcp, "get_extra_info", None)  # absent on the tests' fakes
        peer = get_extra_info("peername") if get_extra_info is not None else None
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refused = self.conns.admit(address)
        if refused is not None:
            self._discarding = True
            if self._tls is None:  # plain HTTP: say why; over TLS a reply would cost a handshake
                message = _REFUSED_MESSAGES[refused]
                tcp.write(_REFUSED_PLAIN % (len(message), message))
                tcp.close()
            else:
                tcp.abort()
            if self.conns.on_refuse is not None:
                self.conns.on_refuse(refused, address)
            return
        self._address = address
        self._slot = True
        self.deadline = time.monotonic() + self.limits.first_byte_timeout
        self.conns.open.add(self)
        if self._tls is None:
            self._transport = tcp
        else:
            self._raw = tcp
            self._start_tls(tcp, self._tls)

    def _start_tls(self, tcp: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        """Put the event loop's own TLS layer between the socket and this protocol, now.

        What the listener does with ``ssl=``, done here once the caps admitted the peer;
        ``loop.start_tls`` would not do: it runs a turn later, and the ClientHello may
        already have been read by then. The TLS layer calls :meth:`connection_made` again
        with its transport once the handshake is done.
        """
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        limits = self.limits
        tls_layer = _tls_protocol_class(loop)(
            loop, self, ctx, waiter, server_side=True, ssl_handshake_timeout=limits.first_byte_timeout,
            ssl_shutdown_timeout=limits.tls_shutdown_timeout)
        tcp.set_protocol(tls_layer)
        tls_layer.connection_made(tcp)
        waiter.add_done_callback(self._handshake_done)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        # A failed handshake (garbage, a timeout, a reset) is routine on an open port: the
        # TLS layer closed the socket; give back the slot.
        if waiter.cancelled() or waiter.exception() is not None:
            self._raw = None
            self._lost()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.conns.open.discard(self)
        self._transport = None
        self._body = []
        self._drop_body()
        if self._slot:
            self._slot = False
            self.conns.release(self._address)

    def data_received(self, data: bytes) -> None:
        if self._discarding or self._transport is None:
            return
        try:
            room = self._room
            if len(data) <= room:
                # The common case, one comparison: the callbacks below reset the room when a
                # phase ends, so a request that arrives whole is never split.
                self._room = room - len(data)
                self._parser.feed_data(data)
            else:
                self._feed_bounded(data)
        except httptools.HttpParserUpgrade:
            # The request itself was answered (Upgrade ignored, as HTTP allows); what follows
            # would be another protocol, which we do not speak.
            self.close()
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed HTTP request: {e}")

    def _feed_bounded(self, data: bytes) -> None:
        """Feed no more than the current phase may still take; refuse if it does not end there."""
        while data and not self._discarding and self._transport is not None:
            room = self._room
            if len(data) <= room:
                self._room = room - len(data)
                self._parser.feed_data(data)
                return
            phase = self._phase
            self._room = 0
            if room:
                self._parser.feed_data(data[:room])
                data = data[room:]
            if self._phase == phase and not self._discarding:
                if self._in_body:
                    self._too_large()
                else:
                    self._fail(431, "request line and headers are too large")
                return

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

    def on_header(self, name: bytes, value: bytes) -> None:
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
        if not self._in_body:
            # The head is complete (no on_headers_complete callback: one Python call fewer per
            # request). From here the body, a chunked body's framing, and trailers.
            self._phase += 1
            self._in_body = True
            self._room = self.limits.max_body + self.limits.max_header_bytes
        if self._discarding:
            return
        n = len(body)
        if self._body_size + n > self.limits.max_body:
            self._too_large()
            return
        conns = self.conns
        if conns.buffered + n > conns.max_buffered:
            self._fail(503, "the server holds too many request bytes at once; retry")
            return
        self._body_size += n
        conns.buffered += n
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._phase += 1
        self._in_body = False
        self._room = self.limits.max_header_bytes
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
        """Close from our side, and read nothing more. The connection leaves ``conns.open``
        and gives back its slot at once: a TLS transport may wait (``tls_shutdown_timeout``)
        for the peer's close_notify before it is really gone, and shutdown must not."""
        transport, raw = self._transport, self._raw
        self._lost()
        self._discarding = True
        if transport is not None:
            transport.close()
        elif raw is not None:  # still in the TLS handshake
            self._raw = None
            raw.abort()
