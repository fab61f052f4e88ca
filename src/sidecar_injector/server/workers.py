"""``serve --workers N``: N worker processes on one listening socket, to use more cores.

One Python process answers on one core. The supervisor binds the webhook port once and
starts N workers as fresh interpreters (``serve`` again, with the socket passed as an
inherited file descriptor), so the kernel hands each new connection to whichever worker
accepts it first. Each worker is a complete server (TLS, reloads, limits, drain) without
the metrics port; the supervisor serves that port itself:

- ``/metrics`` adds up the workers' series with prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, a private directory unless already set);
- ``/readyz`` is 200 while every worker is up and has said it is listening, and 503 from
  SIGTERM on; ``/healthz`` is 200 while the supervisor runs.

A worker that dies is started again. SIGTERM is passed on to the workers, which drain as
a single server does; the supervisor exits 0 once they all have. Workers are spawned, not
forked, so none inherits an event loop, threads or locks in an unknown state.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from sidecar_injector.server.http import Connections, HttpProtocol, Request, Response, text_response
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.run import (
    ADMIN_MAX_CONNECTIONS,
    ADMIN_MAX_CONNECTIONS_PER_ADDRESS,
    ListenError,
    Options,
    RefusalLog,
    new_event_loop,
)

__all__ = ["MULTIPROC_ENV", "Supervisor", "run_workers"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_ALLOW_GET = ((b"Allow", b"GET, HEAD"),)
_YOUNG = 10.0
_MAX_BACKOFF = 30.0


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], ready_fd: int, backoff: float) -> None:
        self.proc = proc
        self.ready_fd = ready_fd
        self.ready = False
        self.started = time.monotonic()
        self.backoff = backoff
        """Seconds to wait before starting this slot's next worker should this one die young."""
        self.respawn_at: float | None = None


