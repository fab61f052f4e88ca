"""Fuzzing ``/mutate`` over real HTTPS with generated AdmissionReviews and garbage (Hypothesis).

For every input: no 5xx (no config here can fail to render, so a 500 would be a bug), an
answer within the client's timeout (no hang), and every 200 is an AdmissionReview in the
request's version, echoing the uid, with ``allowed``, and with ``patch`` and ``patchType``
together or not at all; a patch is base64 of a JSON Patch that applies to the object.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sidecar_injector.config.configload import BUILTIN_EXAMPLE

from .helpers import BENCH_CONFIG, RunningServer, make_pki, start_server

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("fuzz")
    configs = tmp / "configs"
    configs.mkdir()
    (configs / "a-proxy.yaml").write_text(BENCH_CONFIG)
    (configs / "b-example.yaml").write_text(Path(BUILTIN_EXAMPLE).read_text())
    s = start_server(make_pki(tmp / "pki"), configs)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def conn(fuzz_server: RunningServer) -> Iterator[http.client.HTTPSConnection]:
    c = fuzz_server.https()
    yield c
    c.close()


names = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
label_keys = st.one_of(names, st.builds(lambda a, b: f"{a}.io/{b}", names, names))
texts = st.text(max_size=20)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts,
                         st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=12)

container = st.fixed_dictionaries(
    {"name": names, "image": st.sampled_from(["nginx", "busybox:1.36", "envoyproxy/envoy:v1.31.0"])},
    optional={"ports": st.lists(st.fixed_dictionaries({"containerPort": st.integers(1, 65535)}), max_size=2),
              "env": st.lists(st.fixed_dictionaries({"name": names, "value": texts}), max_size=3),
              "restartPolicy": st.just("Always")},
)
volume = st.fixed_dictionaries({"name": names, "emptyDir": st.just({})})


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["name"] = draw(names)
    else:
        meta["generateName"] = draw(names) + "-"
    for key in ("labels", "annotations"):
        if draw(st.booleans()):
            values = st.one_of(texts, st.sampled_from(["true", "false", "enabled", "disabled"]))
            meta[key] = draw(st.dictionaries(label_keys, values, max_size=4))
    spec: dict[str, Any] = {"containers": draw(st.lists(container, min_size=1, max_size=3,
                                                          unique_by=lambda c: c["name"]))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(container, max_size=2, unique_by=lambda c: c["name"]))
    if draw(st.booleans()):
        spec["volumes"] = draw(st.lists(volume, max_size=3, unique_by=lambda v: v["name"]))
    if draw(st.booleans()):
        spec["hostNetwork"] = draw(st.booleans())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if draw(st.booleans()):
        pod["status"] = {}
    if draw(st.booleans()):
        pod["x-unknown-field"] = draw(json_values)
    return pod


@st.composite
def reviews(draw: st.DrawFn) -> dict[str, Any]:
    api_version = draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
    # Mostly pod CREATEs, the requests that get patched.
    operation = draw(st.sampled_from(["CREATE"] * 6 + ["UPDATE", "DELETE", "CONNECT"]))
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    kind = draw(st.sampled_from([pod_kind] * 6 + [{"group": "apps", "version": "v1", "kind": "Deployment"}]))
    request: dict[str, Any] = {
        "uid": draw(st.uuids()).hex, "kind": kind, "operation": operation,
        "namespace": draw(names), "object": draw(pods()), "dryRun": draw(st.booleans()),
    }
    if draw(st.booleans()):
        request["resource"] = {"group": "", "version": "v1", "resource": "pods"}
    if draw(st.booleans()):
        request["userInfo"] = {"username": draw(texts)}
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def post(conn: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/mutate?timeout=10s", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.getheader("Connection") == "close":
        conn.close()
    return r.status, data


def check_answer(review: Any, status: int, body: bytes) -> None:
    assert status in (200, 400), (status, body[:300])
    out = json.loads(body)
    if status == 400:
        event("400")
        assert out["kind"] == "Status" and out["code"] == 400 and "\n" not in out["message"]
        return
    assert out["kind"] == "AdmissionReview" and out["apiVersion"] == review["apiVersion"]
    response = out["response"]
    assert response["uid"] == review["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    assert ("patch" in response) == ("patchType" in response)
    event("patched" if "patch" in response else "admitted unchanged" if response["allowed"] else "denied")
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        try:
            ops = json.loads(base64.b64decode(response["patch"], validate=True))
        except (binascii.Error, ValueError) as e:
            raise AssertionError(f"patch is not base64 JSON: {e}") from e
        assert isinstance(ops, list) and ops
        jsonpatch.apply_patch(review["request"]["object"], ops)  # raises if it does not apply


@FUZZ
@given(review=reviews())
def test_generated_reviews(conn: http.client.HTTPSConnection, review: dict[str, Any]) -> None:
    status, body = post(conn, json.dumps(review).encode())
    check_answer(review, status, body)


@st.composite
def broken_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """A valid review with one part deleted or replaced by an arbitrary JSON value."""
    review = draw(reviews())
    path = draw(st.sampled_from([
        ("request",), ("request", "uid"), ("request", "object"), ("request", "object", "metadata"),
        ("request", "object", "spec"), ("request", "object", "spec", "containers"),
        ("request", "object", "metadata", "labels"), ("request", "object", "metadata", "annotations"),
        ("request", "namespace"), ("request", "operation"), ("request", "kind"), ("apiVersion",),
    ]))
    parent = review
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = draw(json_values)
    return review


@FUZZ
@given(review=broken_reviews())
def test_broken_reviews(conn: http.client.HTTPSConnection, review: dict[str, Any]) -> None:
    status, body = post(conn, json.dumps(review).encode())
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    if status == 200:
        assert isinstance(uid, str) and uid  # only a usable review gets a review back
        check_answer(review, status, body)
    else:
        check_answer(review, status, body)


@FUZZ
@given(body=st.one_of(st.binary(max_size=2000), json_values.map(lambda v: json.dumps(v).encode())))
def test_garbage_bodies(conn: http.client.HTTPSConnection, body: bytes) -> None:
    status, out = post(conn, body)
    assert status == 400, (status, out[:200])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000))
def test_garbage_http_never_takes_the_server_down(fuzz_server: RunningServer, data: bytes) -> None:
    ctx = fuzz_server.client_context()
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(data)
        s.sendall(b"\r\n\r\n")
        s.settimeout(5)
        try:
            head = s.recv(64)
        except TimeoutError:
            head = b""  # waiting for a body it was promised: the request timeout will close it
        except (ConnectionError, OSError):
            head = b""
    if head:
        assert head.startswith(b"HTTP/1.1 ") and not head.startswith(b"HTTP/1.1 5"), head
    assert fuzz_server.post(b'{"kind": 1}')[0] == 400  # still answering
