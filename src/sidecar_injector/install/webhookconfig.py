"""The MutatingWebhookConfiguration: which pods the apiserver sends to the injector, and what it
does when the injector cannot answer.

Separate because every choice in it is a safety choice made for the whole cluster, not for the
injector's own pods: the failure policy, the timeout, the namespaces that are never touched
(the control plane's and the injector's own) and the pod-level opt-out. The SidecarConfig API's
validating webhook configuration is built in :mod:`~sidecar_injector.install.apimanifests`.
"""

from __future__ import annotations

from sidecar_injector.install.options import (
    INJECT_LABEL,
    NAMESPACE_LABEL,
    PREFIX,
    Manifest,
    ManifestOptions,
    _meta,
    _names,
)

__all__ = ["SYSTEM_NAMESPACES", "TIMEOUT_SECONDS", "WEBHOOK_NAME", "WEBHOOK_PATH", "webhook_configuration"]

WEBHOOK_NAME = f"inject.{PREFIX}"  # webhook names must be fully qualified
WEBHOOK_PATH = "/mutate"
# Injection is pure computation that takes milliseconds. Anything slower means the injector is
# unreachable or overloaded, and every pod creation in an enabled namespace waits this long
# before failing open (Ignore) or failing (Fail); mutating webhooks also run one after another,
# so a long timeout would eat into the budget of the webhooks behind us. 5 s leaves room for a
# cold TLS handshake on a busy node while keeping that stall short.
TIMEOUT_SECONDS = 5
# Namespaces no injector should touch: the control plane's, and node heartbeats.
SYSTEM_NAMESPACES = ("kube-system", "kube-node-lease", "kube-public")


def webhook_configuration(opts: ManifestOptions) -> Manifest:
    n = _names(opts)
    metadata = _meta(opts, n["webhook"], "webhook", namespaced=False)
    if opts.cert_manager:
        metadata["annotations"] = {"cert-manager.io/inject-ca-from": f"{opts.namespace}/{n['secret']}"}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                # caBundle is filled in by the bootstrap Job or by cert-manager's CA injector.
                "clientConfig": {
                    "service": {
                        "name": n["service"],
                        "namespace": opts.namespace,
                        "path": WEBHOOK_PATH,
                        "port": 443,
                    }
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": opts.failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "reinvocationPolicy": "IfNeeded",
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": NAMESPACE_LABEL, "operator": "In", "values": ["enabled"]},
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": [*SYSTEM_NAMESPACES, opts.namespace],
                        },
                    ]
                },
                # NotIn also matches pods without the label: only an explicit "false" opts out.
                "objectSelector": {
                    "matchExpressions": [{"key": INJECT_LABEL, "operator": "NotIn", "values": ["false"]}]
                },
            }
        ],
    }
