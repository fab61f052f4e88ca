"""The webhook over real HTTPS, in-process: protocol versions, bad input, probes, metrics, logs."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path

import jsonpatch
import pytest

from sidecar_injector.server.http import Limits

from .helpers import FAILING_CONFIG, PKI, RunningServer, issue_client_cert, make_pki, make_review, start_server


def decode(body: bytes) -> dict:
    return json.loads(body)


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_mutate_answers_in_the_request_version_with_a_patch_that_applies(server: RunningServer,
                                                                          api_version: str) -> None:
    review = make_review(uid="abc-123", api_version=api_version)
    status, body, headers = server.post(review)
    assert status == 200 and headers["Content-Type"] == "application/json"
    out = decode(body)
    assert out["apiVersion"] == api_version and out["kind"] == "AdmissionReview"
    response = out["response"]
    assert response["uid"] == "abc-123" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(review["request"]["object"], json.loads(base64.b64decode(response["patch"])))
    assert patched["metadata"]["labels"]["foo"] == "bar"
    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "proxy"]
    assert {"name": "envoy-config", "configMap": {"name": "envoy-config"}} in patched["spec"]["volumes"]


def test_skip_has_neither_patch_nor_patch_type(server: RunningServer) -> None:
    status, body, _ = server.post(make_review(operation="UPDATE"))
    response = decode(body)["response"]
    assert status == 200 and response["allowed"] is True
    assert "patch" not in response and "patchType" not in response


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8"])
def test_content_type_parameters_and_case_accepted(server: RunningServer, content_type: str) -> None:
    assert server.post(make_review(), content_type=content_type)[0] == 200


@pytest.mark.parametrize("body,content_type,message", [
    (b"", "application/json", "empty request body"),
    (b"{not json", "application/json", "not JSON"),
    (b"[1, 2]", "application/json", "not a JSON object"),
    (b'{"kind": "Pod", "apiVersion": "v1"}', "application/json", "not an AdmissionReview"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "application/json", "no request"),
    (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}',
     "application/json", "uid is missing"),
    (json.dumps(make_review()).encode(), "text/plain", "Content-Type must be application/json, got text/plain"),
    (json.dumps(make_review()).encode(), None, "Content-Type must be application/json, got none"),
    (json.dumps(make_review()).encode(), "application/jsonx", "Content-Type must be application/json"),
])
def test_bad_requests_get_400_with_a_one_line_reason(server: RunningServer, body: bytes,
                                                     content_type: str | None, message: str) -> None:
    status, out, headers = server.post(body, content_type=content_type)
    assert status == 400
    doc = decode(out)
    assert doc["kind"] == "Status" and doc["code"] == 400 and message in doc["message"]
    assert "\n" not in doc["message"]
    assert "Connection" not in headers  # the connection stays usable


def test_object_that_is_not_a_pod_shape_is_400_not_500(server: RunningServer) -> None:
    review = make_review(pod={"metadata": "nope", "spec": 7})
    status, out, _ = server.post(review)
    assert status == 400, out


def test_routes_and_methods(server: RunningServer) -> None:
    c = server.https()
    c.request("GET", "/mutate")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST"
    r.read()
    c.request("GET", "/nope")
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.request("POST", "/healthz", body=b"{}")
    r = c.getresponse()
    assert r.status == 405
    r.read()
    for path in ("/healthz", "/readyz", "/readyz?verbose"):
        c.request("GET", path)
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
    c.close()
    assert server.admin_get("/healthz") == (200, b"ok\n")
    assert server.admin_get("/readyz") == (200, b"ok\n")
    assert server.admin_get("/mutate")[0] == 404  # admission only on the TLS port
    assert server.admin_get("/metrics")[0] == 200


def test_keep_alive_connection_serves_many_requests(server: RunningServer) -> None:
    c = server.https()
    for i in range(20):
        status, body, _ = server.post(make_review(uid=f"u{i}"), conn=c)
        assert status == 200 and decode(body)["response"]["uid"] == f"u{i}"
    c.close()
    assert server.metric("sidecar_injector_injection_requests_total", operation="CREATE",
                         outcome="injected", code="200") == 20


def test_body_over_7_mib_is_413(server: RunningServer) -> None:
    ctx = server.client_context()
    with socket.create_connection(("127.0.0.1", server.port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (7 * 1024 * 1024 + 1))
        s.sendall(b"{" * 65536)  # only a part of it: the answer must not wait for the rest
        s.settimeout(5)
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert server.metric("sidecar_injector_injection_failure_total", reason="body-too-large") == 1


def test_metrics_count_outcomes_and_reasons(server: RunningServer) -> None:
    server.post(make_review())
    server.post(make_review(operation="DELETE"))
    server.post(b"garbage")
    server.post(make_review(), content_type="text/plain")
    m = server.metric
    assert m("sidecar_injector_injection_requests_total", operation="CREATE", outcome="injected", code="200") == 1
    assert m("sidecar_injector_injection_requests_total", operation="DELETE", outcome="skipped", code="200") == 1
    assert m("sidecar_injector_injection_requests_total", operation="unknown", outcome="rejected", code="400") == 2
    assert m("sidecar_injector_injection_success_total") == 1
    assert m("sidecar_injector_injection_skip_total", reason="not-create") == 1
    assert m("sidecar_injector_injection_failure_total", reason="invalid-review") == 1
    assert m("sidecar_injector_injection_failure_total", reason="content-type") == 1
    assert m("sidecar_injector_admission_duration_seconds_count") == 4
    assert m("sidecar_injector_configs_loaded") == 1
    assert m("sidecar_injector_config_reloads_total", result="success") == 1
    assert m("sidecar_injector_ready") == 1
    assert m("sidecar_injector_serving_cert_expiry_timestamp_seconds") > 1.7e9


def test_one_json_log_line_per_admission(server: RunningServer) -> None:
    server.post(make_review(uid="log-me"))
    server.post(b"{", content_type="application/json")
    lines = [entry for entry in server.logs() if entry["msg"].startswith("admission")]
    first, second = lines
    assert first["uid"] == "log-me" and first["namespace"] == "shop" and first["pod"] == "web-7d9f-"
    assert first["outcome"] == "injected" and first["configs"] == ["proxy"] and first["operation"] == "CREATE"
    assert isinstance(first["duration_ms"], float) and first["level"] == "info"
    assert second["outcome"] == "rejected" and second["reason"] == "invalid-review"


@pytest.mark.parametrize("on_error,status,allowed", [("fail", 500, None), ("allow", 200, True),
                                                     ("deny", 200, False)])
def test_injection_failure_answers_per_on_error(pki: PKI, tmp_path: Path, on_error: str, status: int,
                                                allowed: bool | None) -> None:
    config = tmp_path / "failing.yaml"
    config.write_text(FAILING_CONFIG)
    s = start_server(pki, config, on_error=on_error)
    try:
        code, body, _ = s.post(make_review(uid="boom"))
        doc = decode(body)
        assert code == status
        if allowed is None:
            assert doc["kind"] == "Status" and "failed to render" in doc["message"]
        else:
            response = doc["response"]
            assert response["uid"] == "boom" and response["allowed"] is allowed and "patch" not in response
            if allowed:
                assert "injection failed" in response["warnings"][0]
            else:
                assert "failed to render" in response["status"]["message"]
        assert s.metric("sidecar_injector_injection_failure_total", reason="injection-error") == 1
        [entry] = [e for e in s.logs() if e["msg"] == "admission"]
        assert entry["level"] == "error" and entry["outcome"] == "error" and "failed to render" in entry["reason"]
    finally:
        s.stop()


def test_garbage_on_the_tls_port_does_not_hurt_other_clients(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP to the TLS port
        s.settimeout(5)
        try:
            s.recv(100)
        except (ConnectionError, TimeoutError):
            pass
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
    assert server.post(make_review())[0] == 200


def test_tls_handshake_never_completed_is_dropped(pki: PKI, config_file: Path) -> None:
    # The handshake's deadline is the first-byte timeout (default 5 s, the client's wait here
    # too: the race made this test flaky); the request timeout no longer governs it.
    s = start_server(pki, config_file, limits=Limits(request_timeout=0.5, first_byte_timeout=0.5))
    try:
        with socket.create_connection(("127.0.0.1", s.port)) as raw:
            raw.settimeout(5)
            assert raw.recv(100) == b""  # closed by the server after the handshake timeout
    finally:
        s.stop()


def test_client_certificate_required_with_client_ca(tmp_path: Path, config_file: Path) -> None:
    serving = make_pki(tmp_path / "serving")
    clients = make_pki(tmp_path / "clients", cn="client CA")
    client_cert = issue_client_cert(clients, "apiserver")
    s = start_server(serving, config_file, client_ca=str(clients.ca))
    try:
        assert s.post(make_review(), conn=s.https(cert=client_cert))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            s.post(make_review())  # no client certificate
        wrong = issue_client_cert(make_pki(tmp_path / "other", cn="other CA"), "intruder")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            s.post(make_review(), conn=s.https(cert=wrong))
        assert s.admin_get("/readyz")[0] == 200  # probes need no client certificate
    finally:
        s.stop()


def test_many_concurrent_connections_and_a_slow_client_blocks_no_one(server: RunningServer) -> None:
    ctx = server.client_context()
    slow = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                           server_hostname="localhost")
    slow.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Len")  # and then nothing
    conns = [server.https() for _ in range(150)]
    body = json.dumps(make_review()).encode()
    for c in conns:  # all open at once; each sends its request before any answer is read
        c.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    statuses = [c.getresponse().status for c in conns]
    assert statuses == [200] * 150
    for c in conns:
        c.close()
    # The slow client is cut off by the request timeout (3 s in these tests) with a 408.
    slow.settimeout(10)
    assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
    slow.close()
    assert server.metric("sidecar_injector_injection_failure_total", reason="request-timeout") == 1


def test_annotation_prefix_is_configurable(pki: PKI, config_file: Path) -> None:
    server = start_server(pki, config_file, prefix="mesh.example.com")
    try:
        pod = make_review()["request"]["object"]
        pod["metadata"]["annotations"] = {"sidecar-injector.io/inject": "false"}  # another prefix: not ours
        status, body, _ = server.post(make_review(pod=pod))
        patch = json.loads(base64.b64decode(json.loads(body)["response"]["patch"]))
        assert status == 200 and any(op["path"].startswith("/metadata/annotations") for op in patch)
        assert any(op["path"] == "/metadata/annotations/mesh.example.com~1status" for op in patch)
        pod["metadata"]["annotations"] = {"mesh.example.com/inject": "false"}
        status, body, _ = server.post(make_review(pod=pod))
        assert status == 200 and "patch" not in json.loads(body)["response"]
    finally:
        server.stop()
