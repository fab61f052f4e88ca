"""The metrics of issue 13: per config, HTTP code, in flight, build info, no ``_created`` series."""

from __future__ import annotations

import platform
import socket
import ssl
import time
from pathlib import Path

from sidecar_injector import __version__

from .helpers import BENCH_CONFIG, PKI, RunningServer, make_review, start_server

SECOND_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: vault-agent
spec:
  containers:
  - name: vault-agent
    image: hashicorp/vault:1.18
"""


def _two_configs(pki: PKI, tmp_path: Path) -> RunningServer:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "proxy.yaml").write_text(BENCH_CONFIG)
    (folder / "vault.yaml").write_text(SECOND_CONFIG)
    return start_server(pki, folder)


def _requesting(configs: str, namespace: str = "shop") -> dict:
    review = make_review()
    review["request"]["namespace"] = namespace
    review["request"]["object"]["metadata"].setdefault("annotations", {})["sidecar-injector.io/inject"] = configs
    return review


def test_injections_are_counted_once_per_config_with_only_config_names_as_labels(pki: PKI, tmp_path: Path) -> None:
    s = _two_configs(pki, tmp_path)
    try:
        for ns in ("a", "b", "c"):
            assert s.post(_requesting("vault-agent", ns))[0] == 200  # proxy (default) + vault-agent
        assert s.post(make_review())[0] == 200  # proxy only
        assert s.post(make_review(operation="UPDATE"))[0] == 200  # skipped: counts nothing
        assert s.metric("sidecar_injector_injections_total", config="proxy") == 4
        assert s.metric("sidecar_injector_injections_total", config="vault-agent") == 3
        assert s.metric("sidecar_injector_injection_success_total") == 4
        _, text = s.admin_get("/metrics")
        series = [line for line in text.decode().splitlines() if line.startswith("sidecar_injector_injections_total{")]
        assert len(series) == 2 and all("namespace" not in line and "pod" not in line for line in series)
    finally:
        s.stop()


def test_requests_carry_the_http_code(server: RunningServer) -> None:
    server.post(make_review())
    server.post(b"{", content_type="application/json")
    m = server.metric
    assert m("sidecar_injector_injection_requests_total", operation="CREATE", outcome="injected", code="200") == 1
    assert m("sidecar_injector_injection_requests_total", operation="unknown", outcome="rejected", code="400") == 1


def test_build_info_and_no_created_series(server: RunningServer) -> None:
    server.post(make_review())
    assert server.metric("sidecar_injector_build_info", version=__version__, python=platform.python_version()) == 1
    _, text = server.admin_get("/metrics")
    assert "_created" not in text.decode()


def test_in_flight_counts_a_request_begun_and_not_answered(server: RunningServer) -> None:
    assert server.metric("sidecar_injector_requests_in_flight") == 0
    ctx = server.client_context()
    with socket.create_connection(("localhost", server.port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert isinstance(s, ssl.SSLSocket)
        s.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        deadline = time.monotonic() + 5
        while server.metric("sidecar_injector_requests_in_flight") != 1:
            assert time.monotonic() < deadline, "the begun request never showed as in flight"
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while server.metric("sidecar_injector_requests_in_flight") != 0:
        assert time.monotonic() < deadline, "the closed request stayed in flight"
        time.sleep(0.02)
