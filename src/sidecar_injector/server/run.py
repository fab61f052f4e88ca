"""The server's life: load, listen on two ports, reload, drain on SIGTERM, exit 0.

Shutdown follows what a Deployment behind a Service needs. On SIGTERM the pod is still an
endpoint for a few seconds (kube-proxy and the apiserver learn of its removal late), so:

1. ``/readyz`` turns 503 on both ports at once;
2. for ``drain_delay`` seconds requests are still served, each answer now carrying
   ``Connection: close`` so that clients move to other replicas;
3. the webhook listener closes, idle connections close, and connections in the middle of
   a request close after their answer;
4. after at most ``shutdown_timeout`` more seconds the rest are closed and the process
   exits with status 0, inside the default 30 s grace period.

SIGINT (Ctrl-C) does the same without the drain delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core.admission import MEMO_ENTRIES, OnError
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import InjectorError
from sidecar_injector.server.app import State, WebhookApp
from sidecar_injector.server.configwebhook import config_webhook
from sidecar_injector.server.http import Connections, HttpProtocol, Limits
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics
from sidecar_injector.server.reload import ConfigSource, Reloader
from sidecar_injector.server.tls import ServingCert

__all__ = ["ListenError", "Options", "Server", "new_event_loop", "run"]


class ListenError(InjectorError):
    """A port cannot be bound (in use, no permission, no such address)."""


@dataclass(slots=True)
class Options:
    config: str | Path | None
    """SidecarConfig file or directory; None with ``config_source="kubernetes"``."""
    tls_cert: str
    tls_key: str
    client_ca: str | None = None
    host: str = "0.0.0.0"
    port: int = 8443
    metrics_host: str | None = None
    """Defaults to ``host``."""
    metrics_port: int = 8080
    on_error: OnError = "fail"
    prefix: str = DEFAULT_PREFIX
    """The annotation prefix (``sidecar-injector.io``)."""
    kube_version: str = DEFAULT_KUBE_VERSION
    """Kubernetes version whose schemas configs are validated against."""
    reload_interval: float = 5.0
    drain_delay: float = 5.0
    shutdown_timeout: float = 15.0
    limits: Limits = field(default_factory=Limits)
    max_connections: int = 512
    """Webhook connections open at once, TLS handshakes included: at about 66 KiB each, what
    fits the Deployment's memory limit with the other limits (docs/server.md, "Limits")."""
    max_connections_per_address: int = 256
    """Webhook connections from one client address. The apiserver opens one connection per
    concurrent call (Go keeps 25 idle per host); at well under a millisecond per answer that is
    a few dozen even in bursts, so half the total leaves it ample room, also for several
    apiservers behind one NAT address, while one client cannot take every slot."""
    max_buffered_bytes: int = 64 * 1024 * 1024
    """Request bodies held by all webhook connections together (about 20 reviews of the 3 MiB
    maximum; the apiserver's 5 KB reviews need a few KB): past it a request gets 503."""
    backlog: int = 1024
    memo_entries: int = MEMO_ENTRIES
    """Answers remembered per config set (``core.admission.review``'s memo); 0: none."""
    sock: socket.socket | None = None
    """A listening socket to serve the webhook on instead of binding ``host:port`` (workers)."""
    admin: bool = True
    """Serve the metrics port (a worker leaves it to its supervisor)."""
    ready_fd: int | None = None
    config_source: str = "file"
    """``file``, ``kubernetes`` (list and watch the SidecarConfig API) or ``both``."""
    kubeconfig: str | None = None
    """Credentials for ``kubernetes``/``both``: else ``$KUBECONFIG``, else in-cluster."""
    fleet_metrics: str | None = None
    """``--fleet-metrics``: the MutatingWebhookConfiguration to read; ``sidecar_injector_pods`` and
    SidecarMissing Events (server/fleetmetrics.py). None: off."""
    """A pipe to write one byte to once listening (how a worker tells its supervisor)."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about 1.3x the request rate of asyncio's loop here), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


ADMIN_MAX_CONNECTIONS = 64
"""Connections to the plain metrics port: scrapers and kubelet probes need a handful, and the
port is reachable by every pod (docs/server.md, "Limits")."""
ADMIN_MAX_CONNECTIONS_PER_ADDRESS = 16


class RefusalLog:
    """Counts every connection refused at accept and logs at most one line per second."""

    def __init__(self, metrics: Metrics | None, log: JsonLog, port: str, caps: tuple[int, int]) -> None:
        self.metrics = metrics
        self.log = log
        self.port = port
        self.caps = caps
        self._last = 0.0
        self._since = 0

    def __call__(self, reason: str, address: str) -> None:
        if self.metrics is not None:
            self.metrics.connection_refused(self.port, reason)
        self._since += 1
        now = time.monotonic()
        if now - self._last >= 1.0:
            cap = self.caps[0] if reason == "total" else self.caps[1]
            self.log.warning("connection refused", port=self.port, reason=reason, address=address[:64],
                             cap=cap, refused=self._since)
            self._last = now
            self._since = 0


class Server:
    """Both listeners and the reloader, on the running event loop."""

    def __init__(self, options: Options, log: JsonLog) -> None:
        self.options = options
        self.log = log
        self.metrics = Metrics()
        self.api_source = None
        if options.config_source == "file":
            assert options.config is not None
            self.source: ConfigSource | None = ConfigSource(
                options.config, prefix=options.prefix, kube_version=options.kube_version)
            # Load everything before listening: a server that listens is a server that is ready.
            configs = self.source.load()
            self.metrics.config_loaded(len(configs.configs))
        else:
            self.source, configs = None, ConfigSet(prefix=options.prefix)  # /readyz 503 until listed
        self.cert = ServingCert(options.tls_cert, options.tls_key, options.client_ca)
        self.metrics.cert_loaded(self.cert.not_after)
        self.state = State(configs, loaded=self.source is not None)
        self.app = WebhookApp(self.state, self.metrics, log, options.on_error, options.memo_entries)
        self.app.config_webhook = config_webhook(options.kube_version, self.metrics, log)
        if self.source is None:
            from sidecar_injector.server.apisource import ApiSource  # the API client, only in this mode

            self.api_source = ApiSource(self.state, self.metrics, log, kubeconfig=options.kubeconfig,
                                        file_path=options.config if options.config_source == "both" else None,
                                        prefix=options.prefix, kube_version=options.kube_version,
                                        file_interval=options.reload_interval)
        self.reloader = Reloader(self.state, self.source, self.cert, self.metrics, log,
                                 options.reload_interval)
        caps = (options.max_connections, options.max_connections_per_address)
        self.webhook_conns = Connections(
            self.app.protocol_rejected, max_total=caps[0], max_per_address=caps[1],
            on_refuse=RefusalLog(self.metrics, log, "webhook", caps),
            on_count=lambda n: self.metrics.connection_count("webhook", n), max_buffered=options.max_buffered_bytes)
        webhook_open = self.webhook_conns.open
        self.metrics.in_flight_source = lambda: sum(1 for conn in webhook_open if conn.busy)
        admin_caps = (ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_ADDRESS)
        self.admin_conns = Connections(max_total=admin_caps[0], max_per_address=admin_caps[1],
                                       on_refuse=RefusalLog(self.metrics, log, "metrics", admin_caps),
                                       on_count=lambda n: self.metrics.connection_count("metrics", n))
        self.port = 0
        self.metrics_port = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        o = self.options
        limits = o.limits
        tls = self.cert.listener

        def webhook_protocol() -> HttpProtocol:
            # TLS is started by the protocol once the connection caps admit the peer.
            return HttpProtocol(self.app.webhook, self.webhook_conns, limits, tls)

        try:
            if o.sock is not None:
                webhook = await loop.create_server(webhook_protocol, sock=o.sock, backlog=o.backlog)
            else:
                webhook = await loop.create_server(webhook_protocol, o.host, o.port, backlog=o.backlog)
        except OSError as e:
            raise ListenError(f"cannot listen on {o.host}:{o.port}: {e.strerror or e}") from None
        self._servers = [webhook]
        self.port = webhook.sockets[0].getsockname()[1]
        if o.admin:
            self.metrics_port = await self._start_admin()
        self._stopped = asyncio.Event()
        self._tasks = [loop.create_task(self.reloader.run()), loop.create_task(self._sweep())]
        if self.api_source is not None:
            self._tasks.append(loop.create_task(self.api_source.run()))
        if o.fleet_metrics:
            from sidecar_injector.server.fleetmetrics import FleetMetrics  # the API client, only then

            self._tasks.append(loop.create_task(FleetMetrics(
                self.state, self.metrics, self.log, kubeconfig=o.kubeconfig, webhook_config=o.fleet_metrics).run()))
        self.metrics.ready.set(1)
        self.log.info("listening", webhook=f"https://{o.host}:{self.port}/mutate",
                      metrics=f"http://{o.metrics_host or o.host}:{self.metrics_port}/metrics" if o.admin else None,
                      configs=[c.name for c in self.state.configs.configs], on_error=o.on_error,
                      mtls=bool(o.client_ca))
        if o.ready_fd is not None:
            os.write(o.ready_fd, b"1")
            os.close(o.ready_fd)

    async def _start_admin(self) -> int:
        o = self.options
        host = o.metrics_host or o.host
        try:
            admin = await asyncio.get_running_loop().create_server(
                lambda: HttpProtocol(self.app.admin, self.admin_conns, o.limits), host, o.metrics_port,
                backlog=o.backlog)
        except OSError as e:
            self._servers[0].close()
            raise ListenError(f"cannot listen on {host}:{o.metrics_port} (metrics): {e.strerror or e}") from None
        self._servers.append(admin)
        port: int = admin.sockets[0].getsockname()[1]
        return port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.webhook_conns.sweep(now)
            self.admin_conns.sweep(now)
            self.metrics.refresh()

    async def shutdown(self, drain_delay: float) -> None:
        """Drain and stop (module docstring); safe to call more than once."""
        if self.state.draining:
            return
        self.state.draining = True
        self.metrics.ready.set(0)
        self.log.info("shutting down", drain_delay=drain_delay, open_connections=len(self.webhook_conns.open))
        self.webhook_conns.closing = True
        await asyncio.sleep(drain_delay)
        webhook, *admin = self._servers
        webhook.close()
        self.webhook_conns.close_idle()
        deadline = time.monotonic() + self.options.shutdown_timeout
        while self.webhook_conns.open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.webhook_conns.open):
            conn.close()
        for server in admin:
            server.close()
        self.admin_conns.close_idle()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.log.info("stopped")
        assert self._stopped is not None
        self._stopped.set()

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    async def serve_until_signalled(self) -> None:
        """Start, then run until SIGTERM (drain) or SIGINT (no drain delay) has been handled."""
        loop = asyncio.get_running_loop()
        await self.start()

        def on_signal(delay: float) -> None:
            if self._shutdown_task is None:
                self._shutdown_task = loop.create_task(self.shutdown(delay))

        loop.add_signal_handler(signal.SIGTERM, on_signal, self.options.drain_delay)
        loop.add_signal_handler(signal.SIGINT, on_signal, 0.0)
        try:
            await self.wait_stopped()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            loop.remove_signal_handler(signal.SIGINT)



def run(options: Options, log: JsonLog) -> int:
    """Serve until signalled; the exit status (0 after a clean shutdown)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        server = Server(options, log)
        log.attach(loop)
        loop.run_until_complete(server.serve_until_signalled())
    finally:
        log.attach(None)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
    return 0
