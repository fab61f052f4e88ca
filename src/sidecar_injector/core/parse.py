"""Validating SidecarConfig documents into :class:`~sidecar_injector.core.config.SidecarConfig`.

A config that loads must never produce a pod the apiserver refuses: one typo in one config
would otherwise stop pod creation in every namespace it applies to, whatever the webhook's
``failurePolicy``. So loading checks, and reports **every** problem at once (one per line,
each naming the file, the document, the config and the field):

1. the SidecarConfig's own fields (names, modes, selectors, matchConditions in CEL);
2. the Kubernetes fragments against the strict Pod schema (:class:`PodSchema`, supplied by
   the caller: the schema files are I/O), with each template replaced by a placeholder of
   its field's type, so that typos beside a template are still caught;
3. the apiserver's own validation beyond the schema (:mod:`~sidecar_injector.core.podrules`:
   label values, DNS-1123 names, ports, quantities, probes on init containers...) on the
   literal values. Rendered template values are checked per request instead (see
   :mod:`~sidecar_injector.core.build`), where a failure is an injection error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any, Protocol

from sidecar_injector.core import cel, podrules
from sidecar_injector.core.config import (
    DEFAULT_PREFIX,
    HOST_NETWORK_MODES,
    RUN_TO_COMPLETION_MODES,
    SPEC_FIELDS,
    ConfigSet,
    SidecarConfig,
    content_digest,
)
from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.selector import parse_selector
from sidecar_injector.core.templating import Fragment, Template, Typer, template_paths

Path = tuple[str | int, ...]

# A config name is used in a comma-separated annotation and in metrics labels.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

#: The placeholder app container of the validation pod (a name no sidecar will take).
_APP = "sidecar-injector-app"

#: Where each fragment lands in a pod: the validation pod below, and the field types that
#: templates are converted to. Mounts and env land in the app containers.
FRAGMENT_ROOTS: dict[str, Path] = {
    "labels": ("metadata", "labels"),
    "annotations": ("metadata", "annotations"),
    "initContainers": ("spec", "initContainers"),
    "containers": ("spec", "containers"),
    "volumes": ("spec", "volumes"),
    "volumeMounts": ("spec", "containers", 0, "volumeMounts"),
    "env": ("spec", "containers", 0, "env"),
    "imagePullSecrets": ("spec", "imagePullSecrets"),
}


class PodSchema(Protocol):
    """The Kubernetes Pod schema of one version (see :mod:`sidecar_injector.config.schema`)."""

    native_sidecars: bool
    """Whether this version runs native sidecars (init containers with restartPolicy Always)."""

    def errors(self, pod: dict[str, Any]) -> list[tuple[Path, str]]:
        """Every schema violation of ``pod`` in strict mode (unknown fields included)."""
        ...

    def scalar_types(self, path: Path) -> frozenset[str]:
        """JSON types (``string``, ``integer``, ``number``, ``boolean``) of the scalar field at
        ``path``; empty when the field is unknown or not a scalar."""
        ...


class _Problems:
    """Collects every problem of one document, each prefixed with where it is."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.lines: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.lines.append(f"{self.src}: {field}: {message}" if field else f"{self.src}: {message}")

    def extend(self, error: ConfigError) -> None:
        self.lines.extend(str(error).splitlines())


def parse_configs(
    documents: Iterable[tuple[str, Any]],
    *,
    prefix: str = DEFAULT_PREFIX,
    schema: PodSchema | None = None,
) -> ConfigSet:
    """Validate ``(source, document)`` pairs into a :class:`ConfigSet`.

    ``source`` names the document in messages (``"file.yaml, document 2"``). Empty YAML
    documents (``None``) are skipped, as kubectl does. Raises one :class:`ConfigError`
    whose message lists every problem of every document, one per line.
    """
    parsed: list[SidecarConfig] = []
    problems: list[str] = []
    for source, doc in documents:
        if doc is None:
            continue
        try:
            parsed.append(parse_config(doc, source, schema=schema))
        except ConfigError as e:
            problems.extend(str(e).splitlines())
    seen: dict[str, SidecarConfig] = {}
    for c in parsed:
        if c.name in seen:
            problems.append(f"{c.source}: metadata.name: {c.name!r} is already defined in {seen[c.name].source}")
        seen.setdefault(c.name, c)
    if problems:
        raise ConfigError("\n".join(problems))
    return ConfigSet.of(parsed, prefix, schema.native_sidecars if schema is not None else True)


