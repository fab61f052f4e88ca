"""Strict validation of Kubernetes fragments against the published OpenAPI schemas.

The apiserver decodes a patched pod non-strictly and drops unknown fields, so a typo such
as ``restartPolicyy`` in a config would vanish silently in the cluster. We validate the
config's fragments, wrapped in a Pod, with ``kubernetes-validate`` in strict mode at load.
"""

from __future__ import annotations

from typing import Any

#: The Kubernetes version whose schemas configs are checked against; ``--kube-version``.
DEFAULT_KUBE_VERSION = "1.37.0"


def pod_validator(kube_version: str = DEFAULT_KUBE_VERSION) -> Any:
    """Return a :data:`sidecar_injector.core.config.PodValidator` for ``kube_version``."""
    import kubernetes_validate

    known = sorted(set(kubernetes_validate.utils.all_versions()), key=lambda v: [int(x) for x in v.split(".")])
    if kube_version not in known:
        from sidecar_injector.core.errors import ConfigError

        raise ConfigError(f"--kube-version {kube_version}: no schemas for it (known: {', '.join(known)})")

    def validate(pod: dict[str, Any]) -> tuple[tuple[str | int, ...], str] | None:
        try:
            kubernetes_validate.validate(pod, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            return tuple(e.path), e.message
        return None

    return validate
