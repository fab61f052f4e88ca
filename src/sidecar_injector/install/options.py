"""What every install object shares: the options, their checks, and the names, labels and pod
hardening derived from them.

The object modules (:mod:`~sidecar_injector.install.workload`, :mod:`~sidecar_injector.install.certmanifests`,
:mod:`~sidecar_injector.install.webhookconfig`, and :mod:`~sidecar_injector.install.monitoring`) all
build on these, so they sit in one module below them all: the way objects are named, labelled,
selected and locked down is decided once here, not per object. Pure, like the rest: no YAML,
no I/O. :mod:`sidecar_injector.install.manifests` re-exports the public names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar_injector.core.errors import InjectorError

__all__ = [
    "FAILURE_POLICIES",
    "INJECT_LABEL",
    "NAMESPACE_LABEL",
    "PREFIX",
    "RUN_AS",
    "Manifest",
    "ManifestError",
    "ManifestOptions",
]

Manifest = dict[str, Any]

PREFIX = "sidecar-injector.io"
NAMESPACE_LABEL = f"{PREFIX}/injection"  # "enabled" turns injection on for a namespace
INJECT_LABEL = f"{PREFIX}/inject"  # "false" on a pod opts it out
FAILURE_POLICIES = ("Ignore", "Fail")
# A UID/GID above 10000 cannot collide with a host user's (checkov CKV_K8S_40); 65532 is the
# "nonroot" user of distroless images and of our Dockerfile.
RUN_AS = 65532

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