def parse_config(doc: Any, source: str, *, schema: PodSchema | None = None) -> SidecarConfig:
    """Validate one document; raises :class:`ConfigError` listing every problem, one per line."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a SidecarConfig must be a mapping, got {type(doc).__name__}")
    head = _Problems(source)
    if doc.get("apiVersion") != "sidecar-injector.io/v1alpha1":
        head.add("apiVersion", f"must be 'sidecar-injector.io/v1alpha1', got {doc.get('apiVersion')!r}")
    if doc.get("kind") != "SidecarConfig":
        head.add("kind", f"must be 'SidecarConfig', got {doc.get('kind')!r}")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        head.add("metadata.name", "required")
        name = None
    elif not _NAME_RE.match(name):
        head.add("metadata.name", f"{name!r} must be lowercase letters, digits, '-' and '.' "
                 "(it is used in a comma-separated annotation)")
    unknown_top = [k for k in doc if k not in ("apiVersion", "kind", "metadata", "spec")]
    for k in unknown_top:
        head.add(str(k), "unknown field (known: apiVersion, kind, metadata, spec)")
    if name is None:
        raise ConfigError("\n".join(head.lines))
    p = _Problems(f"{source} ({name})")
    p.lines = [line.replace(f"{source}: ", f"{p.src}: ", 1) for line in head.lines]
    spec = doc.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        p.add("spec", f"must be a mapping, got {type(spec).__name__}")
        raise ConfigError("\n".join(p.lines))
    config = _parse_spec(name, source, spec, p, schema)
    if p.lines:
        raise ConfigError("\n".join(p.lines))
    assert config is not None
    return config


def _parse_spec(
    name: str, source: str, spec: dict[str, Any], p: _Problems, schema: PodSchema | None
) -> SidecarConfig | None:
    for k in spec:
        if k not in SPEC_FIELDS:
            p.add(f"spec.{k}", f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    inject_by_default = _bool(spec, "injectByDefault", p)
    native = _bool(spec, "nativeSidecar", p)
    host_network = _mode(spec, "hostNetwork", HOST_NETWORK_MODES, p)
    run_to_completion = _mode(spec, "runToCompletion", RUN_TO_COMPLETION_MODES, p)
    selector = None
    try:
        selector = parse_selector(spec.get("selector"), f"{p.src}: spec.selector")
    except ConfigError as e:
        p.extend(e)
    namespaces = spec.get("namespaces") or []
    if not isinstance(namespaces, list):
        p.add("spec.namespaces", f"must be a list of namespace names, got {type(namespaces).__name__}")
        namespaces = []
    for i, ns in enumerate(namespaces):
        if not isinstance(ns, str):
            p.add(f"spec.namespaces[{i}]", f"must be a string, got {type(ns).__name__}")
    namespaces = [ns for ns in namespaces if isinstance(ns, str)]
    conditions = _conditions(spec.get("matchConditions"), p)

    before = len(p.lines)  # problems of the fragments' shape stop the deeper checks below
    labels = _str_map(spec.get("labels"), "spec.labels", p)
    annotations = _str_map(spec.get("annotations"), "spec.annotations", p)
    init_containers = _named_list(spec.get("initContainers"), "spec.initContainers", p, required=("image",))
    containers = _named_list(spec.get("containers"), "spec.containers", p, required=("image",))
    both = _names(init_containers) & _names(containers)
    for n in sorted(both):
        p.add("spec.containers", f"container name {n!r} is also an init container")
    volumes = _named_list(spec.get("volumes"), "spec.volumes", p)
    volume_mounts = _named_list(spec.get("volumeMounts"), "spec.volumeMounts", p, key="mountPath",
                                required=("name",))
    env = _named_list(spec.get("env"), "spec.env", p)
    pull_secrets = _named_list(spec.get("imagePullSecrets"), "spec.imagePullSecrets", p)
    if not (labels or annotations or init_containers or containers or volumes or volume_mounts or env
            or pull_secrets) and len(p.lines) == before:
        p.add("spec", "injects nothing (no labels, annotations, containers, volumes, env)")

    if native:
        # Native sidecars are init containers with restartPolicy Always; validate them as such.
        containers = [{**c, "restartPolicy": c.get("restartPolicy", "Always")} for c in containers]
    raw = {
        "labels": labels, "annotations": annotations, "initContainers": init_containers,
        "containers": containers, "volumes": volumes, "volumeMounts": volume_mounts, "env": env,
        "imagePullSecrets": pull_secrets,
    }
    if len(p.lines) > before:
        return None  # the fragments are not well-formed enough to check further
    _check_fragments(raw, native, p, schema)

    def at(f: str) -> str:
        return f"{p.src}: spec.{f}"

    fragments: dict[str, Fragment] = {}
    for key, value in raw.items():
        try:
            fragments[key] = Fragment(value, at(key), _typer(schema, key, native))
        except ConfigError as e:
            p.extend(e)
    if p.lines:
        return None
    config = SidecarConfig(
        name=name,
        source=source,
        inject_by_default=inject_by_default,
        selector=selector,
        namespaces=frozenset(namespaces),
        native_sidecar=native,
        match_conditions=tuple(conditions),
        host_network=host_network,
        run_to_completion=run_to_completion,
        labels=fragments["labels"],
        annotations=fragments["annotations"],
        init_containers=fragments["initContainers"],
        containers=fragments["containers"],
        volumes=fragments["volumes"],
        volume_mounts=fragments["volumeMounts"],
        env=fragments["env"],
        image_pull_secrets=fragments["imagePullSecrets"],
        selector_text=selector.describe() if selector else "",
        namespaces_text=", ".join(sorted(namespaces)),
    )
    if any(f.has_templates for f in fragments.values()):
        return dataclasses.replace(config, has_templates=True)
    # Static content: its digest (for the status annotation) is computed once, here.
    return dataclasses.replace(config, static_digest=content_digest(config.parts(None)))


def _typer(schema: PodSchema | None, key: str, native: bool) -> Typer | None:
    if schema is None:
        return None
    root = FRAGMENT_ROOTS[key]
    if key == "containers" and native:
        root = ("spec", "initContainers")
    return lambda path: schema.scalar_types((*root, *path))


def _bool(spec: dict[str, Any], key: str, p: _Problems) -> bool:
    value = spec.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        p.add(f"spec.{key}", f"must be true or false, got {value!r}")
        return False
    return value


def _mode(spec: dict[str, Any], key: str, modes: tuple[str, ...], p: _Problems) -> str:
    value = spec.get(key)
    if value is None:
        return modes[0]
    if value not in modes:
        p.add(f"spec.{key}", f"must be one of {', '.join(modes)} (default {modes[0]}), got {value!r}")
        return modes[0]
    return str(value)


def _conditions(raw: Any, p: _Problems) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add("spec.matchConditions", "must be a list of {name, expression}")
        return []
    out: list[Any] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        field = f"spec.matchConditions[{i}]"
        if not isinstance(item, dict):
            p.add(field, "must be a mapping with name and expression")
            continue
        for k in item:
            if k not in ("name", "expression"):
                p.add(f"{field}.{k}", "unknown field (known: name, expression)")
        name, expression = item.get("name"), item.get("expression")
        if not isinstance(name, str) or not name:
            p.add(f"{field}.name", "required, a non-empty string")
            continue
        if name in seen:
            p.add(f"{field}.name", f"duplicate name {name!r}")
        seen.add(name)
        if not isinstance(expression, str) or not expression.strip():
            p.add(f"{field}.expression", "required, a CEL expression over `object` (the pod)")
            continue
        try:
            out.append(cel.compile_condition(name, expression, f"{p.src}: {field}.expression"))
        except ConfigError as e:
            p.extend(e)
    return out


def _str_map(raw: Any, field: str, p: _Problems) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.add(field, f"must be a mapping of strings, got {type(raw).__name__}")
        return {}
    ok = True
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            p.add(f"{field}.{k}", "keys and values must be strings (quote numbers and booleans)")
            ok = False
    return dict(raw) if ok else {}


def _names(items: list[Any]) -> set[str]:
    return {i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}


def _named_list(raw: Any, field: str, p: _Problems, key: str = "name", required: tuple[str, ...] = ()) -> list[Any]:
    """A list of mappings each with a unique ``key``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add(field, f"must be a list, got {type(raw).__name__}")
        return []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(item, dict):
            p.add(at, f"must be a mapping, got {type(item).__name__}")
            continue
        for req in (key, *required):
            if not isinstance(item.get(req), str) or not item[req]:
                p.add(f"{at}.{req}", "required, a non-empty string")
        name = item.get(key)
        if isinstance(name, str) and name:
            if name in seen:
                p.add(f"{at}.{key}", f"duplicate {key} {name!r} (also at {field}[{seen[name]}])")
            seen.setdefault(name, i)
    return list(raw)


