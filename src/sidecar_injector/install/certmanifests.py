"""The objects that give the webhook its serving certificate: the bootstrap Job's (an empty
Secret, least-privilege RBAC, a NetworkPolicy, the Job and its renewing CronJob) or cert-manager's
(a self-signed root, a CA Issuer and the serving Certificate).

Separate from the server's own objects because an install has exactly one of the two sets
(``ManifestOptions.cert_manager``), and because this is where the privileges that touch the
webhook configurations are granted: kept together, they can be read and reviewed as one. The
certificate work itself (key generation, rotation, the in-cluster bootstrap) lives in
:mod:`~sidecar_injector.install.certs`, :mod:`~sidecar_injector.install.rotation` and
:mod:`~sidecar_injector.install.bootstrap`; these are only the objects, with no cryptography.
"""

from __future__ import annotations

from sidecar_injector.install.options import (
    INJECT_LABEL,
    Manifest,
    ManifestOptions,
    _container_security_context,
    _labels,
    _meta,
    _names,
    _pod_security_context,
    _selector,
)

__all__ = [
    "cert_jobs",
    "cert_manager_resources",
    "cert_network_policy",
    "cert_rbac",
    "certs_command",
    "tls_secret",
]

# Renew when a third of the lifetime is left, as the bootstrap Job does, in cert-manager terms.
_CA_DURATION_HOURS = 10 * 365 * 24
_CERT_DURATION_HOURS = 365 * 24


def tls_secret(opts: ManifestOptions) -> Manifest:
    """The Secret the bootstrap Job fills, created here so the Job needs no "create" right.

    It declares no data, and so is ``Opaque``: a ``kubernetes.io/tls`` Secret must declare
    ``tls.crt`` and ``tls.key``, and ``kubectl apply`` (like Argo CD and Flux) resets every
    declared field on each apply, which would blank the certificate the Job wrote on every
    upgrade (the e2e test saw exactly that). Undeclared keys are left alone. The Job writes the
    usual ``tls.crt``/``tls.key``/``ca.crt`` keys, so mounts look the same either way.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(opts, _names(opts)["secret"], "webhook"),
        "type": "Opaque",
    }


def cert_rbac(opts: ManifestOptions) -> list[Manifest]:
    n = _names(opts)
    subject = [{"kind": "ServiceAccount", "name": n["certs"], "namespace": opts.namespace}]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(opts, n["certs"], "certs"),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [n["secret"]],
                    "verbs": ["get", "update", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(opts, n["certs"], "certs"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["certs"]},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(opts, n["certs"], "certs", namespaced=False),
            "rules": [
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    # The validating one (SidecarConfig objects) has the same name and caBundle.
                    "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                    "resourceNames": [n["webhook"]],
                    "verbs": ["get", "update", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(opts, n["certs"], "certs", namespaced=False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": n["certs"]},
            "subjects": subject,
        },
    ]


def certs_command(opts: ManifestOptions) -> list[str]:
    """The bootstrap command the Job and the CronJob run."""
    n = _names(opts)
    return [
        "sidecar-injector",
        "certs",
        "--apply",
        "--service",
        n["service"],
        "--namespace",
        opts.namespace,
        "--secret",
        n["secret"],
        "--webhook-config",
        n["webhook"],
    ]


def _certs_pod_spec(opts: ManifestOptions) -> Manifest:
    return {
        "serviceAccountName": _names(opts)["certs"],
        # This pod talks to the API (get/update the Secret and the webhook configuration).
        "automountServiceAccountToken": True,
        "restartPolicy": "OnFailure",
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": "certs",
                "image": opts.image,
                "imagePullPolicy": "IfNotPresent",
                "command": certs_command(opts),
                "securityContext": _container_security_context(),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
            }
        ],
    }


def _certs_pod_template(opts: ManifestOptions) -> Manifest:
    labels = _labels(opts, "certs")
    labels[INJECT_LABEL] = "false"
    return {"metadata": {"labels": labels}, "spec": _certs_pod_spec(opts)}


def cert_jobs(opts: ManifestOptions) -> list[Manifest]:
    name = _names(opts)["certs"]
    job_spec: Manifest = {
        "backoffLimit": 6,
        # Removes itself, so the next `kubectl apply` (an upgrade) creates it afresh instead of
        # failing on the immutable pod template; running it again is harmless (idempotent).
        "ttlSecondsAfterFinished": 600,
        "template": _certs_pod_template(opts),
    }
    return [
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(opts, name, "certs"), "spec": job_spec},
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta(opts, name, "certs"),
            "spec": {
                "schedule": opts.cert_schedule,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {"backoffLimit": 6, "template": _certs_pod_template(opts)}},
            },
        },
    ]


def cert_network_policy(opts: ManifestOptions) -> Manifest:
    # The Job's pods take no traffic at all. Egress stays open: they must reach the API server,
    # whose address and port differ from cluster to cluster.
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(opts, _names(opts)["certs"], "certs"),
        "spec": {
            "podSelector": {"matchLabels": _selector(opts, "certs")},
            "policyTypes": ["Ingress"],
            "ingress": [],
        },
    }


def cert_manager_resources(opts: ManifestOptions) -> list[Manifest]:
    """A self-signed root, a CA Issuer and the serving Certificate.

    The serving certificate is signed by a long-lived CA rather than self-signed, so renewing
    it leaves the caBundle unchanged: no window where the apiserver trusts only the old one.
    """
    n = _names(opts)
    selfsigned, ca = f"{opts.name}-selfsigned", f"{opts.name}-ca"
    ecdsa = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _meta(opts, selfsigned, "certs"),
            "spec": {"selfSigned": {}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _meta(opts, ca, "certs"),
            "spec": {
                "isCA": True,
                "commonName": f"{opts.name}-ca",
                "secretName": ca,
                "duration": f"{_CA_DURATION_HOURS}h",
                "renewBefore": f"{_CA_DURATION_HOURS // 3}h",
                "privateKey": ecdsa,
                "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": selfsigned},
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": _meta(opts, ca, "certs"),
            "spec": {"ca": {"secretName": ca}},
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": _meta(opts, n["secret"], "certs"),
            "spec": {
                "secretName": n["secret"],
                "dnsNames": _service_dns_names(n["service"], opts.namespace),
                "duration": f"{_CERT_DURATION_HOURS}h",
                "renewBefore": f"{_CERT_DURATION_HOURS // 3}h",
                "usages": ["server auth", "digital signature"],
                "privateKey": ecdsa,
                "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": ca},
            },
        },
    ]


def _service_dns_names(service: str, ns: str) -> list[str]:
    # Same list as certs.service_dns_names; repeated to keep manifests free of cryptography.
    return [f"{service}.{ns}.svc", service, f"{service}.{ns}", f"{service}.{ns}.svc.cluster.local"]
