"""Registering a MutatingWebhookConfiguration and waiting until the apiserver calls it.

The configuration is the one the project's manifests ship (``sidecar_injector.install.manifests``): CREATE
of pods only, ``sideEffects: None``, a ``namespaceSelector`` requiring the enabling label and
excluding the system namespaces and the injector's own by ``kubernetes.io/metadata.name``, an
``objectSelector`` honouring the opt-out label. Its ``clientConfig.service`` is rewritten to a
``url`` with the ``caBundle``, as envtest does, because nothing routes Service ClusterIPs here.

Each registration also requires a namespace label of its own (``e2e.sidecar-injector.io/hook``), so
that configurations of different tests never match each other's namespaces: a configuration a
previous test deleted may linger in the admission chain for a moment, and must not turn a later
test's pod creation into a call to a server that is gone.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
from kubernetes.client.rest import ApiException

from sidecar_injector.install import manifests

from .controlplane import ControlPlane

ENABLE_LABEL = "sidecar-injector.io/injection"
OPT_OUT_LABEL = "sidecar-injector.io/inject"
STATUS_ANNOTATION = "sidecar-injector.io/status"
HOOK_LABEL = "e2e.sidecar-injector.io/hook"
# The injector's own namespace as far as the selector knows; not the manifests' default
# ("sidecar-injector"), which the install test creates for real.
OWN_NAMESPACE = "sidecar-injector-e2e"
ACTIVATION_TIMEOUT = 30.0

_counter = itertools.count(1)


def webhook_configuration(
    name: str,
    url: str,
    ca_bundle: bytes,
    *,
    hook_id: str,
    failure_policy: str = "Fail",
    reinvocation_policy: str = "IfNeeded",
) -> dict[str, Any]:
    """The configuration the project's manifests ship (``sidecar_injector.install.manifests``), so these
    tests register and call exactly that, with ``clientConfig`` rewritten to ``url``, this test's
    policies, and the per-hook namespace label added to its ``namespaceSelector``."""
    shipped = manifests.webhook_configuration(
        manifests.ManifestOptions(
            namespace=OWN_NAMESPACE, image="unused", config_files={}, failure_policy=failure_policy
        )
    )
    config = rewrite_to_url(shipped, url, ca_bundle)
    config["metadata"] = {"name": name}
    [hook] = config["webhooks"]
    hook["reinvocationPolicy"] = reinvocation_policy
    hook["namespaceSelector"].setdefault("matchExpressions", []).append(
        {"key": HOOK_LABEL, "operator": "In", "values": [hook_id]}
    )
    return config


def rewrite_to_url(config: dict[str, Any], url: str, ca_bundle: bytes) -> dict[str, Any]:
    """A copy of a shipped configuration with every ``clientConfig.service`` replaced by ``url``
    (envtest's rewrite), for registering the project's own manifests against a local server."""
    config = copy.deepcopy(config)
    for hook in config.get("webhooks", []):
        hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()}
    return config


def pod(name: str, **extra_metadata: Any) -> dict[str, Any]:
    """The smallest valid pod: one container, nothing else (the absent-array case)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **extra_metadata},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    }


def create_pod(
    client: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any], *, dry_run: bool = False
) -> dict[str, Any]:
    """Create a pod and return what the apiserver stored (or, dry run, would store), as raw JSON:
    the client's typed models would drop fields they do not know."""
    core = kubernetes.client.CoreV1Api(client)
    kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
    resp = core.create_namespaced_pod(namespace, body, _preload_content=False, **kwargs)
    result: dict[str, Any] = json.loads(resp.data)
    return result


