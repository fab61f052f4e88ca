"""Strict validation of Kubernetes fragments against the published OpenAPI schemas.

The apiserver decodes a patched pod non-strictly and drops unknown fields, so a typo such
as ``restartPolicyy`` in a config would vanish silently in the cluster. We validate the
config's fragments, wrapped in a Pod, with ``kubernetes-validate`` in strict mode at load.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core.config import PodValidator
from sidecar_injector.core.errors import ConfigError

#: The Kubernetes version whose schemas configs are checked against; ``--kube-version``.
DEFAULT_KUBE_VERSION = "1.37.0"


def pod_validator(kube_version: str = DEFAULT_KUBE_VERSION) -> PodValidator:
    """Return a validator for ``kube_version`` (``1.37`` or ``1.37.0``)."""
    import kubernetes_validate  # loads its schema index: only when configs are loaded

    if kube_version.count(".") == 1:
        kube_version += ".0"
    known = sorted(set(kubernetes_validate.utils.all_versions()), key=lambda v: [int(x) for x in v.split(".")])
    if kube_version not in known:
        raise ConfigError(f"--kube-version {kube_version}: no schemas for it (known: {', '.join(known)})")

    def validate(pod: dict[str, Any]) -> tuple[tuple[str | int, ...], str] | None:
        try:
            kubernetes_validate.validate(pod, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return tuple(e.path), str(e.message)
        return None

    return validate
