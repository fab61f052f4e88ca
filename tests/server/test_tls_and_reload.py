"""TLS policy, certificate and config reload without restart, and the SIGTERM drain, in-process."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from .helpers import FAILING_CONFIG, PKI, RunningServer, make_pki, make_review, start_server


def handshake(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def insecure(**kw: object) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def test_tls13_preferred_and_alpn_http11_only(server: RunningServer) -> None:
    ctx = server.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with handshake(server.port, ctx) as s:
        assert s.version() == "TLSv1.3"
        assert s.selected_alpn_protocol() == "http/1.1"
    ctx = server.client_context()
    ctx.set_alpn_protocols(["h2"])
    with handshake(server.port, ctx) as s:
        assert s.selected_alpn_protocol() is None  # h2 is never agreed


def test_tls12_only_ecdhe_aead(server: RunningServer) -> None:
    ctx = insecure(maximum_version=ssl.TLSVersion.TLSv1_2)
    with handshake(server.port, ctx) as s:
        name, version, _ = s.cipher()
        assert version == "TLSv1.2" and name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)
    for weak in ("AES128-SHA256", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
        ctx = insecure(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(weak)
        with pytest.raises(ssl.SSLError):
            handshake(server.port, ctx).close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls11_refused(server: RunningServer) -> None:
    ctx = insecure(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(server.port, ctx).close()


def peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    from cryptography import x509

    with handshake(port, ctx) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def swap_in(pki: PKI, name: str, link_dir: Path) -> None:
    """Replace the served files the way a kubelet updates a mounted Secret: one rename of a symlink."""
    cert, key = pki.issue(name)
    data = link_dir / f"..{name}"
    data.mkdir()
    (data / "tls.crt").write_bytes(cert.read_bytes())
    (data / "tls.key").write_bytes(key.read_bytes())
    tmp = link_dir / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, link_dir / "..data")


def test_certificate_reload_for_new_connections_without_failures(tmp_path: Path, config_file: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    mounted = tmp_path / "secret"
    mounted.mkdir()
    swap_in(pki, "first", mounted)
    for f in ("tls.crt", "tls.key"):
        (mounted / f).symlink_to(f"..data/{f}")
    served = PKI(pki.dir, pki.ca, mounted / "tls.crt", mounted / "tls.key")
    s = start_server(served, config_file)
    try:
        ctx = s.client_context()
        before = peer_serial(s.port, ctx)
        old_conn = s.https()
        assert s.post(make_review(), conn=old_conn)[0] == 200

        failures: list[BaseException] = []
        stop = threading.Event()

        def hammer() -> None:  # new connections throughout the swap
            while not stop.is_set():
                try:
                    assert s.post(make_review())[0] == 200
                except BaseException as e:
                    failures.append(e)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        swap_in(pki, "second", mounted)
        deadline = time.monotonic() + 10
        while peer_serial(s.port, ctx) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        after = peer_serial(s.port, ctx)
        assert after != before
        from cryptography import x509

        assert after == x509.load_pem_x509_certificate((pki.dir / "second.crt").read_bytes()).serial_number
        # The connection made before the swap keeps working on its old session.
        assert s.post(make_review(), conn=old_conn)[0] == 200
        assert s.metric("sidecar_injector_cert_reloads_total", result="success") == 2
    finally:
        s.stop()


def test_broken_certificate_keeps_the_old_one(pki: PKI, config_file: Path) -> None:
    s = start_server(pki, config_file)
    try:
        ctx = s.client_context()
        before = peer_serial(s.port, ctx)
        good_key = pki.key.read_bytes()
        other_cert, _ = pki.issue("other")
        pki.cert.write_bytes(other_cert.read_bytes())  # a cert whose key is not tls.key: mid-swap state
        deadline = time.monotonic() + 10
        while s.metric("sidecar_injector_cert_reloads_total", result="failure") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert peer_serial(s.port, ctx) == before
        assert s.post(make_review())[0] == 200
        time.sleep(0.6)  # more polls of the same broken files: reported once
        assert s.metric("sidecar_injector_cert_reloads_total", result="failure") == 1
        assert any(e["msg"].startswith("certificate reload failed") for e in s.logs())
        assert good_key == pki.key.read_bytes()
    finally:
        s.stop()


def test_mtls_still_enforced_after_a_certificate_reload(tmp_path: Path, config_file: Path) -> None:
    from .helpers import issue_client_cert

    pki = make_pki(tmp_path / "pki")
    clients = make_pki(tmp_path / "clients", cn="clients")
    client = issue_client_cert(clients, "apiserver")
    s = start_server(pki, config_file, client_ca=str(clients.ca))
    try:
        cert, key = pki.issue("next")
        pki.key.write_bytes(key.read_bytes())
        pki.cert.write_bytes(cert.read_bytes())
        deadline = time.monotonic() + 10
        while s.metric("sidecar_injector_cert_reloads_total", result="success") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert s.post(make_review(), conn=s.https(cert=client))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            s.post(make_review())
    finally:
        s.stop()


def wait_metric(s: RunningServer, name: str, value: float, **labels: str) -> None:
    deadline = time.monotonic() + 10
    while s.metric(name, **labels) < value:
        assert time.monotonic() < deadline, f"{name}{labels} never reached {value}"
        time.sleep(0.05)


def test_config_reload_and_broken_config_keeps_last_good(server: RunningServer, config_file: Path) -> None:
    renamed = config_file.read_text().replace("name: proxy\n", "name: proxy-two\n", 1)
    config_file.write_text(renamed)
    wait_metric(server, "sidecar_injector_config_reloads_total", 2, result="success")
    assert "proxy-two" in [e for e in server.logs() if e["msg"] == "config reloaded"][-1]["configs"]

    config_file.write_text("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: [")
    wait_metric(server, "sidecar_injector_config_reloads_total", 1, result="failure")
    status, body, _ = server.post(make_review(uid="still"))
    assert status == 200 and b"patch" in body  # the last good config still injects
    time.sleep(0.6)
    assert server.metric("sidecar_injector_config_reloads_total", result="failure") == 1  # reported once
    assert server.metric("sidecar_injector_configs_loaded") == 1
    assert server.metric("sidecar_injector_config_last_reload_successful") == 0  # what the alert reads
    [entry] = [e for e in server.logs() if e["msg"].startswith("config reload failed")]
    assert entry["level"] == "error" and "YAML" in entry["error"]

    config_file.write_text(FAILING_CONFIG)  # valid again (a different one)
    wait_metric(server, "sidecar_injector_config_reloads_total", 3, result="success")
    assert server.post(make_review())[0] == 500  # the new config is in force: its template fails
    assert server.metric("sidecar_injector_config_last_reload_successful") == 1


def test_drain_readiness_false_first_then_serving_then_exit(pki: PKI, config_file: Path) -> None:
    s = start_server(pki, config_file, drain_delay=1.0)
    conn = s.https()
    assert s.post(make_review(), conn=conn)[0] == 200
    started = time.monotonic()
    fut = s.loop.call_soon_threadsafe(lambda: s.loop.create_task(s.server.shutdown(1.0)))
    assert fut is not None
    time.sleep(0.2)
    assert s.admin_get("/readyz")[0] == 503
    assert s.admin_get("/healthz")[0] == 200
    assert s.metric("sidecar_injector_ready") == 0
    # Still served during the drain delay, telling the client to go elsewhere next time.
    status, _, headers = s.post(make_review(), conn=conn)
    assert status == 200 and headers.get("Connection") == "close"
    status, _, _ = s.post(make_review())  # new connections are still accepted too
    assert status == 200
    s.call(s.server.wait_stopped())
    assert time.monotonic() - started >= 0.95  # the drain delay was honoured (timer slack allowed)
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    s.stop()


def test_request_in_flight_at_shutdown_completes(pki: PKI, config_file: Path) -> None:
    s = start_server(pki, config_file)
    ctx = s.client_context()
    sock = handshake(s.port, ctx)
    body = b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "late"}}'
    head = (b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body))
    sock.sendall(head + body[:10])  # a request under way
    time.sleep(0.1)
    idle = handshake(s.port, ctx)  # and an idle connection
    time.sleep(0.1)
    done = threading.Event()
    s.loop.call_soon_threadsafe(
        lambda: s.loop.create_task(s.server.shutdown(0)).add_done_callback(lambda _: done.set()))
    time.sleep(0.3)
    assert idle.recv(10) == b""  # idle connections are closed at once
    assert not done.is_set()  # the busy one is waited for
    sock.sendall(body[10:])
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer and b'"late"' in answer
    assert done.wait(5)
    sock.close()
    idle.close()
    s.stop()


def test_config_directory_reloads_on_a_configmap_style_symlink_swap(tmp_path: Path, pki: PKI) -> None:
    from .helpers import BENCH_CONFIG

    mount = tmp_path / "configmap"
    mount.mkdir()

    def publish(version: str, text: str) -> None:
        data = mount / f"..{version}"
        data.mkdir()
        (data / "proxy.yaml").write_text(text)
        (mount / "..data_tmp").symlink_to(data.name)
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("v1", BENCH_CONFIG)
    (mount / "proxy.yaml").symlink_to("..data/proxy.yaml")
    s = start_server(pki, mount)
    try:
        assert s.post(make_review())[0] == 200
        publish("v2", FAILING_CONFIG)  # the kubelet's update: one rename, the file itself untouched
        wait_metric(s, "sidecar_injector_config_reloads_total", 2, result="success")
        assert s.post(make_review())[0] == 500  # the new config (whose template fails) is in force
    finally:
        s.stop()
