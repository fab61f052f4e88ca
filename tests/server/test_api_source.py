"""The server's side of the SidecarConfig API, in-process: ``/validate-config`` on the webhook
routes, and ``/readyz`` 503 until the API's configs are loaded (the e2e suite does the rest:
tests/e2e/test_api_configs.py)."""

from __future__ import annotations

import io
import json

from sidecar_injector.core.config import ConfigSet
from sidecar_injector.server.app import State, WebhookApp
from sidecar_injector.server.configwebhook import config_webhook
from sidecar_injector.server.http import Request
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics


def app(loaded: bool = True) -> WebhookApp:
    log = JsonLog(io.StringIO())
    a = WebhookApp(State(ConfigSet(), loaded=loaded), Metrics(), log)
    a.config_webhook = config_webhook("1.37", a.metrics, log)
    return a


def get(a: WebhookApp, path: bytes) -> int:
    return a.webhook(Request(b"GET", path, None, b"")).status


def test_readyz_is_503_until_the_first_list_then_200() -> None:
    a = app(loaded=False)
    assert get(a, b"/readyz") == 503 and get(a, b"/healthz") == 200
    a.state.loaded = True
    assert get(a, b"/readyz") == 200


def test_validate_config_route() -> None:
    a = app()
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "operation": "CREATE", "namespace": "team-a",
        "kind": {"group": "sidecar-injector.io", "version": "v1alpha1", "kind": "SidecarConfig"},
        "object": {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
                   "metadata": {"name": "x", "namespace": "team-a"},
                   "spec": {"namespaces": ["team-b"], "containers": [{"name": "c", "image": "i"}]}}}}
    r = a.webhook(Request(b"POST", b"/validate-config", b"application/json", json.dumps(review).encode()))
    out = json.loads(r.body)["response"]
    assert r.status == 200 and out["uid"] == "u" and out["allowed"] is False
    assert out["status"]["message"].startswith("SidecarConfig team-a/x is invalid:\nspec.namespaces:")
    assert a.webhook(Request(b"POST", b"/validate-config", b"application/json", b"{}")).status == 400
    assert a.webhook(Request(b"GET", b"/validate-config", None, b"")).status == 405
    fixed = json.loads(json.dumps(review))
    del fixed["request"]["object"]["spec"]["namespaces"]  # a namespaced config names none
    r = a.webhook(Request(b"POST", b"/validate-config", b"application/json", json.dumps(fixed).encode()))
    assert r.status == 200 and json.loads(r.body)["response"]["allowed"] is True
    counted = {result: a.metrics.registry.get_sample_value("sidecar_injector_config_validations_total",
                                                           {"result": result})
               for result in ("allowed", "denied", "invalid", "error")}
    assert counted == {"allowed": 1.0, "denied": 1.0, "invalid": 1.0, "error": None}
