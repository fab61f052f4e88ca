"""Test 5: failurePolicy with the server stopped. ``Ignore`` lets the pod in without the sidecar,
``Fail`` refuses it with the apiserver's "failed calling webhook" error; once the server is back,
new pods are injected again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from .webhooks import create_pod, is_injected, pod, read_pod

pytestmark = pytest.mark.e2e


def test_failure_policy_while_the_server_is_down(
    injector: Any, register_webhook: Any, api: Any, control_plane: Any
) -> None:
    server = injector("article.yaml")
    fail_open = register_webhook(server, failure_policy="Ignore")
    fail_closed = register_webhook(server, failure_policy="Fail")
    ns_open, ns_closed = fail_open.namespace("open"), fail_closed.namespace("closed")

    server.stop()

    stored = create_pod(api, ns_open, pod("while-down"))
    assert not is_injected(stored)
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
    assert read_pod(api, ns_open, "while-down")["metadata"]["uid"] == stored["metadata"]["uid"]
    # The apiserver recorded that it failed open for this pod.
    audit = control_plane.audit_annotations(ns_open, "while-down")
    assert "failed-open.mutation.webhook.admission.k8s.io/round_0_index_0" in audit, audit

    with pytest.raises(ApiException) as refused:
        create_pod(api, ns_closed, pod("while-down"))
    assert refused.value.status == 500
    message = json.loads(refused.value.body)["message"]
    assert 'failed calling webhook "inject.sidecar-injector.io"' in message, message
    with pytest.raises(ApiException) as missing:
        read_pod(api, ns_closed, "while-down")
    assert missing.value.status == 404

    server.start()  # same port, same certificate
    for hook in (fail_open, fail_closed):
        hook.wait_active(hook.namespaces[0])
    for ns in (ns_open, ns_closed):
        create_pod(api, ns, pod("after-restart"))
        stored = read_pod(api, ns, "after-restart")
        assert is_injected(stored)
        assert [c["name"] for c in stored["spec"]["containers"]] == ["app", "hello-sidecar"]
