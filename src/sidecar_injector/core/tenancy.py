"""Cluster-wide and namespaced SidecarConfigs in one :class:`ConfigSet`: the tenancy rule.

A ``ClusterSidecarConfig`` (or a file config without a namespace) applies wherever its own
``namespaces`` and selectors say. A namespaced ``SidecarConfig`` belongs to one team and applies
**only to pods in its own namespace**: it is restricted to that namespace here, whatever it says
(the loader refuses one that sets ``spec.namespaces`` at all). Its name **shadows** a cluster
config of the same name for pods in its namespace: there, requesting ``envoy`` gets the
namespace's ``envoy``, and the cluster's ``envoy`` is not injected (not even by default);
elsewhere nothing changes.

The result is one ConfigSet for the cluster configs whose ``scoped`` mapping holds, for each
namespace with configs of its own, the set its pods get instead: the cluster configs in their
order with each shadowed one replaced in place by the namespace's, then the namespace's other
configs in their order. Pure: configs in, ConfigSet out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet, SidecarConfig
from sidecar_injector.core.errors import ConfigError

__all__ = ["restrict", "scoped_set", "shadowed"]


def restrict(config: SidecarConfig, namespace: str) -> SidecarConfig:
    """``config`` limited to pods in ``namespace`` (a namespaced SidecarConfig)."""
    return dataclasses.replace(config, namespaces=frozenset({namespace}), namespaces_text=namespace)


def shadowed(cluster: Sequence[SidecarConfig], namespaced: Mapping[str, Sequence[SidecarConfig]]) -> list[
        tuple[str, str]]:
    """``(namespace, name)`` of every cluster config a namespaced one shadows, sorted."""
    names = {c.name for c in cluster}
    return sorted((ns, c.name) for ns, configs in namespaced.items() for c in configs if c.name in names)


def scoped_set(
    cluster: Sequence[SidecarConfig],
    namespaced: Mapping[str, Sequence[SidecarConfig]],
    prefix: str = DEFAULT_PREFIX,
    native_sidecars: bool = True,
) -> ConfigSet:
    """One ConfigSet for ``cluster`` configs, with a scoped set per namespace of ``namespaced``.

    Names must be unique among the cluster configs and within each namespace (ConfigError
    otherwise); a namespaced name equal to a cluster one is the shadowing above, not an error.
    """
    base = ConfigSet.of(cluster, prefix, native_sidecars)
    if not any(namespaced.values()):
        return base
    scoped: dict[str, ConfigSet] = {}
    for ns in sorted(namespaced):
        own = [restrict(c, ns) for c in namespaced[ns]]
        if not own:
            continue
        by_name: dict[str, SidecarConfig] = {}
        for c in own:
            if c.name in by_name:
                raise ConfigError(f"{c.source}: metadata.name: {c.name!r} is already defined in "
                                  f"{by_name[c.name].source}")
            by_name[c.name] = c
        merged = [by_name.get(c.name, c) for c in cluster]
        cluster_names = {c.name for c in cluster}
        merged += [c for c in own if c.name not in cluster_names]
        scoped[ns] = ConfigSet.of(merged, prefix, native_sidecars)
    return dataclasses.replace(base, scoped=scoped)