class Supervisor:
    def __init__(self, options: Options, log: JsonLog, workers: int, worker_argv: Sequence[str]) -> None:
        self.options = options
        self.log = log
        self.count = workers
        self.worker_argv = list(worker_argv)
        self.workers: list[Worker] = []
        self.draining = False
        self.sock: socket.socket | None = None
        caps = (ADMIN_MAX_CONNECTIONS, ADMIN_MAX_CONNECTIONS_PER_ADDRESS)
        self.admin_conns = Connections(max_total=caps[0], max_per_address=caps[1],
                                       on_refuse=RefusalLog(None, log, "metrics", caps))
        self.metrics_port = 0
        self.port = 0
        self._stopped: asyncio.Event | None = None

    # the metrics port

    def admin(self, request: Request) -> Response:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        from sidecar_injector.server.metrics import CONTENT_TYPE

        if request.method not in (b"GET", b"HEAD"):
            return text_response(405, "use GET", _ALLOW_GET)
        if request.path == b"/metrics":
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return Response(200, generate_latest(registry), CONTENT_TYPE)
        if request.path == b"/healthz":
            return text_response(200, "ok")
        if request.path == b"/readyz":
            ready = sum(w.ready and w.proc.poll() is None for w in self.workers)
            if self.draining:
                return text_response(503, "shutting down")
            if ready < self.count:
                return text_response(503, f"{ready} of {self.count} workers ready")
            return text_response(200, "ok")
        return text_response(404, f"no such path: {request.path.decode('latin-1')[:200]}")

    # workers

    def _spawn(self, backoff: float = 0.0) -> Worker:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        fd = self.sock.fileno()
        argv = [*self.worker_argv, "--listen-fd", str(fd), "--ready-fd", str(write_fd)]
        proc = subprocess.Popen(argv, pass_fds=(fd, write_fd))
        os.close(write_fd)
        worker = Worker(proc, read_fd, backoff)

        def on_ready() -> None:
            try:
                worker.ready = os.read(read_fd, 1) == b"1"
            finally:
                loop.remove_reader(read_fd)
                os.close(read_fd)

        loop.add_reader(read_fd, on_ready)
        self.log.info("worker started", pid=proc.pid)
        return worker

    async def _watch(self) -> None:
        from prometheus_client import multiprocess

        while not self.draining:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for i, worker in enumerate(self.workers):
                code = worker.proc.poll()
                if code is None or self.draining:
                    continue
                if worker.respawn_at is None:
                    multiprocess.mark_process_dead(worker.proc.pid)  # type: ignore[no-untyped-call]
                    # A worker that dies young (e.g. cannot load a config broken since start-up)
                    # is restarted after a doubling delay, not in a tight loop.
                    young = now - worker.started < _YOUNG
                    worker.backoff = min(max(worker.backoff * 2, 0.5), _MAX_BACKOFF) if young else 0.0
                    worker.respawn_at = now + worker.backoff
                    self.log.error("worker exited; starting another", pid=worker.proc.pid, status=code,
                                   delay=worker.backoff)
                if now >= worker.respawn_at:
                    self.workers[i] = self._spawn(worker.backoff)

    async def start(self) -> None:
        o = self.options
        loop = asyncio.get_running_loop()
        try:
            self.sock = socket.create_server((o.host, o.port), backlog=o.backlog)
        except OSError as e:
            raise ListenError(f"cannot listen on {o.host}:{o.port}: {e.strerror or e}") from None
        self.port = self.sock.getsockname()[1]
        host = o.metrics_host or o.host
        try:
            admin = await loop.create_server(
                lambda: HttpProtocol(self.admin, self.admin_conns, o.limits), host, o.metrics_port)
        except OSError as e:
            raise ListenError(f"cannot listen on {host}:{o.metrics_port} (metrics): {e.strerror or e}") from None
        self._admin = admin
        self.metrics_port = admin.sockets[0].getsockname()[1]
        self.workers = [self._spawn() for _ in range(self.count)]
        self._stopped = asyncio.Event()
        self._watcher = loop.create_task(self._watch())
        self.log.info("supervising", workers=self.count, webhook=f"https://{o.host}:{self.port}/mutate",
                      metrics=f"http://{host}:{self.metrics_port}/metrics")

    async def shutdown(self, sig: int) -> None:
        if self.draining:
            return
        self.draining = True
        self.log.info("shutting down workers", signal=signal.Signals(sig).name)
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(sig)
        limit = time.monotonic() + self.options.drain_delay + self.options.shutdown_timeout + 5
        while any(w.proc.poll() is None for w in self.workers) and time.monotonic() < limit:
            await asyncio.sleep(0.05)
        for worker in self.workers:
            if worker.proc.poll() is None:
                self.log.error("worker did not stop in time; killing it", pid=worker.proc.pid)
                worker.proc.kill()
                worker.proc.wait()
        self._admin.close()
        self.admin_conns.close_idle()
        assert self.sock is not None
        self.sock.close()
        self.log.info("stopped")
        assert self._stopped is not None
        self._stopped.set()

    async def serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        await self.start()
        tasks: list[asyncio.Task[None]] = []

        def on_signal(sig: int) -> None:
            tasks.append(loop.create_task(self.shutdown(sig)))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        assert self._stopped is not None
        await self._stopped.wait()


def run_workers(options: Options, log: JsonLog, workers: int, worker_argv: Sequence[str]) -> int:
    """Run ``workers`` copies of ``worker_argv`` (a ``serve`` command line) under a supervisor."""
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        own_dir = tempfile.mkdtemp(prefix="sidecar-injector-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir  # inherited by the workers
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        supervisor = Supervisor(options, log, workers, worker_argv)
        log.attach(loop)
        loop.run_until_complete(supervisor.serve_until_signalled())
    finally:
        log.attach(None)
        loop.close()
        asyncio.set_event_loop(None)
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs one worker: this program with ``argv`` (``serve ...``)."""
    return [sys.executable, "-m", "sidecar_injector", *argv]
