"""Install objects of the SidecarConfig API, as plain dicts: the CRDs, the validating webhook
configuration, the server's RBAC and the aggregated ClusterRoles for namespace users.

Pure apart from reading the Pod schema the CRDs are generated from (:mod:`sidecar_injector.config.crd`).
:mod:`sidecar_injector.install.manifests` adds them to the install.

RBAC, least privilege:
- the server (its ServiceAccount): ``get``/``list``/``watch`` on both kinds, ``update``/``patch``
  on their ``status`` only, and in its own namespace ``create`` on Leases and ``get``/``update``
  on its one Lease (by name);
- namespace users: ``SidecarConfig`` joins the built-in ``admin`` and ``edit`` roles (manage)
  and ``view`` (read) by aggregation, so whoever may edit a namespace may declare its sidecars;
- ``ClusterSidecarConfig`` is aggregated nowhere: cluster admins only.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.config.crd import API_VERSION, GROUP, LEASE_NAME, PLURALS, crds

__all__ = [
    "CONFIG_WEBHOOK_NAME",
    "CONFIG_WEBHOOK_PATH",
    "aggregated_roles",
    "custom_resource_definitions",
    "server_rbac",
    "validating_webhook_configuration",
]

CONFIG_WEBHOOK_NAME = f"validate-config.{GROUP}"
CONFIG_WEBHOOK_PATH = "/validate-config"
_RESOURCES = [PLURALS["ClusterSidecarConfig"], PLURALS["SidecarConfig"]]
_VERSION = API_VERSION.split("/")[1]

Manifest = dict[str, Any]


def custom_resource_definitions(labels: dict[str, str]) -> list[Manifest]:
    return crds(labels=labels)


def validating_webhook_configuration(name: str, namespace: str, service: str, labels: dict[str, str],
                                     annotations: dict[str, str] | None = None) -> Manifest:
    """Refuses an invalid ClusterSidecarConfig or SidecarConfig at ``kubectl apply``.

    ``failurePolicy: Fail``: an unvalidated config could reach every replica. It is scoped to the
    two kinds only (CREATE and UPDATE, not their status), so an injector outage blocks config edits,
    never pods or anything else.
    """
    meta: Manifest = {"name": name, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": [
            {
                "name": CONFIG_WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                # caBundle is filled in by the bootstrap Job or by cert-manager's CA injector.
                "clientConfig": {
                    "service": {"name": service, "namespace": namespace, "path": CONFIG_WEBHOOK_PATH, "port": 443}
                },
                "rules": [
                    {
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": [GROUP],
                        "apiVersions": [_VERSION],
                        "resources": list(_RESOURCES),
                        "scope": "*",
                    }
                ],
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "timeoutSeconds": 10,
            }
        ],
    }


def server_rbac(name: str, namespace: str, service_account: str, labels: dict[str, str]) -> list[Manifest]:
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    role_name = f"{name}-server"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name, "labels": dict(labels)},
            "rules": [
                {"apiGroups": [GROUP], "resources": list(_RESOURCES), "verbs": ["get", "list", "watch"]},
                {"apiGroups": [GROUP], "resources": [f"{r}/status" for r in _RESOURCES],
                 "verbs": ["get", "update", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role_name, "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role_name, "namespace": namespace, "labels": dict(labels)},
            "rules": [
                # create cannot be limited to a name; get/update are, to the one Lease.
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [LEASE_NAME],
                 "verbs": ["get", "update"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role_name, "namespace": namespace, "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
            "subjects": subject,
        },
    ]


def aggregated_roles(name: str, labels: dict[str, str]) -> list[Manifest]:
    """SidecarConfig for the built-in namespace roles: admin and edit manage, view reads."""
    namespaced = PLURALS["SidecarConfig"]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": f"{name}-sidecarconfigs-edit",
                "labels": {**labels, "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                           "rbac.authorization.k8s.io/aggregate-to-edit": "true"},
            },
            "rules": [{"apiGroups": [GROUP], "resources": [namespaced],
                       "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                                 "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": f"{name}-sidecarconfigs-view",
                "labels": {**labels, "rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [{"apiGroups": [GROUP], "resources": [namespaced, f"{namespaced}/status"],
                       "verbs": ["get", "list", "watch"]}],
        },
    ]


#: What ``sidecar-injector status`` reads (issue 12): pods and their owners, namespaces, the
#: injection webhook's configuration (its namespaceSelector) and both SidecarConfig kinds (and,
#: added by :func:`fleet_roles`, the install's ConfigMap by name).
FLEET_READ_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": list(_RESOURCES), "verbs": ["get", "list", "watch"]},
]
#: What ``sidecar-injector rollout`` needs in addition: ``kubectl rollout restart``'s patch.
FLEET_ROLLOUT_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["patch"]},
]

#: What ``serve --fleet-metrics`` needs: watch pods and namespaces, read owners and the injection
#: webhook's configuration, create Events (SidecarMissing) on workloads.
FLEET_METRICS_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
     "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def fleet_roles(name: str, labels: dict[str, str]) -> list[Manifest]:
    """ClusterRoles for the fleet commands, bound to no one (bind them to who runs them):
    ``<name>-fleet-view`` (read-only: get/list/watch, enough for ``status``) and
    ``<name>-fleet-rollout`` (``patch`` on Deployments, StatefulSets, DaemonSets: with the view
    role, enough for ``rollout``) and ``<name>-fleet-metrics`` (for ``serve --fleet-metrics``: bind
    it to the server's ServiceAccount when you turn that on)."""
    # status reads the install's config files too (the ConfigMap, by name: no other ConfigMap).
    config_map = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [f"{name}-config"],
                  "verbs": ["get"]}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{name}-fleet-view", "labels": dict(labels)}, "rules": [*FLEET_READ_RULES, config_map]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{name}-fleet-rollout", "labels": dict(labels)}, "rules": FLEET_ROLLOUT_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{name}-fleet-metrics", "labels": dict(labels)}, "rules": FLEET_METRICS_RULES},
    ]
