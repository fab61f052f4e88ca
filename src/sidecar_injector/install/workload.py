"""The webhook server's objects in its namespace: the Namespace itself (Pod Security ``restricted``),
the ServiceAccounts, the config ConfigMap, the Deployment, its Service, PodDisruptionBudget and
NetworkPolicy.

These are what keeps the server running and reachable (replicas, spread, probes, resources,
the rolling update, the disruption budget), so they change together and apart from how the
certificate is obtained (:mod:`~sidecar_injector.install.certmanifests`) or how the apiserver is
told to call the server (:mod:`~sidecar_injector.install.webhookconfig`).
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
    "CONFIG_DIR",
    "HTTPS_PORT",
    "METRICS_PORT",
    "TLS_DIR",
    "config_map",
    "deployment",
    "namespace",
    "network_policy",
    "pod_disruption_budget",
    "serve_args",
    "service",
    "service_accounts",
]

HTTPS_PORT = 8443
METRICS_PORT = 8080
CONFIG_DIR = "/etc/sidecar-injector/config"
TLS_DIR = "/etc/sidecar-injector/tls"


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
