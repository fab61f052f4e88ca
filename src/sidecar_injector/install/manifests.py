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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar_injector.core.errors import InjectorError

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

Manifest = dict[str, Any]

PREFIX = "sidecar-injector.io"
NAMESPACE_LABEL = f"{PREFIX}/injection"  # "enabled" turns injection on for a namespace
INJECT_LABEL = f"{PREFIX}/inject"  # "false" on a pod opts it out
WEBHOOK_NAME = f"inject.{PREFIX}"  # webhook names must be fully qualified
WEBHOOK_PATH = "/mutate"
HTTPS_PORT = 8443
METRICS_PORT = 8080
CONFIG_DIR = "/etc/sidecar-injector/config"
TLS_DIR = "/etc/sidecar-injector/tls"
FAILURE_POLICIES = ("Ignore", "Fail")
# Injection is pure computation that takes milliseconds. Anything slower means the injector is
# unreachable or overloaded, and every pod creation in an enabled namespace waits this long
# before failing open (Ignore) or failing (Fail); mutating webhooks also run one after another,
# so a long timeout would eat into the budget of the webhooks behind us. 5 s leaves room for a
# cold TLS handshake on a busy node while keeping that stall short.
TIMEOUT_SECONDS = 5
# Namespaces no injector should touch: the control plane's, and node heartbeats.
SYSTEM_NAMESPACES = ("kube-system", "kube-node-lease", "kube-public")
# A UID/GID above 10000 cannot collide with a host user's (checkov CKV_K8S_40); 65532 is the
# "nonroot" user of distroless images and of our Dockerfile.
RUN_AS = 65532
# Renew when a third of the lifetime is left, as the bootstrap Job does, in cert-manager terms.
_CA_DURATION_HOURS = 10 * 365 * 24
_CERT_DURATION_HOURS = 365 * 24

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# A ConfigMap (the whole object, in etcd) may not exceed 1 MiB; keep margin for metadata.
_CONFIGMAP_MAX_BYTES = 1_000_000


class ManifestError(InjectorError):
    """The manifest options are unusable (bad name, policy, config size, ...)."""


@dataclass(frozen=True, kw_only=True)
class ManifestOptions:
    namespace: str
    """Namespace the injector runs in; it is created, and excluded from injection."""
    image: str
    """The container image, e.g. ``registry.example.com/sidecar-injector:0.1.0``."""
    config_files: Mapping[str, str]
    """ConfigMap key (a file name) -> the raw SidecarConfig YAML text, embedded unchanged."""
    failure_policy: str = "Ignore"
    """What the apiserver does when the webhook cannot be called: ``Ignore`` or ``Fail``."""
    cert_manager: bool = False
    """Use cert-manager (Certificate + CA injection) instead of the bootstrap Job."""
    name: str = "sidecar-injector"
    """Base name of every object (Service, Deployment, webhook configuration, ...)."""
    replicas: int = 2
    """Two, so that one pod can be drained or crash while the other answers."""
    cert_schedule: str = "17 3 * * *"
    """When the CronJob re-runs the certificate bootstrap (daily: it renews at a third left)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra labels for every object."""
    priority_class_name: str = "system-cluster-critical"
    """The webhook pods' PriorityClass: they sit on the pod-creation path, so they should be the
    last evicted and the first scheduled (the usual advice for admission webhooks). Empty: none."""
    mode: str = "webhook"
    """``webhook``: the server injects every config. ``policy``: only ``policies`` (no server,
    Service, certificates or webhook). ``hybrid``: the webhook install, ``config_files`` holding
    only the configs the policies do not deliver, plus ``policies`` (docs/policy.md)."""
    policies: tuple[Manifest, ...] = ()
    """The MutatingAdmissionPolicy and binding (``sidecar_injector.policy``) of modes policy and hybrid."""


def _check(opts: ManifestOptions) -> None:
    for what, value in (("namespace", opts.namespace), ("name", opts.name)):
        if not isinstance(value, str) or not _DNS_LABEL.match(value):
            raise ManifestError(
                f"{what} {value!r} is not a valid Kubernetes name "
                "(lower-case letters, digits and '-', at most 63 characters)"
            )
    # Derived names ("<name>-certs", "<name>-selfsigned") must stay within 63 characters too.
    if len(opts.name) > 50:
        raise ManifestError(f"name {opts.name!r} is too long; use at most 50 characters")
    if not isinstance(opts.image, str) or not opts.image.strip() or any(c.isspace() for c in opts.image):
        raise ManifestError(f"image {opts.image!r} is not a container image reference")
    if opts.failure_policy not in FAILURE_POLICIES:
        raise ManifestError(
            f"failure policy {opts.failure_policy!r} is not one of {', '.join(FAILURE_POLICIES)}"
        )
    if isinstance(opts.replicas, bool) or not isinstance(opts.replicas, int) or opts.replicas < 1:
        raise ManifestError(f"replicas must be a whole number >= 1, got {opts.replicas!r}")
    if opts.priority_class_name and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", opts.priority_class_name):
        raise ManifestError(f"priority class name {opts.priority_class_name!r} is not a valid Kubernetes name")
    if not opts.config_files:
        raise ManifestError("no SidecarConfig files to put in the ConfigMap")
    size = 0
    for key, text in opts.config_files.items():
        if not _CONFIGMAP_KEY.match(key) or key in (".", ".."):
            raise ManifestError(
                f"config file name {key!r} cannot be a ConfigMap key (letters, digits, '-', '_', '.')"
            )
        size += len(key.encode()) + len(text.encode())
    if size > _CONFIGMAP_MAX_BYTES:
        raise ManifestError(
            f"the configuration is {size} bytes; a ConfigMap holds at most about 1 MiB, "
            "split it or move large templates elsewhere"
        )


