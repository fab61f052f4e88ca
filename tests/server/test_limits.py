"""Issue 14: bounded memory per connection and in total, bounded metrics, no reading after
close, and the smaller leaks (an unreadable certificate, untruncated request fields).

Protocol cases use the recording transport of test_http_protocol; connection caps and
deadlines run against the real server over real sockets.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar_injector.server.http import Connections, HttpProtocol, Limits
from sidecar_injector.server.run import ADMIN_MAX_CONNECTIONS_PER_ADDRESS

from .helpers import PKI, RunningServer, make_review, start_server
from .test_http_protocol import Echo, FakeTransport, connect, post, responses

# -- the header limit counts the bytes buffered --------------------------------------------


def test_a_header_line_that_never_ends_is_cut_off_at_the_limit() -> None:
    """It used to be buffered (by httptools) until the request timeout: 53 -> 174 MB per connection."""
    proto, t, h, _ = connect(Limits(max_header_bytes=1000))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nX-Endless: ")
    sent = 0
    while not t.out and sent < 100_000:
        proto.data_received(b"a" * 100)
        sent += 100
    assert responses(t.out)[0][0] == 431 and sent <= 1000 and h.requests == []
    proto.data_received(b"a" * 10_000)  # discarded unread
    assert len(responses(t.out)) == 1


def test_the_header_limit_counts_separators_too() -> None:
    """Names and values alone made 150 KB of headers pass a 64 KiB limit."""
    proto, t, h, _ = connect(Limits(max_header_bytes=1000))
    proto.data_received(b"GET /healthz HTTP/1.1\r\n" + b"X: a\r\n" * 300 + b"\r\n")
    assert responses(t.out)[0][0] == 431 and h.requests == []


def test_headers_split_anywhere_are_counted_alike() -> None:
    head = b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 900 + b"\r\n\r\n"
    for step in (1, 7, 64, len(head)):
        proto, t, h, _ = connect(Limits(max_header_bytes=1000))
        for i in range(0, len(head), step):
            proto.data_received(head[i:i + step])
        assert responses(t.out)[0][0] == 200 and len(h.requests) == 1, step
        proto, t, h, _ = connect(Limits(max_header_bytes=900))
        for i in range(0, len(head), step):
            proto.data_received(head[i:i + step])
        assert responses(t.out)[0][0] == 431 and h.requests == [], step


def test_a_large_body_in_the_same_read_as_small_headers_is_not_a_431() -> None:
    proto, t, _h, _ = connect(Limits(max_header_bytes=1000, max_body=100_000))
    proto.data_received(post(b"x" * 50_000))
    assert responses(t.out) == [(200, responses(t.out)[0][1], b"50000")]


def test_many_pipelined_requests_in_one_read_are_all_answered() -> None:
    proto, t, h, _ = connect(Limits(max_header_bytes=1000))
    proto.data_received(post(b"{}") * 200)
    assert len(h.requests) == 200 and [r[0] for r in responses(t.out)] == [200] * 200


def test_chunked_trailers_count_against_the_body_budget() -> None:
    proto, t, h, _ = connect(Limits(max_body=100, max_header_bytes=100))
    proto.data_received(b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: ")
    for _ in range(10):
        proto.data_received(b"a" * 100)
    assert responses(t.out)[0][0] == 413 and h.requests == []


def test_the_body_limit_is_the_apiservers_3_mib() -> None:
    """kube-apiserver accepts request bodies of at most 3 MiB; a review is capped alike."""
    assert Limits().max_body == 3 * 1024 * 1024
    proto, t, _h, _ = connect()
    proto.data_received(b"POST /mutate HTTP/1.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % (3 * 1024 * 1024 + 1))
    assert responses(t.out)[0][0] == 413


# -- connection caps ----------------------------------------------------------------------


def test_connections_admit_up_to_each_cap_and_release_their_slot() -> None:
    counts: list[int] = []
    conns = Connections(max_total=3, max_per_address=2, on_count=counts.append)
    assert [conns.admit("a"), conns.admit("a"), conns.admit("a")] == [None, None, "per-address"]
    assert [conns.admit("b"), conns.admit("c")] == [None, "total"]
    conns.release("a")
    assert conns.admit("c") is None and conns.by_address == {"a": 1, "b": 1, "c": 1}
    assert counts == [1, 2, 3, 2, 3]


class PeerTransport(FakeTransport):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return (self.address, 40000) if name == "peername" else None

    def abort(self) -> None:
        self.aborted = self.closed = True


def test_a_refused_plain_connection_is_told_why_and_holds_no_slot() -> None:
    refused: list[tuple[str, str]] = []
    conns = Connections(max_total=10, max_per_address=1, on_refuse=lambda r, a: refused.append((r, a)))
    first, second = PeerTransport("10.0.0.1"), PeerTransport("10.0.0.1")
    HttpProtocol(Echo(), conns, Limits()).connection_made(first)  # type: ignore[arg-type]
    p2 = HttpProtocol(Echo(), conns, Limits())
    p2.connection_made(second)  # type: ignore[arg-type]
    [(status, headers, body)] = responses(second.out)
    assert status == 503 and headers["connection"] == "close" and b"from this address" in body
    assert second.closed and refused == [("per-address", "10.0.0.1")]
    assert conns.count == 1 and p2 not in conns.open
    p2.connection_lost(None)  # the refused connection's end gives back nothing it did not take
    assert conns.count == 1


@pytest.fixture
def capped(pki: PKI, config_file: Path) -> Iterator[RunningServer]:
    s = start_server(pki, config_file, max_connections=4, max_connections_per_address=2,
                     limits=Limits(request_timeout=3, idle_timeout=30, first_byte_timeout=1.5,
                                   tls_shutdown_timeout=0.5))
    yield s
    s.stop()


def _closed_within(sock: socket.socket | ssl.SSLSocket, seconds: float) -> bool:
    """True if the peer closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_connections_past_the_per_address_cap_are_closed_before_the_handshake(capped: RunningServer) -> None:
    held = [capped.https() for _ in range(2)]
    for c in held:
        c.request("GET", "/healthz")
        assert c.getresponse().read() == b"ok\n"
    with socket.create_connection(("127.0.0.1", capped.port), timeout=5) as raw:
        assert _closed_within(raw, 2)  # no ClientHello sent: closed at accept, not by a timeout
    with pytest.raises((ssl.SSLError, OSError)):
        capped.post(make_review())
    assert capped.metric("sidecar_injector_connections_refused_total", port="webhook", reason="per-address") == 2
    assert capped.metric("sidecar_injector_connections", port="webhook") == 2
    assert any(r["msg"] == "connection refused" and r["reason"] == "per-address" for r in capped.logs())
    held[0].close()
    deadline = time.monotonic() + 3
    while capped.server.webhook_conns.count > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert capped.post(make_review())[0] == 200  # the slot came back
    held[1].close()


