"""Test 4: what must stay untouched. A pod that opts out (annotation, or label so the
objectSelector skips the call), a namespace without the enabling label, ``kube-system`` and the
webhook's own namespace (both labelled for injection here, so only the shipped
``namespaceSelector`` exclusion by name keeps them out). A control pod beside them is injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from .webhooks import OPT_OUT_LABEL, OWN_NAMESPACE, Hook, create_pod, is_injected, pod, read_pod

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook(injector: Any, register_webhook: Any) -> Hook:
    hook: Hook = register_webhook(injector("article.yaml"))
    return hook


@pytest.fixture
def labelled_system_namespaces(control_plane: Any, api: Any, hook: Hook) -> Iterator[list[str]]:
    """kube-system and our own namespace, carrying the labels that would enable injection."""
    core = kubernetes.client.CoreV1Api(api)
    control_plane.create_namespace(OWN_NAMESPACE)
    names = ["kube-system", OWN_NAMESPACE]
    for ns in names:
        core.patch_namespace(ns, {"metadata": {"labels": hook.enabled_labels}})
    yield names
    for ns in names:
        core.patch_namespace(ns, {"metadata": {"labels": dict.fromkeys(hook.enabled_labels)}})
    core.delete_namespace(OWN_NAMESPACE)


def untouched(stored: dict[str, Any], sent: dict[str, Any]) -> bool:
    return (
        not is_injected(stored)
        and [c["name"] for c in stored["spec"]["containers"]] == [c["name"] for c in sent["spec"]["containers"]]
        and "foo" not in (stored["metadata"].get("labels") or {})
    )


def test_opted_out_and_excluded_pods_are_untouched(hook: Hook, labelled_system_namespaces: list[str], api: Any) -> None:
    enabled = hook.namespace("scope")
    not_enabled = hook.namespace("not-enabled", enabled=False)
    cases = {
        "control": (enabled, pod("control")),
        "opt-out-annotation": (enabled, pod("opt-out-annotation", annotations={OPT_OUT_LABEL: "false"})),
        "opt-out-label": (enabled, pod("opt-out-label", labels={OPT_OUT_LABEL: "false"})),
        "no-enabling-label": (not_enabled, pod("no-enabling-label")),
        "kube-system": ("kube-system", pod("e2e-kube-system")),
        "own-namespace": (OWN_NAMESPACE, pod("own-namespace")),
    }
    stored = {}
    for case, (ns, body) in cases.items():
        create_pod(api, ns, body)
        stored[case] = read_pod(api, ns, body["metadata"]["name"])

    # The control proves the webhook is active for this setup, so "untouched" means something.
    assert is_injected(stored["control"]) and stored["control"]["metadata"]["labels"]["foo"] == "bar"
    for case in cases.keys() - {"control"}:
        assert untouched(stored[case], cases[case][1]), f"{case}: {stored[case]['spec']['containers']}"
    kubernetes.client.CoreV1Api(api).delete_namespaced_pod("e2e-kube-system", "kube-system")