def _labels(opts: ManifestOptions, component: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "sidecar-injector",
        "app.kubernetes.io/instance": opts.name,
        "app.kubernetes.io/part-of": "sidecar-injector",
    }
    if component:
        labels["app.kubernetes.io/component"] = component
    labels.update(opts.labels)
    return labels


def _meta(
    opts: ManifestOptions, name: str, component: str | None = None, namespaced: bool = True
) -> Manifest:
    meta: Manifest = {"name": name}
    if namespaced:
        meta["namespace"] = opts.namespace
    meta["labels"] = _labels(opts, component)
    return meta


def _selector(opts: ManifestOptions, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "sidecar-injector",
        "app.kubernetes.io/instance": opts.name,
        "app.kubernetes.io/component": component,
    }


def _pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _names(opts: ManifestOptions) -> dict[str, str]:
    return {
        "sa": opts.name,
        "certs": f"{opts.name}-certs",
        "config": f"{opts.name}-config",
        "secret": f"{opts.name}-tls",
        "service": opts.name,
        "webhook": opts.name,
    }


def namespace(opts: ManifestOptions) -> Manifest:
    labels = _labels(opts)
    # Enforce what we promise: every pod in this namespace must meet "restricted".
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": opts.namespace, "labels": labels}}


def service_accounts(opts: ManifestOptions) -> list[Manifest]:
    n = _names(opts)
    out = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(opts, n["sa"], "webhook"),
            # The server lists and watches SidecarConfig objects and writes their status
            # (apimanifests.server_rbac: read-only on configs, status and one Lease).
            "automountServiceAccountToken": True,
        }
    ]
    if not opts.cert_manager:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(opts, n["certs"], "certs"),
            }
        )
    return out


def config_map(opts: ManifestOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(opts, _names(opts)["config"], "webhook"),
        "data": dict(sorted(opts.config_files.items())),
    }


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


def service(opts: ManifestOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(opts, _names(opts)["service"], "webhook"),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(opts, "webhook"),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def serve_args(opts: ManifestOptions) -> list[str]:
    return [
        "serve",
        "--config",
        CONFIG_DIR,
        # The ConfigMap's files and the ClusterSidecarConfig/SidecarConfig objects, merged.
        "--config-source",
        "both",
        "--tls-cert",
        f"{TLS_DIR}/tls.crt",
        "--tls-key",
        f"{TLS_DIR}/tls.key",
        "--port",
        str(HTTPS_PORT),
        "--metrics-port",
        str(METRICS_PORT),
    ]


def deployment(opts: ManifestOptions) -> Manifest:
    n = _names(opts)
    pod_labels = _labels(opts, "webhook")
    # Belt and braces: our namespace is excluded already; the label keeps our pods out even if
    # someone widens the namespaceSelector.
    pod_labels[INJECT_LABEL] = "false"
    selector = _selector(opts, "webhook")
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": key,
            # ScheduleAnyway: on a one-node cluster or during a node outage a second replica on
            # the same node beats no second replica.
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]
    probe = {"scheme": "HTTP", "port": "metrics"}
    container = {
        "name": "webhook",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": serve_args(opts),
        # Where its Lease lives, and its identity in it (the status writer's election).
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [
            {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **probe},
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        # Memory from the server's limits (docs/server.md, "Limits", measured 2026-12-01): about
        # 72 MiB at rest; at most 512 connections at about 66 KiB each (34 MiB), each holding at
        # most 64 KiB of headers (32 MiB), 64 MiB of request bodies in all, and about 30 MiB
        # while a 3 MiB review is decoded: about 232 MiB at worst, under the limit.
        "resources": {
            "requests": {"cpu": "50m", "memory": "96Mi"},
            "limits": {"cpu": "1", "memory": "320Mi"},
        },
        "securityContext": _container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(opts, opts.name, "webhook"),
        "spec": {
            "replicas": opts.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            # Never fewer ready pods than asked for during an upgrade.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    **({"priorityClassName": opts.priority_class_name} if opts.priority_class_name else {}),
                    "serviceAccountName": n["sa"],
                    "automountServiceAccountToken": True,
                    "securityContext": _pod_security_context(),
                    "topologySpreadConstraints": spread,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": n["config"]}},
                        {
                            "name": "tls",
                            "secret": {
                                "secretName": n["secret"],
                                # Only the serving pair: the bootstrap keeps ca.key in the Secret
                                # too, and the server has no use for it.
                                "items": [
                                    {"key": "tls.crt", "path": "tls.crt"},
                                    {"key": "tls.key", "path": "tls.key"},
                                ],
                                # Written in decimal (288) in the YAML: a leading-zero 0440
                                # is octal to kubectl's YAML 1.1 but decimal 440 to YAML 1.2
                                # readers. Every file mode in deploy/ and the chart is decimal.
                                "defaultMode": 0o440,
                            },
                        },
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


def pod_disruption_budget(opts: ManifestOptions) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(opts, opts.name, "webhook"),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _selector(opts, "webhook")}},
    }


def network_policy(opts: ManifestOptions) -> Manifest:
    # Ingress only on the two ports (from anywhere: the apiserver's source address differs
    # between clusters); egress only to the API server (it watches SidecarConfig objects), by
    # port: its address differs between clusters too (443 behind the Service, 6443 after DNAT).
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(opts, opts.name, "webhook"),
        "spec": {
            "podSelector": {"matchLabels": _selector(opts, "webhook")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "ports": [
                        {"port": HTTPS_PORT, "protocol": "TCP"},
                        {"port": METRICS_PORT, "protocol": "TCP"},
                    ]
                }
            ],
            "egress": [{"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}],
        },
    }


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
