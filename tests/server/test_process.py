"""``sidecar-injector serve`` as a real process over TLS: start-up modes, errors, rotation, SIGTERM."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import pytest

from .helpers import PKI, free_port, make_pki, make_review

EXE = shutil.which("sidecar-injector") or ""
CMD = [EXE] if EXE else [sys.executable, "-m", "sidecar_injector"]


class Proc:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.argv = [*CMD, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--metrics-port", str(self.metrics_port), *args]
        # stderr to a file, not a pipe: an unread pipe fills up and blocks the server's log writes.
        self._log = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log")
        self.p = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self._log, text=True)

    @property
    def stderr(self) -> str:
        return Path(self._log.name).read_text()

    def wait_ready(self, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"server exited {self.p.returncode}: {self.stderr}")
            try:
                if self.readyz() == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server never became ready")

    def readyz(self) -> int:
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=2)
        try:
            c.request("GET", "/readyz")
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def post(self, ca: Path, body: bytes, conn: http.client.HTTPSConnection | None = None) -> tuple[int, bytes]:
        c = conn or http.client.HTTPSConnection("localhost", self.port, timeout=10,
                                                context=ssl.create_default_context(cafile=str(ca)))
        try:
            c.request("POST", "/mutate?timeout=10s", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            if conn is None:
                c.close()

    def terminate(self, timeout: float = 30) -> int:
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self._log.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def run_fail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, "serve", *args], capture_output=True, text=True, timeout=60)


def test_no_arguments_serves_the_builtin_example_with_a_self_signed_cert(procs: list[Proc]) -> None:
    p = Proc("--drain-delay", "0.5")
    procs.append(p)
    p.wait_ready()
    found = re.search(r"CA bundle: (\S+)", p.stderr)
    assert found, p.stderr
    ca = Path(found.group(1))
    assert ca.is_file()
    status, body = p.post(ca, json.dumps(make_review(uid="hello")).encode())
    assert status == 200
    response = json.loads(body)["response"]
    review = make_review(uid="hello")
    patched = jsonpatch.apply_patch(review["request"]["object"], json.loads(base64.b64decode(response["patch"])))
    assert response["uid"] == "hello"
    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "hello-sidecar"]
    assert p.terminate() == 0


def test_e2e_interface_flags_drain_and_exit_0(tmp_path: Path, procs: list[Proc], config_file: Path,
                                              pki: PKI) -> None:
    p = Proc("--config", str(config_file), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
             "--reload-interval", "0.5", "--drain-delay", "1.5", "--on-error", "deny", "--log-level", "info")
    procs.append(p)
    p.wait_ready()
    conn = http.client.HTTPSConnection("localhost", p.port, timeout=10,
                                       context=ssl.create_default_context(cafile=str(pki.ca)))
    assert p.post(pki.ca, json.dumps(make_review()).encode(), conn)[0] == 200
    started = time.monotonic()
    p.p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert p.readyz() == 503
    assert p.post(pki.ca, json.dumps(make_review()).encode(), conn)[0] == 200  # still served while draining
    p.p.wait(20)
    stderr = p.stderr
    elapsed = time.monotonic() - started
    assert p.p.returncode == 0 and 1.4 <= elapsed < 10, (p.p.returncode, elapsed, stderr)
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [e["msg"] for e in logs if e["msg"] in ("listening", "shutting down", "stopped")] == [
        "listening", "shutting down", "stopped"]
    admissions = [e for e in logs if e["msg"] == "admission"]
    assert len(admissions) == 2 and all(e["uid"] == "uid-1" and e["outcome"] == "injected" for e in admissions)


def test_rotation_under_load_by_symlink_swap_without_failed_requests(tmp_path: Path, procs: list[Proc],
                                                                      config_file: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    secret = tmp_path / "secret"
    secret.mkdir()

    def publish(name: str) -> None:
        cert, key = pki.issue(name)
        data = secret / f"..{name}"
        data.mkdir()
        shutil.copy(cert, data / "tls.crt")
        shutil.copy(key, data / "tls.key")
        (secret / "..tmp").symlink_to(data.name)
        os.replace(secret / "..tmp", secret / "..data")

    publish("v1")
    for f in ("tls.crt", "tls.key"):
        (secret / f).symlink_to(f"..data/{f}")
    p = Proc("--config", str(config_file), "--tls-cert", str(secret / "tls.crt"), "--tls-key",
             str(secret / "tls.key"), "--reload-interval", "0.2", "--drain-delay", "0")
    procs.append(p)
    p.wait_ready()
    body = json.dumps(make_review()).encode()
    results: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                results.append(p.post(pki.ca, body)[0])  # a new connection (new handshake) each time
            except Exception as e:
                results.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for name in ("v2", "v3", "v4"):
        time.sleep(0.7)
        publish(name)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert len(results) > 50 and set(results) == {200}, [r for r in results if r != 200][:5]
    assert p.terminate() == 0
    reloads = [json.loads(line) for line in p.stderr.splitlines() if '"certificate reloaded"' in line]
    assert len(reloads) == 3


@pytest.mark.parametrize("args,message", [
    (["--tls-cert", "x.crt"], "--tls-cert and --tls-key go together"),
    (["--config", "/nonexistent/config.yaml"], "no such file or directory"),
    (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "cannot read /nonexistent.crt"),
    (["--reload-interval", "0"], "--reload-interval must be more than zero"),
    (["--port", "70000"], "--port must be a port number"),
])
def test_bad_invocations_fail_with_one_line(args: list[str], message: str) -> None:
    r = run_fail("--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", str(free_port()), *args)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_is_a_one_line_error(procs: list[Proc], config_file: Path, pki: PKI) -> None:
    p = Proc("--config", str(config_file), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    procs.append(p)
    p.wait_ready()
    r = run_fail("--config", str(config_file), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                 "--host", "127.0.0.1", "--port", str(p.port), "--metrics-port", str(free_port()))
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{p.port}" in r.stderr and "Traceback" not in r.stderr


def test_broken_config_at_start_is_a_one_line_error(tmp_path: Path, pki: PKI) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {}\n")
    r = run_fail("--config", str(bad), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                 "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", str(free_port()))
    assert r.returncode == 1 and str(bad) in r.stderr and "Traceback" not in r.stderr


def test_workers_share_the_port_sum_their_metrics_and_are_restarted(procs: list[Proc], config_file: Path,
                                                                     pki: PKI) -> None:
    p = Proc("--config", str(config_file), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
             "--workers", "2", "--drain-delay", "0.5")
    procs.append(p)
    p.wait_ready()
    body = json.dumps(make_review()).encode()
    for _ in range(20):  # a new connection each: the kernel spreads them over the workers
        assert p.post(pki.ca, body)[0] == 200
    c = http.client.HTTPConnection("127.0.0.1", p.metrics_port, timeout=5)
    c.request("GET", "/metrics")
    metrics = c.getresponse().read().decode()
    c.close()
    assert ('sidecar_injector_injection_requests_total{code="200",operation="CREATE",outcome="injected"} 20.0'
            in metrics)
    assert "sidecar_injector_admission_duration_seconds_count 20.0" in metrics
    assert "sidecar_injector_configs_loaded 1.0" in metrics
    logs = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")]
    worker_pids = [e["pid"] for e in logs if e["msg"] == "worker started"]
    assert len(worker_pids) == 2

    os.kill(worker_pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while '"worker exited; starting another"' not in p.stderr or p.readyz() != 200:
        assert time.monotonic() < deadline, p.stderr
        time.sleep(0.1)
    assert p.post(pki.ca, body)[0] == 200
    assert p.terminate() == 0
    assert not any(line for line in p.stderr.splitlines() if "Traceback" in line)
    stops = [json.loads(line) for line in p.stderr.splitlines() if '"msg":"stopped"' in line]
    assert len(stops) == 3  # two workers and the supervisor
