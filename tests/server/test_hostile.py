"""Hostile reviews through the real routes (``WebhookApp``, no sockets, so thousands per run):

- a request that is not a usable pod is a 400 whatever the config: zero 5xx under
  ``--on-error allow``, and under ``fail`` a 500 only for an injection error (a template
  that does not render), never for an internal error such as ``TypeError: unhashable``;
- request data never becomes a metric label: the number of series stays fixed however
  many operations, reasons or uids clients send.

Generated: valid reviews from test_fuzz's strategy, then one field injection reads given a
wrong type, a value nested up to 1,100 deep, odd JSON numbers and strings, or arbitrary
request fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar_injector.config import configload
from sidecar_injector.core.admission import OnError
from sidecar_injector.server.app import State, WebhookApp
from sidecar_injector.server.http import Request
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics

from .helpers import BENCH_CONFIG, FAILING_CONFIG
from .test_fuzz import json_values, reviews

HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SELECTOR_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: selected
spec:
  injectByDefault: true
  selector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: In, values: [a, b]}
  env:
  - {name: SELECTED, value: "1"}
  volumeMounts:
  - {name: envoy-config, mountPath: /etc/selected}
"""

TEMPLATED_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: templated
spec:
  injectByDefault: true
  labels:
    injected-for: "{{ namespace }}"
