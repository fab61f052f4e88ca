"""The HTTP/1.1 protocol on raw bytes: parsing, keep-alive, pipelining, limits, timeouts.

The protocol gets a recording transport instead of a socket, so each case states exactly
which bytes arrive in which pieces.
"""

from __future__ import annotations

import re
import time

import pytest

from sidecar_injector.server.http import Connections, HttpProtocol, Limits, Request, Response


class FakeTransport:
    def __init__(self) -> None:
        self.out = b""
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class Echo:
    """A handler that records requests and answers with the body's length."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(200, b"%d" % len(request.body), b"text/plain")


def connect(limits: Limits | None = None, on_reject: object = None) -> tuple[HttpProtocol, FakeTransport, Echo,
                                                                               Connections]:
    handler = Echo()
    conns = Connections(on_reject)  # type: ignore[arg-type]
    proto = HttpProtocol(handler, conns, limits or Limits())
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport, handler, conns


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP responses (each with Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        n = int(headers["content-length"])
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out


def post(body: bytes, path: bytes = b"/mutate?timeout=10s", extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path, len(body), extra, body))


def test_request_fields_and_query_string_stripped() -> None:
    proto, t, h, _ = connect()
    proto.data_received(post(b'{"a":1}', extra=b"content-type: Application/JSON; charset=utf-8\r\n"))
    [req] = h.requests
    assert (req.method, req.path, req.body) == (b"POST", b"/mutate", b'{"a":1}')
    assert req.content_type == b"Application/JSON; charset=utf-8"  # the last header of that name
    [(status, headers, body)] = responses(t.out)
    assert (status, body) == (200, b"7")
    assert "connection" not in headers and not t.closed  # HTTP/1.1 keep-alive by default


def test_request_split_into_single_bytes() -> None:
    proto, _t, h, _ = connect()
    for i, byte in enumerate(post(b"x" * 50)):
        proto.data_received(bytes([byte]))
        if i < len(post(b"x" * 50)) - 1:
            assert h.requests == []
    assert [r.body for r in h.requests] == [b"x" * 50]


def test_pipelined_requests_answered_in_order() -> None:
    proto, t, _h, _ = connect()
    proto.data_received(post(b"a") + post(b"bb") + post(b"ccc"))
    assert [body for _, _, body in responses(t.out)] == [b"1", b"2", b"3"]


def test_chunked_body() -> None:
    proto, t, h, _ = connect()
    proto.data_received(b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert h.requests[0].body == b"abcde"
    assert responses(t.out)[0][2] == b"5"


def test_http10_closes_after_response() -> None:
    proto, t, _h, _ = connect()
    proto.data_received(b"GET /healthz HTTP/1.0\r\n\r\n")
    [(_status, headers, _)] = responses(t.out)
    assert headers["connection"] == "close" and t.closed


def test_connection_close_header_honoured() -> None:
    proto, t, _, _ = connect()
    proto.data_received(post(b"{}", extra=b"Connection: close\r\n"))
    assert t.closed and responses(t.out)[0][1]["connection"] == "close"


def test_declared_body_over_limit_is_refused_before_it_arrives() -> None:
    rejected: list[tuple[int, str]] = []
    proto, t, h, _ = connect(Limits(max_body=1000), lambda s, m: rejected.append((s, m)))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n")
    [(status, headers, body)] = responses(t.out)
    assert status == 413 and headers["connection"] == "close" and b"1000 bytes" in body
    assert rejected == [(413, "request body is larger than 1000 bytes")]
    # The rest of the body is discarded unread: nothing is buffered, the handler never runs.
    proto.data_received(b"x" * 5000)
    assert h.requests == [] and proto._body == []
    assert len(responses(t.out)) == 1


def test_body_exactly_at_limit_is_accepted() -> None:
    proto, t, _h, _ = connect(Limits(max_body=1000))
    proto.data_received(post(b"x" * 1000))
    assert responses(t.out)[0][0] == 200


def test_chunked_body_over_limit_is_cut_off_while_counting() -> None:
    proto, t, h, _ = connect(Limits(max_body=100))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        proto.data_received(b"40\r\n" + b"y" * 64 + b"\r\n")
    [(status, _, _)] = responses(t.out)
    assert status == 413 and h.requests == []
    assert sum(len(b) for b in proto._body) <= 100


def test_headers_over_limit() -> None:
    proto, t, h, _ = connect(Limits(max_header_bytes=200))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nX-Junk: " + b"a" * 300 + b"\r\n\r\n")
    assert responses(t.out)[0][0] == 431 and h.requests == []


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    b"NOT HTTP AT ALL\r\n\r\n",
    b"POST /mutate HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /mutate HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",  # smuggling
])
def test_malformed_requests_get_400_and_close(garbage: bytes) -> None:
    proto, t, h, _ = connect()
    proto.data_received(garbage)
    [(status, headers, body)] = responses(t.out)
    assert status == 400 and headers["connection"] == "close" and h.requests == []
    assert b"\n" not in body.rstrip(b"\n")  # one line


def test_upgrade_is_ignored_and_the_connection_closed() -> None:
    proto, t, h, _ = connect()
    proto.data_received(b"GET /healthz HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI * HTTP/2.0")
    [(status, _, _)] = responses(t.out)
    assert status == 200 and len(h.requests) == 1 and t.closed


def test_slow_request_times_out_with_408_idle_connection_just_closes() -> None:
    limits = Limits(request_timeout=5, idle_timeout=60)
    proto, t, _, conns = connect(limits)
    proto.data_received(post(b"{}"))
    conns.sweep(time.monotonic() + 30)
    assert not t.closed  # idle for 30 s < 60 s
    proto.data_received(b"POST /mutate HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    conns.sweep(time.monotonic() + 4)
    assert not t.closed
    conns.sweep(time.monotonic() + 6)
    assert t.closed and responses(t.out)[-1][0] == 408

    proto, t, _h, conns = connect(limits)
    proto.data_received(post(b"{}"))
    conns.sweep(time.monotonic() + 61)
    assert t.closed and len(responses(t.out)) == 1  # the earlier answer only, no 408


def test_rejected_connection_lingers_then_sweep_closes_it() -> None:
    proto, t, _, conns = connect(Limits(max_body=10))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nContent-Length: 11\r\n\r\n")
    assert not t.closed  # still reading (and discarding) so the client can read the 413
    conns.sweep(time.monotonic() + 2)
    assert t.closed


def test_close_idle_spares_busy_connections_which_close_after_their_answer() -> None:
    _idle, t_idle, _, conns = connect()
    busy = HttpProtocol(Echo(), conns, Limits())
    t_busy = FakeTransport()
    busy.connection_made(t_busy)  # type: ignore[arg-type]
    body = post(b"12345")
    busy.data_received(body[:-2])
    conns.close_idle()
    assert t_idle.closed and not t_busy.closed
    busy.data_received(body[-2:])
    [(status, headers, _)] = responses(t_busy.out)
    assert status == 200 and headers["connection"] == "close" and t_busy.closed


def test_head_gets_headers_without_body_and_the_connection_stays_in_step() -> None:
    proto, t, _, _ = connect()
    proto.data_received(b"HEAD /healthz HTTP/1.1\r\n\r\n" + post(b"abc"))
    head, _, rest = t.out.partition(b"\r\n\r\n")
    assert head.endswith(b"Content-Length: 1")  # the GET answer's length ("0"), but no body follows
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"\r\n\r\n3")


def test_a_failing_handler_costs_one_500_not_the_connection() -> None:
    def broken(request: Request) -> Response:
        if request.path == b"/boom":
            raise RuntimeError("bug")
        return Response(200, b"fine", b"text/plain")

    proto = HttpProtocol(broken, Connections(), Limits())
    t = FakeTransport()
    proto.connection_made(t)  # type: ignore[arg-type]
    proto.data_received(b"GET /boom HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n")
    [(s1, _, b1), (s2, _, b2)] = responses(t.out)
    assert (s1, s2, b2) == (500, 200, b"fine") and b"RuntimeError" in b1 and not t.closed


def test_backpressure_pauses_reading() -> None:
    proto, t, _, _ = connect()
    proto.pause_writing()
    assert t.paused
    proto.resume_writing()
    assert not t.paused


def test_connection_registry() -> None:
    proto, t, _, conns = connect()
    assert proto in conns.open
    proto.connection_lost(None)
    assert proto not in conns.open
    proto.data_received(post(b"{}"))  # data after loss is ignored, not an error
    assert t.out == b""


def test_response_head_is_well_formed() -> None:
    proto, t, _, _ = connect()
    proto.data_received(post(b"{}"))
    head = t.out.split(b"\r\n\r\n")[0].decode()
    assert re.fullmatch(r"HTTP/1\.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1", head)