def read_pod(client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    resp = kubernetes.client.CoreV1Api(client).read_namespaced_pod(name, namespace, _preload_content=False)
    result: dict[str, Any] = json.loads(resp.data)
    return result


def list_pods(client: kubernetes.client.ApiClient, namespace: str, **kwargs: Any) -> list[dict[str, Any]]:
    resp = kubernetes.client.CoreV1Api(client).list_namespaced_pod(namespace, _preload_content=False, **kwargs)
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def is_injected(stored: dict[str, Any]) -> bool:
    return STATUS_ANNOTATION in (stored.get("metadata", {}).get("annotations") or {})


@dataclass
class Hook:
    """A registered webhook configuration, and the namespace labels that route to it."""

    control_plane: ControlPlane
    name: str
    hook_id: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def enabled_labels(self) -> dict[str, str]:
        return {ENABLE_LABEL: "enabled", HOOK_LABEL: self.hook_id}

    def namespace(self, purpose: str, *, enabled: bool = True, labels: dict[str, str] | None = None) -> str:
        """Create a namespace for this hook: labelled for injection, or (``enabled=False``)
        carrying only this hook's routing label, i.e. missing the enabling label; plus ``labels``."""
        name = f"{self.hook_id}-{purpose}"[:63]
        routing = self.enabled_labels if enabled else {HOOK_LABEL: self.hook_id}
        self.control_plane.create_namespace(name, {**routing, **(labels or {})})
        self.namespaces.append(name)
        return name

    def wait_active(
        self,
        canary_namespace: str,
        mutated: Callable[[dict[str, Any]], bool] = is_injected,
        timeout: float = ACTIVATION_TIMEOUT,
    ) -> None:
        """Dry-run-create canary pods until one comes back ``mutated``: only then has the new
        configuration reached the apiserver's admission chain. Dry runs store nothing and the
        webhook declares ``sideEffects: None``, so they are called like real creations."""
        with self.control_plane.api_client() as client:
            deadline = time.monotonic() + timeout
            attempts = 0
            last_error = ""
            while True:
                attempts += 1
                try:
                    got = create_pod(client, canary_namespace, pod(f"canary-{attempts}"), dry_run=True)
                    if mutated(got):
                        return
                    last_error = "canary not mutated"
                except ApiException as e:
                    # With failurePolicy Fail, a configuration that is active while its server is
                    # still coming up refuses the canary: keep trying until the deadline.
                    last_error = f"{e.status}: {e.body}"
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"webhook configuration {self.name} not active after {timeout:.0f}s "
                        f"({attempts} canaries; last: {last_error})"
                    )
                time.sleep(0.05)

    def delete(self) -> None:
        with self.control_plane.api_client() as client:
            admission = kubernetes.client.AdmissionregistrationV1Api(client)
            try:
                admission.delete_mutating_webhook_configuration(self.name)
            except ApiException as e:
                if e.status != 404:
                    raise


def register(
    control_plane: ControlPlane,
    url: str,
    ca_bundle: bytes,
    *,
    name: str | None = None,
    failure_policy: str = "Fail",
    reinvocation_policy: str = "IfNeeded",
    same_namespaces_as: Hook | None = None,
    mutated: Callable[[dict[str, Any]], bool] | None = is_injected,
) -> Hook:
    """Create a configuration for the webhook at ``url`` and wait until a canary pod comes back
    ``mutated`` (``None``: do not wait). The hook gets an enabled canary namespace of its own,
    ``<id>-canary``; with ``same_namespaces_as`` it routes to that hook's namespaces instead
    (two webhooks on the same pods) and its canaries go there."""
    hook_id = same_namespaces_as.hook_id if same_namespaces_as else f"hook{next(_counter)}"
    name = name or f"sidecar-injector-{hook_id}"
    body = webhook_configuration(
        name, url, ca_bundle, hook_id=hook_id,
        failure_policy=failure_policy, reinvocation_policy=reinvocation_policy,
    )  # fmt: skip
    with control_plane.api_client() as client:
        kubernetes.client.AdmissionregistrationV1Api(client).create_mutating_webhook_configuration(body)
    hook = Hook(control_plane, name, hook_id)
    if mutated is not None:
        canary = same_namespaces_as.namespaces[0] if same_namespaces_as else hook.namespace("canary")
        hook.wait_active(canary, mutated)
    return hook
