"""SidecarConfig documents: validated once at load, then immutable.

A document (already parsed from YAML by :mod:`sidecar_injector.configload`)::

    apiVersion: sidecar-injector.io/v1alpha1
    kind: SidecarConfig
    metadata: {name: envoy}
    spec: {injectByDefault, selector, namespaces, labels, annotations, initContainers,
           containers, nativeSidecar, volumes, volumeMounts, env, imagePullSecrets}

Every error names where it was found (``file, document N``) and the field, because a user
fixing a ConfigMap has nothing else to go by. Kubernetes fragments (containers, volumes,
env, ...) are checked against the Pod schema by a validator the caller passes in: the
apiserver silently drops unknown fields, so a typo like ``restartPolicyy`` must fail here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.selector import LabelSelector, parse_selector
from sidecar_injector.core.templating import Fragment, is_template

API_VERSION = "sidecar-injector.io/v1alpha1"
KIND = "SidecarConfig"
DEFAULT_PREFIX = "sidecar-injector.io"

SPEC_FIELDS = (
    "injectByDefault",
    "selector",
    "namespaces",
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

# A config name is used in a comma-separated annotation and in metrics labels.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

#: Validates a Pod built around the fragments; returns ``(path, message)`` of the first
#: problem (path as a tuple of keys and indices into the Pod), or ``None``.
PodValidator = Callable[[dict[str, Any]], "tuple[tuple[str | int, ...], str] | None"]


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
    by_name: Mapping[str, SidecarConfig] = field(default_factory=dict)
    defaults: tuple[SidecarConfig, ...] = ()
    order: Mapping[str, int] = field(default_factory=dict)
    """Load position by name, to report decisions in load order."""
    has_templates: bool = False
    """Whether any config has a template (which may read any field of the pod)."""

    @classmethod
    def of(cls, configs: Iterable[SidecarConfig], prefix: str = DEFAULT_PREFIX) -> ConfigSet:
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
        return cls(configs, prefix, by_name, defaults, order, any(c.has_templates for c in configs))

    # Derived once (every request reads them): the pod annotation keys, the default configs'
    # names, and the configs a pod gets only by asking for them.
    inject_key: str = field(init=False, default="")
    exclude_key: str = field(init=False, default="")
    status_key: str = field(init=False, default="")
    default_names: frozenset[str] = field(init=False, default=frozenset())
    optional: tuple[SidecarConfig, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: set the derived fields once, here
        set_(self, "inject_key", f"{self.prefix}/inject")
        set_(self, "exclude_key", f"{self.prefix}/exclude")
        set_(self, "status_key", f"{self.prefix}/status")
        set_(self, "default_names", frozenset(c.name for c in self.defaults))
        set_(self, "optional", tuple(c for c in self.configs if not c.inject_by_default))


def parse_configs(
    documents: Iterable[tuple[str, Any]],
    *,
    prefix: str = DEFAULT_PREFIX,
    validate_pod: PodValidator | None = None,
) -> ConfigSet:
    """Validate ``(source, document)`` pairs into a :class:`ConfigSet`.

    ``source`` names the document in messages (``"file.yaml, document 2"``). Empty YAML
    documents (``None``) are skipped, as kubectl does.
    """
    parsed = [
        parse_config(doc, source, validate_pod=validate_pod) for source, doc in documents if doc is not None
    ]
    return ConfigSet.of(parsed, prefix)


def _expect(value: Any, typ: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, typ):
        raise ConfigError(f"{where}: must be {what}, got {type(value).__name__}")
    return value


def _str_map(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    _expect(raw, dict, where, "a mapping of strings")
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"{where}.{k}: keys and values must be strings (quote numbers and booleans)")
    return dict(raw)


def _named_list(raw: Any, where: str, key: str = "name", required: tuple[str, ...] = ()) -> list[Any]:
    """A list of mappings each with a unique ``key``."""
    if raw is None:
        return []
    _expect(raw, list, where, "a list")
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        _expect(item, dict, at, "a mapping")
        for req in (key, *required):
            if not isinstance(item.get(req), str) or not item[req]:
                raise ConfigError(f"{at}.{req}: required, a non-empty string")
        name = item[key]
        if name in seen:
            raise ConfigError(f"{at}.{key}: duplicate {key} {name!r} (also at {where}[{seen[name]}])")
        seen[name] = i
    return list(raw)


def parse_config(doc: Any, source: str, *, validate_pod: PodValidator | None = None) -> SidecarConfig:
    """Validate one document. Raises :class:`ConfigError` naming ``source`` and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a SidecarConfig must be a mapping, got {type(doc).__name__}")
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError(f"{source}: apiVersion: must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise ConfigError(f"{source}: kind: must be {KIND!r}, got {doc.get('kind')!r}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ConfigError(f"{source}: metadata.name: required")
    name = meta["name"]
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"{source}: metadata.name: {name!r} must be lowercase letters, digits, '-' and '.' "
            "(it is used in a comma-separated annotation)"
        )
    src = f"{source} ({name})"
    spec = doc.get("spec") or {}
    _expect(spec, dict, f"{src}: spec", "a mapping")
    unknown = [k for k in spec if k not in SPEC_FIELDS]
    if unknown:
        raise ConfigError(f"{src}: spec.{unknown[0]}: unknown field (known: {', '.join(SPEC_FIELDS)})")

    def at(f: str) -> str:
        return f"{src}: spec.{f}"

    inject_by_default = _expect(spec.get("injectByDefault", False), bool, at("injectByDefault"), "true or false")
    native = _expect(spec.get("nativeSidecar", False), bool, at("nativeSidecar"), "true or false")
    selector = parse_selector(spec.get("selector"), at("selector"))
    namespaces = spec.get("namespaces") or []
    _expect(namespaces, list, at("namespaces"), "a list of namespace names")
    for i, ns in enumerate(namespaces):
        _expect(ns, str, at(f"namespaces[{i}]"), "a string")
    labels = _str_map(spec.get("labels"), at("labels"))
    annotations = _str_map(spec.get("annotations"), at("annotations"))
    init_containers = _named_list(spec.get("initContainers"), at("initContainers"), required=("image",))
    containers = _named_list(spec.get("containers"), at("containers"), required=("image",))
    both = {c["name"] for c in init_containers} & {c["name"] for c in containers}
    if both:
        raise ConfigError(f"{at('containers')}: container name {sorted(both)[0]!r} is also an init container")
    volumes = _named_list(spec.get("volumes"), at("volumes"))
    volume_mounts = _named_list(spec.get("volumeMounts"), at("volumeMounts"), key="mountPath", required=("name",))
    env = _named_list(spec.get("env"), at("env"))
    pull_secrets = _named_list(spec.get("imagePullSecrets"), at("imagePullSecrets"))
    if not (labels or annotations or init_containers or containers or volumes or volume_mounts or env):
        if not pull_secrets:
            raise ConfigError(f"{src}: spec: injects nothing (no labels, annotations, containers, volumes, env)")

    if native:
        # Native sidecars are init containers with restartPolicy Always; validate them as such.
        containers = [{**c, "restartPolicy": c.get("restartPolicy", "Always")} for c in containers]
    if validate_pod is not None:
        _validate_fragments(
            validate_pod, src, native, labels, annotations, init_containers, containers,
            volumes, volume_mounts, env, pull_secrets,
        )

    config = SidecarConfig(
        name=name,
        source=source,
        inject_by_default=inject_by_default,
        selector=selector,
        namespaces=frozenset(namespaces),
        native_sidecar=native,
        labels=Fragment(labels, at("labels")),
        annotations=Fragment(annotations, at("annotations")),
        init_containers=Fragment(init_containers, at("initContainers")),
        containers=Fragment(containers, at("containers")),
        volumes=Fragment(volumes, at("volumes")),
        volume_mounts=Fragment(volume_mounts, at("volumeMounts")),
        env=Fragment(env, at("env")),
        image_pull_secrets=Fragment(pull_secrets, at("imagePullSecrets")),
        selector_text=selector.describe() if selector else "",
        namespaces_text=", ".join(sorted(namespaces)),
    )
    fragments = (config.labels, config.annotations, config.init_containers, config.containers,
                 config.volumes, config.volume_mounts, config.env, config.image_pull_secrets)
    if any(f.has_templates for f in fragments):
        return dataclasses.replace(config, has_templates=True)
    # Static content: its digest (for the status annotation) is computed once, here.
    return dataclasses.replace(config, static_digest=content_digest(config.parts(None)))