def test_the_total_cap_counts_connections_still_in_the_handshake(capped: RunningServer) -> None:
    silent = []
    capped.server.webhook_conns.max_per_address = 100
    for _ in range(4):
        silent.append(socket.create_connection(("127.0.0.1", capped.port), timeout=5))
    deadline = time.monotonic() + 3
    while capped.server.webhook_conns.count < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", capped.port), timeout=5) as raw:
        assert _closed_within(raw, 1)
    assert capped.metric("sidecar_injector_connections_refused_total", port="webhook", reason="total") == 1
    for s in silent:
        s.close()


def test_the_metrics_port_has_its_own_small_caps(server: RunningServer) -> None:
    held = []
    for _ in range(ADMIN_MAX_CONNECTIONS_PER_ADDRESS):
        held.append(socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5))
    deadline = time.monotonic() + 3
    while server.server.admin_conns.count < len(held) and time.monotonic() < deadline:
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5) as extra:
        answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"too many connections from this address" in answer
    for s in held:
        s.close()


# -- deadlines and close ------------------------------------------------------------------


@pytest.mark.slow
def test_a_silent_new_connection_is_closed_after_the_first_byte_deadline(capped: RunningServer) -> None:
    """Before: 10 s for a TLS handshake, then the 120 s idle timeout before the first byte."""
    with socket.create_connection(("127.0.0.1", capped.port), timeout=5) as raw:
        t0 = time.monotonic()
        assert _closed_within(raw, 5) and time.monotonic() - t0 < 3.5
    ctx = capped.client_context()
    with socket.create_connection(("127.0.0.1", capped.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        t0 = time.monotonic()  # handshake done, no request
        assert _closed_within(tls, 5) and time.monotonic() - t0 < 3.5
    assert capped.post(make_review())[0] == 200


@pytest.mark.slow
def test_nothing_is_read_after_the_server_closes_a_tls_connection(capped: RunningServer) -> None:
    """Before: 30 s of waiting for close_notify, reading and decrypting whatever arrived."""
    ctx = capped.client_context()
    raw = socket.create_connection(("127.0.0.1", capped.port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert tls.recv(4096).startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    gone = False
    try:
        while time.monotonic() - t0 < 10:  # a client that never sends close_notify, only data
            tls.sendall(b"x" * 1024)
            time.sleep(0.05)
    except OSError:
        gone = True
    finally:
        raw.close()
    assert gone and time.monotonic() - t0 < 4


def test_keep_alive_connections_of_a_client_pool_are_not_refused(server: RunningServer) -> None:
    """The apiserver keeps a pool of connections per webhook: 50 at once are all served."""
    pool = [server.https() for _ in range(50)]
    for c in pool:
        c.request("POST", "/mutate", body=b"{}", headers={"Content-Type": "application/json"})
    assert [c.getresponse().status for c in pool] == [400] * 50
    for c in pool:
        c.close()
    assert server.metric("sidecar_injector_connections_refused_total", port="webhook", reason="per-address") == 0


# -- item 7 -------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unreadable_certificate_is_reported_once(server: RunningServer, pki: PKI) -> None:
    pki.cert.unlink()
    pki.cert.mkdir()  # unreadable even for root
    time.sleep(1.5)  # several polls at 0.2 s
    assert server.metric("sidecar_injector_cert_reloads_total", result="failure") == 1
    failures = [r for r in server.logs() if r["msg"].startswith("certificate reload failed")]
    assert len(failures) == 1
    assert server.post(make_review())[0] == 200  # the old certificate stays in force


def test_request_fields_are_not_logged_at_any_length(server: RunningServer) -> None:
    review = make_review(namespace="n" * 100_000)
    review["request"]["object"]["metadata"]["generateName"] = "g" * 100_000
    review["request"]["operation"] = "o" * 100_000
    assert server.post(review)[0] == 200
    [line] = [r for r in server.logs() if r["msg"] == "admission"]
    assert all(len(str(line[k])) < 300 for k in ("namespace", "pod", "operation", "uid"))
    review = make_review(uid="u" * 100_000)
    status, body, _ = server.post(review)
    assert status == 400 and len(body) < 400


def test_http_client_sees_the_413_for_an_oversized_review(server: RunningServer) -> None:
    c = server.https()
    try:
        c.putrequest("POST", "/mutate")
        c.putheader("Content-Type", "application/json")
        c.putheader("Content-Length", str(6_650_000))
        c.endheaders()
        r = c.getresponse()
        assert r.status == 413 and b"larger than" in r.read()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        pytest.fail("the 413 must reach the client")
    finally:
        c.close()


def test_bodies_buffered_by_all_connections_together_are_bounded() -> None:
    """Many slow clients each sending a body just under the limit must not add up past it."""
    conns = Connections(max_buffered=2000)
    peers = []
    for _ in range(3):
        proto = HttpProtocol(Echo(), conns, Limits(max_body=1000))
        t = FakeTransport()
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(b"POST /mutate HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 900)
        peers.append((proto, t))
    assert conns.buffered == 1800 and not peers[0][1].out and not peers[1][1].out
    assert responses(peers[2][1].out)[0][0] == 503  # it would have passed 2000
    peers[0][0].data_received(b"x" * 100)  # the first completes: its bytes are given back
    assert responses(peers[0][1].out)[0][0] == 200 and conns.buffered == 900
    peers[1][0].connection_lost(None)  # a connection that goes away gives back its bytes
    assert conns.buffered == 0


# -- a large review does not set off the cyclic garbage collector --------------------------


def test_a_review_runs_with_the_cyclic_collector_paused_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2.3 MB review of 21,000 containers cost 0.51 s of CPU with the collector walking its
    objects again and again, 0.19 s without; the collector is back on after every answer."""
    import gc
    import io

    import orjson

    from sidecar_injector.core.config import ConfigSet
    from sidecar_injector.server import app as app_module
    from sidecar_injector.server.app import State, WebhookApp
    from sidecar_injector.server.http import Request
    from sidecar_injector.server.logs import JsonLog
    from sidecar_injector.server.metrics import Metrics

    seen: list[bool] = []
    real = app_module.review

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    def broken(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        raise RuntimeError("a bug")

    a = WebhookApp(State(ConfigSet()), Metrics(), JsonLog(io.StringIO()))

    def post(body: bytes) -> int:
        return a.webhook(Request(b"POST", b"/mutate", b"application/json", body)).status

    monkeypatch.setattr(app_module, "review", spy)
    assert (post(orjson.dumps(make_review())), post(b"{")) == (200, 400)
    assert seen == [False, False] and gc.isenabled()
    monkeypatch.setattr(app_module, "review", broken)
    assert post(orjson.dumps(make_review())) == 500
    assert seen[-1] is False and gc.isenabled()
    gc.disable()  # a process that runs without the collector keeps it off
    try:
        post(orjson.dumps(make_review()))
        assert not gc.isenabled()
    finally:
        gc.enable()
