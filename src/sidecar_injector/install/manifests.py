"""The Kubernetes objects that install the injector, as plain dicts (YAML is the CLI's business).

Pure: options in, a list of manifest dicts out, in the order ``kubectl apply`` needs them
(the Namespace first, the webhook configuration after the Service it points at, the
certificate Job last, because it patches the webhook configuration).

What is safe by default, and why:
- ``failurePolicy: Ignore``: when every injector pod is down, pods are still created (without
  the sidecar) instead of every pod creation in enabled namespaces failing. ``Fail`` is a choice
  for users who would rather have no pod than a pod without its sidecar.
- The webhook skips ``kube-system``, ``kube-node-lease``, ``kube-public`` and its own namespace,
  so the injector's own pods, and the control plane's, never wait on the injector.
- Two replicas spread over nodes, a PodDisruptionBudget and a rolling update that never drops
  below two ready pods, so a node drain does not take the webhook down.
- Every pod meets Pod Security ``restricted``; the namespace enforces it.
- The certificate Job may only ``get``/``update``/``patch`` one Secret and one webhook
  configuration (``resourceNames``); the Secret is created empty here for that reason, since
  ``create`` cannot be limited to a name. Until the Job has filled it, the webhook pods wait in
  ContainerCreating (the kubelet retries the mount) instead of crash-looping.

The objects are built in their own modules, this one puts them in order:
:mod:`~sidecar_injector.install.options` (the options, names, labels and pod hardening they all
share), :mod:`~sidecar_injector.install.workload` (the server: Namespace, ServiceAccounts,
ConfigMap, Deployment, Service, PodDisruptionBudget, NetworkPolicy),
:mod:`~sidecar_injector.install.certmanifests` (the certificate Job or cert-manager) and
:mod:`~sidecar_injector.install.webhookconfig` (the MutatingWebhookConfiguration); the
SidecarConfig API's objects come from :mod:`~sidecar_injector.install.apimanifests`.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.install.certmanifests import (
    cert_jobs,
    cert_manager_resources,
    cert_network_policy,
    cert_rbac,
    tls_secret,
)
from sidecar_injector.install.options import (
    FAILURE_POLICIES,
    INJECT_LABEL,
    NAMESPACE_LABEL,
    Manifest,
    ManifestError,
    ManifestOptions,
    _check,
    _labels,
    _names,
)
from sidecar_injector.install.webhookconfig import TIMEOUT_SECONDS, WEBHOOK_NAME, WEBHOOK_PATH, webhook_configuration
from sidecar_injector.install.workload import (
    CONFIG_DIR,
    config_map,
    deployment,
    namespace,
    network_policy,
    pod_disruption_budget,
    service,
    service_accounts,
)

__all__ = [
    "CONFIG_DIR",
    "FAILURE_POLICIES",
    "INJECT_LABEL",
    "NAMESPACE_LABEL",
    "TIMEOUT_SECONDS",
    "WEBHOOK_NAME",
    "WEBHOOK_PATH",
    "ManifestError",
    "ManifestOptions",
    "render",
]


def _api_objects(opts: ManifestOptions) -> dict[str, Any]:
    """The SidecarConfig API's objects (sidecar_injector.install.apimanifests): CRDs, RBAC, the validating
    webhook configuration (same name and caBundle handling as the mutating one)."""
    from sidecar_injector.install import apimanifests

    n = _names(opts)
    labels = _labels(opts, "webhook")
    annotations = ({"cert-manager.io/inject-ca-from": f"{opts.namespace}/{n['secret']}"}
                   if opts.cert_manager else None)
    return {
        "crds": apimanifests.custom_resource_definitions(_labels(opts)),
        "rbac": [*apimanifests.server_rbac(opts.name, opts.namespace, n["sa"], labels),
                 *apimanifests.aggregated_roles(opts.name, _labels(opts)),
                 *apimanifests.fleet_roles(opts.name, _labels(opts))],
        "webhook": apimanifests.validating_webhook_configuration(n["webhook"], opts.namespace, n["service"],
                                                                 labels, annotations),
    }


MODES = ("webhook", "policy", "hybrid")


def render(opts: ManifestOptions) -> list[Manifest]:
    """Every object of an install, in apply order."""
    if opts.mode not in MODES:
        raise ManifestError(f"mode {opts.mode!r} is not one of {', '.join(MODES)}")
    if opts.mode != "webhook" and not opts.policies:
        raise ManifestError(f"mode {opts.mode} needs the compiled policies")
    if opts.mode == "policy":
        return list(opts.policies)
    _check(opts)
    api = _api_objects(opts)
    objects: list[Manifest] = [*api["crds"], namespace(opts), *service_accounts(opts), *api["rbac"],
                               config_map(opts)]
    if opts.cert_manager:
        objects += cert_manager_resources(opts)
    else:
        objects += [tls_secret(opts), *cert_rbac(opts)]
    objects += [
        service(opts),
        deployment(opts),
        pod_disruption_budget(opts),
        network_policy(opts),
        webhook_configuration(opts),
        api["webhook"],
    ]
    if not opts.cert_manager:
        objects += [cert_network_policy(opts), *cert_jobs(opts)]
    return objects + (list(opts.policies) if opts.mode == "hybrid" else [])
