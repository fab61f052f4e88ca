"""The fragments of a SidecarConfig checked as they would land in a pod, typed templates included.

A config that loads must never produce a pod the apiserver refuses, so its Kubernetes
fragments (labels, containers, volumes, env...) are wrapped in a validation Pod where
injection puts them (:data:`FRAGMENT_ROOTS`) and that pod is checked twice:

1. against the strict Pod schema (:class:`PodSchema`, supplied by the caller: the schema
   files are I/O), with each template replaced by a value of its field's type, so that
   typos beside a template are still caught;
2. against the apiserver's own validation beyond the schema
   (:mod:`~sidecar_injector.core.podrules`) on the literal values.

Each problem is mapped back to the config field the user wrote. This is separate from
:mod:`~sidecar_injector.core.parse` (the SidecarConfig's own fields, and building the
config) because it is a different job with its own machinery: the validation pod, the
placeholder rendering of templates, and the translation of pod paths back to config fields.
"""

from __future__ import annotations

from typing import Any, Protocol

from sidecar_injector.core import podrules
from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.specfields import Problems, names
from sidecar_injector.core.templating import Template, Typer, template_paths

Path = tuple[str | int, ...]

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


def typer(schema: PodSchema | None, key: str, native: bool) -> Typer | None:
    """The field types a template in fragment ``key`` converts to, from the schema."""
    if schema is None:
        return None
    root = FRAGMENT_ROOTS[key]
    if key == "containers" and native:
        root = ("spec", "initContainers")
    return lambda path: schema.scalar_types((*root, *path))


def check_fragments(raw: dict[str, Any], native: bool, p: Problems, schema: PodSchema | None) -> None:
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
    declared = names(volumes)
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