# ---- the fragments, wrapped in a pod, against the schema and the apiserver's rules ----


def _check_fragments(raw: dict[str, Any], native: bool, p: _Problems, schema: PodSchema | None) -> None:
    """Wrap the fragments in a Pod, check it, and map each problem back to the config field.

    Each template is first rendered for a placeholder pod (no labels or annotations, so every
    ``| default(...)`` applies): when it renders, its value is converted to its field's type
    and checked like a literal, since a pod lacking those labels would get exactly that value.
    A template that does not render without the pod's data is replaced by a placeholder of its
    field's type, and its field is checked per request instead.
    """
    n_init = len(raw["initContainers"])
    pod = _validation_pod(raw, native)
    templates = set(template_paths(pod))
    sampled: dict[Path, str] = {}
    for path in sorted(templates, key=str):
        t = schema.scalar_types(path) if schema is not None else frozenset({"string"})
        if not t:
            p.add(_config_field(path, native, n_init), "a template can stand only for a scalar value "
                  "(a string, number or boolean field)")
            continue
        source = _get(pod, path)
        value = _sample(source, t)
        if value is _UNRENDERED:
            _set(pod, path, _placeholder(t, source))
        elif isinstance(value, InjectionError):  # renders, but not to the field's type
            p.add(_config_field(path, native, n_init), f"{_without_where(value)} for a pod without the labels "
                  "and annotations it reads")
            _set(pod, path, _placeholder(t, source))
        else:
            _set(pod, path, value)
            sampled[path] = source
    unchecked = templates - set(sampled)

    def report(path: Path, msg: str) -> None:
        note = f" (the template {sampled[path]!r} renders this for a pod without the labels and annotations " \
               "it reads)" if path in sampled else ""
        p.add(_config_field(list(path), native, n_init), msg + note)

    bad: set[Path] = set()
    if schema is not None:
        problems = [(path, msg) for path, msg in schema.errors(pod) if not _is_template_problem(path, unchecked)]
        for path, msg in problems:
            report(tuple(path), msg)
        bad = {tuple(path) for path, _ in problems}
    native_ok = schema.native_sidecars if schema is not None else True
    for path, msg in podrules.check_pod(pod, native_sidecars=native_ok):
        path = tuple(path)
        if any(path[: len(b)] == b for b in bad):
            continue  # the schema's message on the same field says it better
        if not _is_template_problem(path, unchecked) and not _is_own_app(path):
            report(path, msg)


