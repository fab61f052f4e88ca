"""Runs OUR webhook server, ``sidecar-injector serve``, as a subprocess for one test.

The serving certificate and key live in a directory laid out the way the kubelet lays out a
mounted Secret: the visible ``tls.crt``/``tls.key`` are symlinks into ``..data``, itself a symlink to
a timestamped directory, and an update swaps ``..data`` atomically (see :func:`write_secret_dir`).
So the rotation test changes the files exactly as a cluster would.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sidecar_injector.install import certs

from . import pki
from .controlplane import free_ports, on_terminate, tail

START_TIMEOUT = 30.0


def make_ca() -> tuple[bytes, bytes]:
    """The webhook CA, from the project's own ``sidecar_injector.install.certs``: the e2e tests
    exercise the certificates users get."""
    return certs.generate_ca(common_name="sidecar-injector-e2e-webhook-ca", days=7)


def issue_serving_cert(ca_cert: bytes, ca_key: bytes) -> tuple[bytes, bytes]:
    """A serving certificate whose SANs cover the ``url`` the apiserver dials (127.0.0.1)."""
    return certs.issue_serving_cert(ca_cert, ca_key, dns_names=["localhost"], ip_addresses=["127.0.0.1"], days=7)


def write_secret_dir(directory: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` the way the kubelet's AtomicWriter updates a Secret volume: a new
    ``..<timestamp>`` directory, a ``..data_tmp`` symlink renamed over ``..data`` (the atomic
    step), visible symlinks ``name -> ..data/name``, and the old timestamped directory removed."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    ts_dir = directory / stamp
    ts_dir.mkdir()
    for name, content in files.items():
        (ts_dir / name).write_bytes(content)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    os.symlink(stamp, tmp)
    os.rename(tmp, data)
    for name in files:
        link = directory / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    if old is not None:
        shutil.rmtree(directory / old)


def served_certificate(port: int, ca_file: Path) -> bytes:
    """DER of the certificate a NEW TLS connection to 127.0.0.1:port gets (verified by the CA)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


class InjectorServer:
    """``sidecar-injector serve`` on 127.0.0.1 with a certificate from the given CA."""

    def __init__(self, config: Path, workdir: Path, ca: tuple[bytes, bytes]) -> None:
        self.config = config
        self.workdir = workdir
        self.ca_cert, self.ca_key = ca
        self.ca_file = workdir / "ca.crt"
        self.ca_file.write_bytes(self.ca_cert)
        self.cert_dir = workdir / "tls"
        self.cert_pem, key_pem = issue_serving_cert(self.ca_cert, self.ca_key)
        write_secret_dir(self.cert_dir, {"tls.crt": self.cert_pem, "tls.key": key_pem})
        self.port, self.metrics_port = free_ports(2)
        self.url = f"https://127.0.0.1:{self.port}/mutate"
        self.log = workdir / "sidecar-injector.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        # The interpreter running pytest, so the server is the checkout under test.
        return [
            sys.executable,
            "-m",
            "sidecar_injector",
            "serve",
            "--config",
            str(self.config),
            "--tls-cert",
            str(self.cert_dir / "tls.crt"),
            "--tls-key",
            str(self.cert_dir / "tls.key"),
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--reload-interval",
            "1",
            # No endpoints to drop out of here: a stopped server should be gone at once.
            "--drain-delay",
            "0",
        ]

    def start(self) -> InjectorServer:
        assert self._proc is None
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        on_terminate(self, self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"sidecar-injector serve exited with {self._proc.returncode}; log {self.log}:\n{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"sidecar-injector serve not ready in {START_TIMEOUT:.0f}s; log {self.log}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM the server and wait for it (it drains for a moment first), then make sure."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        on_terminate(self, None)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The port must be closed before a test relies on the server being gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def rotate_certificate(self) -> bytes:
        """Issue a new serving certificate (same CA) and swap it in like a Secret update."""
        self.cert_pem, key_pem = issue_serving_cert(self.ca_cert, self.ca_key)
        write_secret_dir(self.cert_dir, {"tls.crt": self.cert_pem, "tls.key": key_pem})
        return self.cert_pem

    def served_serial(self) -> int:
        return pki.serial_of(served_certificate(self.port, self.ca_file))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def admissions(self, pod: str | None = None) -> list[dict[str, Any]]:
        """The server's one-line-per-admission JSON log records (for one pod name)."""
        records = []
        for line in self.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("msg") == "admission" and pod in (None, rec.get("pod")):
                records.append(rec)
        return records
