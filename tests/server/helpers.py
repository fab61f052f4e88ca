"""Helpers for the webhook server tests: a PKI, configs, and a server running in-process.

The in-process server is the real one (``server.run.Server``: TLS listener, HTTP protocol,
reloader) on its own event loop in a background thread, on ports the OS picks; tests talk
to it over real sockets with the standard library's blocking clients.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import io
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sidecar_injector.install import certs
from sidecar_injector.server.http import Limits
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.run import Options, Server, new_event_loop

HERE = Path(__file__).parent
BENCH_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: proxy
spec:
  injectByDefault: true
  labels:
    foo: bar
  containers:
  - name: proxy
    image: envoyproxy/envoy:v1.31.0
    volumeMounts:
    - {name: envoy-config, mountPath: /etc/envoy}
  volumes:
  - name: envoy-config
    configMap: {name: envoy-config}
"""

# A template that needs an annotation the test pods lack: injection fails at render time.
FAILING_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: needs-version
spec:
  injectByDefault: true
  containers:
  - name: versioned
    image: "busybox:{{ annotations['needs-version.example.com/version'] }}"
"""


@dataclass
class PKI:
    dir: Path
    ca: Path
    cert: Path
    key: Path

    def issue(self, name: str, dns: list[str] | None = None) -> tuple[Path, Path]:
        """Another serving cert from the same CA, written as NAME.crt / NAME.key."""
        ca_cert = self.ca.read_bytes()
        ca_key = (self.dir / "ca.key").read_bytes()
        cert, key = certs.issue_serving_cert(ca_cert, ca_key, dns or ["localhost"], ["127.0.0.1"], days=2)
        (self.dir / f"{name}.crt").write_bytes(cert)
        (self.dir / f"{name}.key").write_bytes(key)
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def issue_client_cert(pki: PKI, name: str) -> tuple[Path, Path]:
    """A client certificate (extendedKeyUsage clientAuth) signed by ``pki``'s CA, for mTLS."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = pki.dir / f"{name}.crt", pki.dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(directory: Path, cn: str = "test CA") -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = certs.generate_ca(cn, 2)
    (directory / "ca.crt").write_bytes(ca_cert)
    (directory / "ca.key").write_bytes(ca_key)
    pki = PKI(directory, directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    cert, key = certs.issue_serving_cert(ca_cert, ca_key, ["localhost"], ["127.0.0.1"], days=2)
    pki.cert.write_bytes(cert)
    pki.key.write_bytes(key)
    return pki


def make_review(uid: str = "uid-1", api_version: str = "admission.k8s.io/v1", operation: str = "CREATE",
                pod: dict[str, Any] | None = None, namespace: str = "shop") -> dict[str, Any]:
    if pod is None:
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-7d9f-", "namespace": namespace, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        }
    return {
        "apiVersion": api_version, "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": operation, "object": pod, "oldObject": None,
            "dryRun": False, "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        },
    }


class RunningServer:
    """A Server on a background event loop, with blocking helpers to talk to it."""

    def __init__(self, options: Options, ca: Path | None) -> None:
        self.log_stream = io.StringIO()
        self.log = JsonLog(self.log_stream, "info")
        self.loop = new_event_loop()
        self.server = Server(options, self.log)
        self.ca = ca
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.server.start())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_loop(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)
        return self.call(run())

    def stop(self) -> None:
        if not self.server.state.draining:
            self.call(self.server.shutdown(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def metrics_port(self) -> int:
        return self.server.metrics_port

    def client_context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx

    def https(self, **kw: Any) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("localhost", self.port, context=self.client_context(**kw),
                                           timeout=10)

    def post(self, body: bytes | dict[str, Any], path: str = "/mutate?timeout=10s",
             content_type: str | None = "application/json",
             conn: http.client.HTTPSConnection | None = None) -> tuple[int, bytes, dict[str, str]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content_type else {}
        own = conn is None
        c = conn or self.https()
        try:
            c.request("POST", path, body=data, headers=headers)
            r = c.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            if own:
                c.close()

    def admin_get(self, path: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series on /metrics (0 if absent)."""
        _, text = self.admin_get("/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in text.decode().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if _normalise(series) == want:
                return float(value)
        return 0.0

    def logs(self) -> list[dict[str, Any]]:
        self.in_loop(self.log.flush)
        return [json.loads(line) for line in self.log_stream.getvalue().splitlines()]


def _normalise(series: str) -> str:
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    labels = sorted(rest.rstrip("}").split(","))
    return name + "{" + ",".join(labels) + "}"


def start_server(pki: PKI, config: Path, **overrides: Any) -> RunningServer:
    options = Options(config=config, tls_cert=str(pki.cert), tls_key=str(pki.key), host="127.0.0.1",
                      port=0, metrics_port=0, reload_interval=0.2, drain_delay=0,
                      limits=overrides.pop("limits", Limits(request_timeout=3, idle_timeout=30)))
    for k, v in overrides.items():
        setattr(options, k, v)
    return RunningServer(options, pki.ca)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