_UNRENDERED = object()

#: What a template sees at load: a pod with no labels or annotations (so defaults apply).
_SAMPLE_CONTEXT: dict[str, Any] = {
    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "app"}]}},
    "name": "pod", "namespace": "default", "labels": {}, "annotations": {},
}


def _sample(source: str, types: frozenset[str]) -> Any:
    """``source`` rendered for the placeholder pod and converted: the value, an
    :class:`InjectionError` if it does not convert, or ``_UNRENDERED``."""
    try:
        template = Template(source, "", types)
    except ConfigError:
        return _UNRENDERED  # reported when the fragment is compiled
    try:
        return template.render(_SAMPLE_CONTEXT)
    except InjectionError as e:
        return e if "the template rendered" in str(e) else _UNRENDERED


def _without_where(e: InjectionError) -> str:
    return str(e).removeprefix(": ")


def _is_template_problem(path: Path, templates: set[Path]) -> bool:
    """A problem at a template's field, or inside one item's field that holds a template
    (``resources`` with a templated limit): checked once rendered, per request."""
    path = tuple(path)
    if path in templates:
        return True
    return len(path) >= 4 and any(t[: len(path)] == path for t in templates)


def _is_own_app(path: Path) -> bool:
    """Problems of the placeholder app container's own fields (name, image) are not the config's."""
    return tuple(path[:3]) == ("spec", "containers", 0) and (len(path) == 3 or path[3] in ("name", "image"))


