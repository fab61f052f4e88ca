"""SidecarConfig: the validated, immutable model the core injects from.

A document (parsed from YAML by :mod:`sidecar_injector.config.configload`, validated by
:mod:`sidecar_injector.core.parse`)::

    apiVersion: sidecar-injector.io/v1alpha1
    kind: SidecarConfig
    metadata: {name: envoy}
    spec: {injectByDefault, selector, namespaces, matchConditions, hostNetwork,
           runToCompletion, labels, annotations, initContainers, containers, nativeSidecar,
           volumes, volumeMounts, env, imagePullSecrets}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar_injector.core.cel import Condition
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.selector import LabelSelector
from sidecar_injector.core.templating import Fragment

API_VERSION = "sidecar-injector.io/v1alpha1"
KIND = "SidecarConfig"
DEFAULT_PREFIX = "sidecar-injector.io"

SPEC_FIELDS = (
    "injectByDefault",
    "selector",
    "namespaces",
    "matchConditions",
    "hostNetwork",
    "runToCompletion",
    "labels",
    "annotations",
    "initContainers",
    "containers",
    "nativeSidecar",
    "volumes",
    "volumeMounts",
    "env",
    "imagePullSecrets",
)

#: ``spec.hostNetwork``: what to do with pods on the node's network (default first).
HOST_NETWORK_MODES = ("skip", "inject")
#: ``spec.runToCompletion``: what to do with pods whose restartPolicy is Never or OnFailure.
RUN_TO_COMPLETION_MODES = ("native", "skip", "inject")


@dataclass(frozen=True, slots=True, kw_only=True)
class SidecarConfig:
    """One validated SidecarConfig. Fragments are compiled templates (see templating)."""

    name: str
    source: str
    """Where it came from, e.g. ``config.yaml, document 2``: for messages."""
    inject_by_default: bool = False
    selector: LabelSelector | None = None
    namespaces: frozenset[str] = frozenset()
    native_sidecar: bool = False
    match_conditions: tuple[Condition, ...] = ()
    host_network: str = "skip"
    run_to_completion: str = "native"
    labels: Fragment
    annotations: Fragment
    init_containers: Fragment
    containers: Fragment
    volumes: Fragment
    volume_mounts: Fragment
    env: Fragment
    image_pull_secrets: Fragment
    selector_text: str = ""
    """The selector in kubectl's syntax, for messages (computed once)."""
    namespaces_text: str = ""
    static_digest: str = ""
    """:func:`content_digest` of what it injects, when that is the same for every pod."""

    def parts(self, context: dict[str, Any] | None) -> dict[str, Any]:
        """Everything this config injects, rendered for one pod (read-only)."""
        return {
            "labels": self.labels.render(context, copy=False),
            "annotations": self.annotations.render(context, copy=False),
            "initContainers": self.init_containers.render(context, copy=False),
            "containers": self.containers.render(context, copy=False),
            "volumes": self.volumes.render(context, copy=False),
            "volumeMounts": self.volume_mounts.render(context, copy=False),
            "env": self.env.render(context, copy=False),
            "imagePullSecrets": self.image_pull_secrets.render(context, copy=False),
        }

    has_templates: bool = False
    """Whether any value is a template (computed once at load: asked on every request)."""

@dataclass(frozen=True, slots=True)
class ConfigSet:
    """All loaded configs, in load order (files by name, documents in file order)."""

    configs: tuple[SidecarConfig, ...] = ()
    prefix: str = DEFAULT_PREFIX
    native_sidecars: bool = True
    """Whether the target Kubernetes version runs native sidecars (1.29 and later)."""
    by_name: Mapping[str, SidecarConfig] = field(default_factory=dict)
    defaults: tuple[SidecarConfig, ...] = ()
    order: Mapping[str, int] = field(default_factory=dict)
    """Load position by name, to report decisions in load order."""
    has_templates: bool = False
    """Whether any config has a template (which may read any field of the pod)."""
    scoped: Mapping[str, ConfigSet] = field(default_factory=dict)
    """Namespace -> the set its pods get instead of this one (namespaced SidecarConfigs, which
    shadow configs of the same name: :mod:`sidecar_injector.core.tenancy`). Empty: one set for all."""

    @classmethod
    def of(
        cls, configs: Iterable[SidecarConfig], prefix: str = DEFAULT_PREFIX, native_sidecars: bool = True
    ) -> ConfigSet:
        configs = tuple(configs)
        by_name: dict[str, SidecarConfig] = {}
        for c in configs:
            if c.name in by_name:
                raise ConfigError(
                    f"{c.source}: metadata.name: {c.name!r} is already defined in {by_name[c.name].source}"
                )
            by_name[c.name] = c
        defaults = tuple(c for c in configs if c.inject_by_default)
        order = {c.name: i for i, c in enumerate(configs)}
        return cls(
            configs, prefix, native_sidecars, by_name, defaults, order, any(c.has_templates for c in configs)
        )

    # Derived once (every request reads them): the pod annotation keys, the default configs'
    # names, and the configs a pod gets only by asking for them.
    inject_key: str = field(init=False, default="")
    exclude_key: str = field(init=False, default="")
    status_key: str = field(init=False, default="")
    default_names: frozenset[str] = field(init=False, default=frozenset())
    sidecar_names: frozenset[str] = field(init=False, default=frozenset())
    """Every container name the configs inject: a pod declaring one is merged with it."""
    needs_full_pod: bool = field(init=False, default=False)
    """Whether a decision may read any field of the pod (templates, CEL matchConditions)."""
    optional: tuple[SidecarConfig, ...] = field(init=False, default=())
    review_full_pod: bool = field(init=False, default=False)
    """``needs_full_pod`` of this set or of any scoped one: a review decodes before it knows the
    namespace, so the decode must suit every set the namespace may select."""
    review_sidecar_names: frozenset[str] = field(init=False, default=frozenset())
    memo: dict[Any, Any] = field(init=False, default_factory=dict, compare=False, hash=False, repr=False)
    """Answers to pods already seen, by their content (:mod:`core.admission`): a config set
    answers the same pod alike, and a new set (a reload) starts with an empty memo."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: set the derived fields once, here
        set_(self, "inject_key", f"{self.prefix}/inject")
        set_(self, "exclude_key", f"{self.prefix}/exclude")
        set_(self, "status_key", f"{self.prefix}/status")
        set_(self, "default_names", frozenset(c.name for c in self.defaults))
        set_(self, "sidecar_names", frozenset(
            item["name"] for c in self.configs for f in (c.init_containers, c.containers) for item in f.static
        ))
        set_(self, "needs_full_pod", self.has_templates or any(c.match_conditions for c in self.configs))
        set_(self, "optional", tuple(c for c in self.configs if not c.inject_by_default))
        set_(self, "review_full_pod", self.needs_full_pod or any(s.needs_full_pod for s in self.scoped.values()))
        set_(self, "review_sidecar_names", self.sidecar_names.union(
            *(s.sidecar_names for s in self.scoped.values())))

    def for_namespace(self, namespace: str) -> ConfigSet:
        """The set that applies to pods in ``namespace``."""
        return self.scoped.get(namespace, self) if self.scoped else self


def content_digest(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys) of what one config injects into a pod."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