def content_digest(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys) of what one config injects into a pod."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _validate_fragments(
    validate_pod: PodValidator,
    src: str,
    native: bool,
    labels: dict[str, str],
    annotations: dict[str, str],
    init_containers: list[Any],
    containers: list[Any],
    volumes: list[Any],
    volume_mounts: list[Any],
    env: list[Any],
    pull_secrets: list[Any],
) -> None:
    """Wrap the fragments in a Pod, validate it, and map an error back to the config field."""
    app: dict[str, Any] = {"name": "app", "image": "app"}
    if volume_mounts:
        app["volumeMounts"] = volume_mounts
    if env:
        app["env"] = env
    spec: dict[str, Any] = {}
    inits = list(init_containers) + (list(containers) if native else [])
    if inits:
        spec["initContainers"] = inits
    spec["containers"] = [app] + ([] if native else list(containers))
    if volumes:
        spec["volumes"] = volumes
    if pull_secrets:
        spec["imagePullSecrets"] = pull_secrets
    meta: dict[str, Any] = {"name": "validate"}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    problem = validate_pod(pod)
    if problem is None:
        return
    path, message = problem
    instance: Any = pod
    for p in path:
        try:
            instance = instance[p]
        except (KeyError, IndexError, TypeError):
            break
    if isinstance(instance, str) and is_template(instance):
        # A template string cannot be checked before it is rendered for a pod.
        return
    field = _config_field(list(path), native, len(init_containers))
    raise ConfigError(f"{src}: {field}: {message}")


def _config_field(path: list[str | int], native: bool, n_init: int) -> str:
    """Translate a path in the validation Pod to the config field a user wrote."""
    def fmt(parts: list[str | int]) -> str:
        out = ""
        for p in parts:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
        return out

    if path[:1] == ["metadata"]:
        return "spec." + fmt(path[1:]) if len(path) > 1 else "spec"
    rest = path[1:] if path[:1] == ["spec"] else path
    if rest[:1] == ["containers"] and len(rest) > 1:
        idx = rest[1]
        if idx == 0:
            return "spec." + fmt(rest[2:]) if len(rest) > 2 else "spec"
        if isinstance(idx, int):
            return "spec." + fmt(["containers", idx - 1, *rest[2:]])
    if rest[:1] == ["initContainers"] and len(rest) > 1 and isinstance(rest[1], int):
        idx = rest[1]
        if native and idx >= n_init:
            return "spec." + fmt(["containers", idx - n_init, *rest[2:]])
    return "spec." + fmt(rest)