def _placeholder(types: frozenset[str], template: Any) -> Any:
    if "string" in types:
        return template  # problems at this path are skipped (checked once rendered)
    if "integer" in types:
        return 1
    if "number" in types:
        return 1
    return True


def _get(tree: Any, path: Path) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: Any, path: Path, value: Any) -> None:
    _get(tree, path[:-1])[path[-1]] = value


def _validation_pod(raw: dict[str, Any], native: bool) -> dict[str, Any]:
    """A Pod with the fragments where injection puts them, deep-copied (placeholders are set
    in it), around one placeholder app container that receives the mounts and env.

    Mounts may name a volume the config does not declare (the pod's own, checked per
    request): the validation pod gets a placeholder ``emptyDir`` for each such name.
    """
    import copy

    r = copy.deepcopy(raw)
    app: dict[str, Any] = {"name": _APP, "image": _APP}
    if r["volumeMounts"]:
        app["volumeMounts"] = r["volumeMounts"]
    if r["env"]:
        app["env"] = r["env"]
    spec: dict[str, Any] = {}
    inits = list(r["initContainers"]) + (list(r["containers"]) if native else [])
    if inits:
        spec["initContainers"] = inits
    spec["containers"] = [app] + ([] if native else list(r["containers"]))
    volumes = list(r["volumes"])
    declared = _names(volumes)
    for c in [*inits, *spec["containers"]]:
        for m in c.get("volumeMounts") or []:
            n = m.get("name") if isinstance(m, dict) else None
            if isinstance(n, str) and n not in declared:
                declared.add(n)
                volumes.append({"name": n, "emptyDir": {}})
    if volumes:
        spec["volumes"] = volumes
    if r["imagePullSecrets"]:
        spec["imagePullSecrets"] = r["imagePullSecrets"]
    meta: dict[str, Any] = {"name": "validate"}
    if r["labels"]:
        meta["labels"] = r["labels"]
    if r["annotations"]:
        meta["annotations"] = r["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _config_field(path: list[str | int] | Path, native: bool, n_init: int) -> str:
    """Translate a path in the validation Pod to the config field a user wrote."""
    path = list(path)

    def fmt(parts: list[str | int]) -> str:
        out = ""
        for part in parts:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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