"""

SHAPED = [
    ("metadata",), ("metadata", "labels"), ("metadata", "labels", "app"), ("metadata", "labels", "tier"),
    ("metadata", "annotations"), ("metadata", "annotations", "sidecar-injector.io/inject"),
    ("metadata", "name"), ("spec",), ("spec", "containers"), ("spec", "containers", 0),
    ("spec", "containers", 0, "name"), ("spec", "containers", 0, "volumeMounts"),
    ("spec", "containers", 0, "volumeMounts", 0, "mountPath"), ("spec", "containers", 0, "volumeMounts", 0, "name"),
    ("spec", "containers", 0, "ports"), ("spec", "containers", 0, "ports", 0),
    ("spec", "containers", 0, "ports", 0, "hostPort"), ("spec", "containers", 0, "env"),
    ("spec", "containers", 0, "env", 0, "name"), ("spec", "initContainers"),
    ("spec", "initContainers", 0, "name"), ("spec", "volumes"), ("spec", "volumes", 0, "name"),
    ("spec", "imagePullSecrets"), ("spec", "imagePullSecrets", 0, "name"),
]


def _put(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for i, key in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = [{}] if not last and isinstance(path[i + 1], int) else {}
        if isinstance(key, int):
            if not isinstance(obj, list):
                return
            if not obj:
                obj.append(nxt)
            if last:
                obj[0] = value
                return
            if not isinstance(obj[0], (dict, list)):
                obj[0] = nxt
            obj = obj[0]
            continue
        if not isinstance(obj, dict):
            return
        if last:
            obj[key] = value
            return
        if not isinstance(obj.get(key), (dict, list)):
            obj[key] = nxt
        obj = obj[key]


def _nested_text(depth: int) -> bytes:
    return (b"".join(b"[" if i % 2 else b'{"n":' for i in range(depth)) + b'"x"'
            + b"".join(b"]" if i % 2 else b"}" for i in reversed(range(depth))))


ODD = [b"1e400", b"-1e400", b"1" + b"0" * 400, b'"\xff"', b'"\\ud800"', b"NaN"]
MARK = "@@HOSTILE@@"


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    review: dict[str, Any] = draw(reviews())
    request = review["request"]
    # Pods the selector config matches, so that label values reach the selector.
    labels = request["object"]["metadata"].setdefault("labels", {})
    labels.update(app="web", tier="a")
    kind = draw(st.sampled_from(["wrong-type", "deep", "odd", "request-field", "none"]))
    if kind == "wrong-type":
        _put(request["object"], draw(st.sampled_from(SHAPED)), draw(st.one_of(
            json_values, st.sampled_from([["x"], {"k": "v"}, 5, 1.5, True, [["x"]], {"name": ["x"]}]))))
    elif kind in ("deep", "odd"):
        where = draw(st.sampled_from([
            ("request", "object", "x-unknown"), ("request", "kind"), ("request", "uid"),
            ("request", "operation"), ("request", "object", "metadata", "labels", "app"),
            ("request", "object", "spec", "containers", 0, "env"), ("kind",), ("apiVersion",),
        ]))
        _put(review, where, MARK)
        text = (_nested_text(draw(st.sampled_from([50, 900, 1000, 1024, 1100]))) if kind == "deep"
                else draw(st.sampled_from(ODD)))
        return json.dumps(review).encode().replace(json.dumps(MARK).encode(), text)
    elif kind == "request-field":
        key = draw(st.sampled_from(["operation", "uid", "namespace", "name", "kind", "resource", "subResource"]))
        request[key] = draw(st.one_of(st.text(max_size=30), json_values))
    return json.dumps(review).encode()


def _app(tmp: Path, docs: list[str], on_error: OnError) -> WebhookApp:
    folder = tmp / "configs"
    folder.mkdir(exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"{i}.yaml").write_text(doc)
    configs = configload.load_configs(folder)
    return WebhookApp(State(configs), Metrics(), JsonLog(_Null(), "warning"), on_error)


class _Null:
    def write(self, data: str) -> None:
        pass

    def flush(self) -> None:
        pass


@pytest.fixture(scope="module", params=[
    pytest.param(([BENCH_CONFIG, SELECTOR_CONFIG], "allow"), id="template-free-allow"),
    pytest.param(([BENCH_CONFIG, SELECTOR_CONFIG, TEMPLATED_CONFIG], "allow"), id="templated-allow"),
    pytest.param(([BENCH_CONFIG, SELECTOR_CONFIG, FAILING_CONFIG], "allow"), id="failing-allow"),
    pytest.param(([BENCH_CONFIG, SELECTOR_CONFIG], "fail"), id="template-free-fail"),
    pytest.param(([BENCH_CONFIG, SELECTOR_CONFIG, FAILING_CONFIG], "fail"), id="failing-fail"),
])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> WebhookApp:
    docs, on_error = request.param
    return _app(tmp_path_factory.mktemp("hostile"), docs, on_error)


def mutate(app: WebhookApp, body: bytes) -> tuple[int, dict[str, Any]]:
    response = app.webhook(Request(b"POST", b"/mutate", b"application/json", body))
    return response.status, orjson.loads(response.body)


@pytest.mark.slow
@HOSTILE
@given(body=hostile_bodies())
def test_client_input_is_never_a_5xx_and_failures_are_only_injection_errors(app: WebhookApp, body: bytes) -> None:
    status, out = mutate(app, body)
    if status == 400:
        assert out["kind"] == "Status" and "\n" not in out["message"] and len(out["message"]) <= 1003
        return
    if app.on_error == "allow":
        assert status == 200, (status, out)
    else:
        assert status in (200, 500), (status, out)
    if status == 500:
        # Only the template that cannot render; never a bug such as TypeError: unhashable.
        assert out["message"].startswith("sidecar injection failed: ") and "internal error" not in out["message"]
    else:
        warnings = out["response"].get("warnings", [])
        assert not any("internal error" in w for w in warnings), warnings


@pytest.mark.slow
@HOSTILE
@given(operations=st.lists(st.text(max_size=40), min_size=1, max_size=20), body=hostile_bodies())
def test_the_number_of_metric_series_stays_fixed(tmp_path_factory: pytest.TempPathFactory,
                                                 operations: list[str], body: bytes) -> None:
    app = _series_app(tmp_path_factory)
    for op in operations:
        review = json.loads(json.dumps(_PLAIN))
        review["request"]["operation"] = op
        mutate(app, json.dumps(review).encode())
    mutate(app, body)
    series = _series(app)
    # operations x (outcome, code): injected/skipped 200, error 200/500, rejected 400/408/413/431/503
    assert series.get("sidecar_injector_injection_requests_total", 0) <= 6 * 9
    assert series.get("sidecar_injector_injection_skip_total", 0) <= 16
    assert series.get("sidecar_injector_injection_failure_total", 0) <= 10
    assert len(app.metrics._requests) <= 6 * 9


_PLAIN = {
    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
    "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
                "namespace": "ns", "object": {"metadata": {}, "spec": {"containers": [{"name": "a"}]}}},
}
_SERIES_APP: list[WebhookApp] = []


def _series_app(factory: pytest.TempPathFactory) -> WebhookApp:
    """One app for every example: series would pile up across them if they could."""
    if not _SERIES_APP:
        _SERIES_APP.append(_app(factory.mktemp("series"), [BENCH_CONFIG, SELECTOR_CONFIG], "allow"))
    return _SERIES_APP[0]


def _series(app: WebhookApp) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in app.metrics.render().decode().splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_operations_outside_the_protocol_count_as_other(tmp_path: Path) -> None:
    app = _app(tmp_path, [BENCH_CONFIG], "allow")
    for op in ["CREATE", "x" * 5_000_000, "create", "PATCH", ""]:
        review = json.loads(json.dumps(_PLAIN))
        review["request"]["operation"] = op
        mutate(app, json.dumps(review).encode())
    text = app.metrics.render().decode()
    requests = [line for line in text.splitlines() if line.startswith("sidecar_injector_injection_requests_total{")]
    assert len(text) < 20_000 and {line.split('operation="')[1].split('"')[0] for line in requests} == {
        "CREATE", "other", "unknown"}
