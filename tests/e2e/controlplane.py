"""A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and
kube-controller-manager on free loopback ports, the way controller-runtime's envtest starts them.

Differences from envtest, and why:

* kube-controller-manager runs too, so that a Deployment becomes a ReplicaSet and Pods with
  ``generateName``, exactly as in a cluster. It shares the admin client certificate (``O=system:masters``)
  with the tests, has its own kubeconfig, ``--leader-elect=false`` and the service-account signing
  key, so that its token and service-account controllers work.
* The ``ServiceAccount`` admission plugin stays ON (envtest turns it off because it has no
  controller manager). Pods are then admitted as in a real cluster: the plugin sets
  ``serviceAccountName`` and adds the ``kube-api-access-*`` projected volume and its mounts BEFORE
  mutating webhooks run, so our webhook sees and must cope with them. The price: a pod can only be
  created once its namespace's ``default`` ServiceAccount exists, so :meth:`ControlPlane.create_namespace`
  waits for it.
* ``--advertise-address=127.0.0.1``: without it the apiserver advertises the host's first
  non-loopback address, which need not exist in a sandbox. The endpoint reconciler refuses a
  loopback address, so it is off (``--endpoint-reconciler-type=none``): nothing here dials the
  ``kubernetes`` Service.

* An audit log of pod creations (Metadata level, ``logs/audit.log``): the apiserver records there
  which webhook configuration it called in which round, whether it mutated, and when a call
  failed open, which tests read with :meth:`ControlPlane.audit_annotations`.

Every process runs in its own process group with its output in a log file under
``<workdir>/logs``; :meth:`ControlPlane.stop` kills the groups and removes the working directory
(keeping the logs when asked to, e.g. after a failed test, and printing where they are).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
from kubernetes.client.rest import ApiException

from . import pki

START_TIMEOUT = 90.0  # seconds; envtest uses 20, but this machine may be compiling in parallel
STOP_TIMEOUT = 15.0
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


# Stop functions of everything running (control planes, webhook servers). Their processes live in
# process groups of their own, so a SIGTERM to the test run (e.g. from `timeout`) would not reach
# them: the handler below stops them first. Normal exits are covered by atexit and the fixtures.
_cleanups: dict[int, Callable[[], None]] = {}
_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: Any) -> None:
    for stop in list(_cleanups.values()):
        with contextlib.suppress(Exception):
            stop()
    signal.signal(signal.SIGTERM, _previous_sigterm if callable(_previous_sigterm) else signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def on_terminate(key: object, stop: Callable[[], None] | None) -> None:
    """Register (or, with ``None``, forget) what to stop if the test run is terminated."""
    global _previous_sigterm
    if stop is None:
        _cleanups.pop(id(key), None)
        return
    _cleanups[id(key)] = stop
    if threading.current_thread() is threading.main_thread() and _previous_sigterm is None:
        _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or died; the message names its log file."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports. All sockets stay open until all are chosen, so the
    ports differ; another process could still take one before we bind it (rare, and the start
    then fails with a clear "address already in use" in the log)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class ControlPlane:
    """Start with :meth:`start` (or as a context manager), stop with :meth:`stop`."""

    def __init__(self, binaries: dict[str, Path]) -> None:
        self.binaries = binaries
        self.workdir = Path(tempfile.mkdtemp(prefix="sidecar-injector-e2e-"))
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir()
        self._procs: list[_Proc] = []
        self._stopped = False
        etcd_port, peer_port, api_port, kcm_port = free_ports(4)
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._etcd_peer_url = f"http://127.0.0.1:{peer_port}"
        self.server = f"https://127.0.0.1:{api_port}"
        self._kcm_port = kcm_port
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir()
        self.ca_file = pki_dir / "ca.crt"
        self.client_cert_file = pki_dir / "admin.crt"
        self.client_key_file = pki_dir / "admin.key"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.audit_log = self.log_dir / "audit.log"
        self._write_pki(pki_dir)
        atexit.register(self.stop)
        on_terminate(self, lambda: self.stop(keep_logs=True))

    # -- setup -------------------------------------------------------------------------------

    def _write_pki(self, d: Path) -> None:
        ca_cert, ca_key = pki.make_ca("sidecar-injector-e2e-ca")
        self.ca_file.write_bytes(ca_cert)
        (d / "ca.key").write_bytes(ca_key)
        # The ClusterIP of the `kubernetes` Service is the first address of the range; in-cluster
        # clients would dial it, so it is a SAN too, like kubeadm's.
        crt, key = pki.make_leaf(
            ca_cert,
            ca_key,
            "kube-apiserver",
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ip_addresses=["127.0.0.1", "10.0.0.1"],
        )
        (d / "apiserver.crt").write_bytes(crt)
        (d / "apiserver.key").write_bytes(key)
        crt, key = pki.make_leaf(ca_cert, ca_key, "admin", organizations=["system:masters"], server=False, client=True)
        self.client_cert_file.write_bytes(crt)
        self.client_key_file.write_bytes(key)
        pub, priv = pki.make_rsa_key_pair()
        (d / "sa.pub").write_bytes(pub)
        (d / "sa.key").write_bytes(priv)
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(self.client_cert_file),
                                "client-key": str(self.client_key_file),
                            },
                        }
                    ],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                    "current-context": "e2e",
                },
                indent=2,
            )
        )

    def _etcd_args(self) -> list[str]:
        return [
            str(self.binaries["etcd"]),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={self._etcd_peer_url}",
            f"--initial-advertise-peer-urls={self._etcd_peer_url}",
            f"--initial-cluster=default={self._etcd_peer_url}",
            # Throw-away data: fsync only costs time (envtest does the same on etcd >= 3.5).
            "--unsafe-no-fsync=true",
        ]

    def _apiserver_args(self) -> list[str]:
        pki_dir = self.workdir / "pki"
        port = self.server.rsplit(":", 1)[1]
        return [
            str(self.binaries["kube-apiserver"]),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The lease reconciler refuses a loopback advertise address ("may not be in the
            # loopback range"); nothing in-cluster needs the `kubernetes` Endpoints here.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            f"--client-ca-file={self.ca_file}",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            # An audit log of pod creations at Metadata level: the apiserver records there which
            # webhook was called in which round, whether it mutated, and when it failed open.
            f"--audit-policy-file={self._write_audit_policy()}",
            f"--audit-log-path={self.audit_log}",
            # The default admission plugins stay as they are (ServiceAccount included: see the
            # module docstring); MutatingAdmissionWebhook is among them.
        ]

    def _write_audit_policy(self) -> Path:
        path = self.workdir / "audit-policy.json"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [
                        {"level": "Metadata", "verbs": ["create"], "resources": [{"group": "", "resources": ["pods"]}]},
                        {"level": "None"},
                    ],
                }
            )
        )
        return path

    def audit_annotations(self, namespace: str, name: str, timeout: float = 10.0) -> dict[str, str]:
        """The annotations the apiserver's audit log recorded for the creation of pod
        ``namespace/name`` (e.g. ``mutation.webhook.admission.k8s.io/round_1_index_0``). The
        event is written as the request completes, so it is waited for."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.audit_log.read_text().splitlines() if self.audit_log.exists() else []:
                try:
                    event = json.loads(line)
                except ValueError:  # a line being written right now
                    continue
                ref = event.get("objectRef", {})
                if (
                    ref.get("namespace") == namespace
                    and ref.get("name") == name
                    and event.get("stage") == "ResponseComplete"
                    and not ref.get("subresource")
                ):
                    annotations: dict[str, str] = event.get("annotations", {})
                    return annotations
            if time.monotonic() > deadline:
                raise TimeoutError(f"no audit event for the creation of pod {namespace}/{name}")
            time.sleep(0.1)

    def _controller_manager_args(self) -> list[str]:
        pki_dir = self.workdir / "pki"
        kcm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        shutil.copyfile(self.kubeconfig, kcm_kubeconfig)
        return [
            str(self.binaries["kube-controller-manager"]),
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self._kcm_port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        ]

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            # A session of its own, so that stop() can kill the whole process group.
            popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        self._procs.append(_Proc(name, popen, log))

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> None:
        proc = next(p for p in self._procs if p.name == name)
        deadline = time.monotonic() + timeout
        while True:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.popen.returncode}; log: {proc.log}\n"
                    f"--- last lines ---\n{tail(proc.log)}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready after {timeout:.0f}s; log: {proc.log}\n--- last lines ---\n{tail(proc.log)}"
                )
            time.sleep(0.2)

    # -- readiness probes --------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the apiserver and presents the admin certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return ctx

    @staticmethod
    def _get_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _etcd_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=5) as r:
                return bool(json.load(r).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        return self._get_ok(f"{self.server}/readyz", self.ssl_context())

    def _controller_manager_ready(self) -> bool:
        # Its serving certificate is self-signed, and /healthz is always allowed anonymously.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return self._get_ok(f"https://127.0.0.1:{self._kcm_port}/healthz", ctx)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        try:
            self._spawn("etcd", self._etcd_args())
            self._wait("etcd", self._etcd_ready)
            self._spawn("kube-apiserver", self._apiserver_args())
            self._wait("kube-apiserver", self._apiserver_ready)
            self._spawn("kube-controller-manager", self._controller_manager_args())
            self._wait("kube-controller-manager", self._controller_manager_ready)
            # Proves the service-account controller works (pods need it, see the docstring).
            self.wait_for_service_account("default")
        except BaseException:
            self.stop(keep_logs=True)
            raise
        print(
            f"\n[e2e] control plane up in {time.monotonic() - t0:.1f}s: {self.server} "
            f"(kubeconfig {self.kubeconfig}, logs {self.log_dir})",
            file=sys.stderr,
        )
        return self

    def check_alive(self) -> None:
        """Raise if a control-plane process died (so a test fails with the right log)."""
        for p in self._procs:
            if p.popen.poll() is not None:
                raise ControlPlaneError(f"{p.name} died with code {p.popen.returncode}; log: {p.log}\n{tail(p.log)}")

    def stop(self, keep_logs: bool = False) -> None:
        """Kill every process group (TERM, then KILL) and remove the working directory. With
        ``keep_logs`` the logs survive (where they were), and their path is printed."""
        if self._stopped:
            return
        self._stopped = True
        on_terminate(self, None)
        for p in reversed(self._procs):
            _kill_group(p.popen)
        if keep_logs:
            # Everything but the logs goes, so the log paths already printed stay valid.
            for entry in self.workdir.iterdir():
                if entry != self.log_dir:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            print(f"\n[e2e] control-plane logs kept in {self.log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.stop(keep_logs=exc_type is not None)

    def log_files(self) -> dict[str, Path]:
        return {**{p.name: p.log for p in self._procs}, "audit (pod creations)": self.audit_log}

    # -- client helpers ----------------------------------------------------------------------

    def api_client(self, pool_size: int = 16) -> kubernetes.client.ApiClient:
        """A new client of the official ``kubernetes`` library, authenticated as the admin."""
        cfg = kubernetes.client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.cert_file = str(self.client_cert_file)
        cfg.key_file = str(self.client_key_file)
        cfg.connection_pool_maxsize = pool_size
        return kubernetes.client.ApiClient(cfg)

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout: float = START_TIMEOUT) -> None:
        with self.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    core.read_namespaced_service_account(name, namespace)
                    return
                except ApiException as e:
                    if e.status != 404:
                        raise
                self.check_alive()
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"ServiceAccount {namespace}/{name} did not appear in {timeout:.0f}s: is the "
                        f"controller manager's service-account controller running? log: "
                        f"{self.log_files().get('kube-controller-manager')}"
                    )
                time.sleep(0.1)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """Create a namespace and wait until pods can be created in it."""
        with self.api_client() as client:
            kubernetes.client.CoreV1Api(client).create_namespace(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
            )
        self.wait_for_service_account(name)


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
    # Children the leader left behind in the group (none expected, but never leak them).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(binaries: dict[str, Path]) -> Iterator[ControlPlane]:
    with ControlPlane(binaries) as cp:
        yield cp


def _main(argv: list[str]) -> int:
    """``python -m tests.e2e.controlplane``: start a control plane and keep it up until Ctrl-C
    (handy for poking at it with kubectl --kubeconfig)."""
    from .binaries import ensure

    with running(ensure()) as cp:
        print(f"KUBECONFIG={cp.kubeconfig}")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                cp.check_alive()
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
