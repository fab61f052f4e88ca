"""Pod Security admission validates the pod AFTER all mutating webhooks: what we inject is held
to the namespace's level. The article's sidecar meets ``restricted`` and is admitted; a sidecar
without a hardened securityContext gets the pod refused, with our container named in the reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from .webhooks import create_pod, is_injected, pod

pytestmark = pytest.mark.e2e

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def restricted_pod(name: str) -> dict[str, Any]:
    """An app pod that by itself satisfies the restricted profile."""
    body = pod(name)
    body["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    body["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return body


def test_hardened_sidecar_is_admitted_in_a_restricted_namespace(injector: Any, register_webhook: Any, api: Any) -> None:
    hook = register_webhook(injector("article.yaml"))
    ns = hook.namespace("restricted", labels=RESTRICTED)
    stored = create_pod(api, ns, restricted_pod("hardened"))
    assert is_injected(stored)
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app", "hello-sidecar"]


def test_unhardened_sidecar_gets_the_pod_refused_by_pod_security(
    injector: Any, register_webhook: Any, api: Any
) -> None:
    hook = register_webhook(injector("full.yaml"))  # its containers set no securityContext
    ns = hook.namespace("restricted", labels=RESTRICTED)
    with pytest.raises(ApiException) as refused:
        create_pod(api, ns, restricted_pod("unhardened"))
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert '"proxy"' in message and '"setup"' in message, message
    # The same pod, same webhook, without the restricted label: admitted and injected.
    plain = hook.namespace("plain")
    assert is_injected(create_pod(api, plain, restricted_pod("unhardened")))
