"""The connections of one listener: the per-connection :class:`Limits`, and :class:`Connections`.

:class:`Connections` is the bookkeeping the HTTP protocol (:mod:`~sidecar_injector.server.http`,
whose docstring lists every limit and why) shares across the connections of one listener: the
caps on open connections (in total and per client address), the request body bytes they
hold together, the once-a-second timeout sweep, and graceful shutdown. It is kept apart from
the protocol because it is state about all connections, not the parsing of one: it sees a
connection only through :class:`Connection` (its deadline, whether it is busy, and how to
time it out or close it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Connection", "Connections", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (the docstring of :mod:`~sidecar_injector.server.http` says what each does)."""

    max_body: int = 3 * 1024 * 1024
    """Largest request body accepted: 3 MiB, the most kube-apiserver itself accepts for a
    request (so no review it sends is larger than its object plus a little). Every byte of a
    review costs CPU on the one event loop; controller-runtime's 7 MiB let one client stall
    all others for most of a second per review (docs/server.md, "Limits")."""
    max_header_bytes: int = 64 * 1024
    request_timeout: float = 10.0
    """Seconds from a request's first byte to its last."""
    idle_timeout: float = 120.0
    """Seconds a keep-alive connection may sit idle between requests."""
    first_byte_timeout: float = 5.0
    """Seconds from accepting a connection to the first byte of its first request, TLS
    handshake included. The apiserver sends its request as soon as it has connected."""
    tls_shutdown_timeout: float = 2.0
    """Seconds to wait for the peer's close_notify after we close a TLS connection."""


class Connection(Protocol):
    """What :class:`Connections` needs of an open connection (:class:`~sidecar_injector.server.http.HttpProtocol`)."""

    busy: bool
    """Between the first byte of a request and its response."""
    deadline: float
    """When the sweep times the connection out (``time.monotonic()``)."""

    def timed_out(self) -> None: ...

    def close(self) -> None: ...


class Connections:
    """The open connections of one listener: caps, timeouts and graceful shutdown."""

    def __init__(self, on_reject: Callable[[int, str], None] | None = None, *, max_total: int = 512,
                 max_per_address: int = 256, on_refuse: Callable[[str, str], None] | None = None,
                 on_count: Callable[[int], None] | None = None, max_buffered: int = 64 * 1024 * 1024) -> None:
        self.open: set[Connection] = set()
        self.on_reject = on_reject
        """Told of each request the protocol itself refuses (status, message): for metrics."""
        self.on_refuse = on_refuse
        """Told of each connection refused at accept (reason ``total`` or ``per-address``, address)."""
        self.closing = False
        """Set during shutdown: every response carries ``Connection: close``."""
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.count = 0
        """Connections holding a slot: accepted and not yet closed, TLS handshake included."""
        self.by_address: dict[str, int] = {}
        self.on_count = on_count
        """Told the number of slots held whenever it changes: for a gauge."""
        self.max_buffered = max_buffered
        self.buffered = 0
        """Bytes of request bodies held by all connections, not yet answered."""

    def admit(self, address: str) -> str | None:
        """Take a slot for a new connection from ``address``, or say which cap refuses it."""
        if self.count >= self.max_total:
            return "total"
        held = self.by_address.get(address, 0)
        if held >= self.max_per_address:
            return "per-address"
        self.count += 1
        self.by_address[address] = held + 1
        if self.on_count is not None:
            self.on_count(self.count)
        return None

    def release(self, address: str) -> None:
        self.count -= 1
        held = self.by_address[address] - 1
        if held:
            self.by_address[address] = held
        else:
            del self.by_address[address]
        if self.on_count is not None:
            self.on_count(self.count)

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

