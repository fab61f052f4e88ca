"""Validating SidecarConfig documents into :class:`~sidecar_injector.core.config.SidecarConfig`.

A config that loads must never produce a pod the apiserver refuses: one typo in one config
would otherwise stop pod creation in every namespace it applies to, whatever the webhook's
``failurePolicy``. So loading checks, and reports **every** problem at once (one per line,
each naming the file, the document, the config and the field):

1. the SidecarConfig's own fields (names, modes, selectors, matchConditions in CEL), here
   and in :mod:`~sidecar_injector.core.specfields`;
2. the Kubernetes fragments against the strict Pod schema (:class:`PodSchema`, supplied by
   the caller: the schema files are I/O), with each template replaced by a placeholder of
   its field's type, so that typos beside a template are still caught
   (:mod:`~sidecar_injector.core.fragmentcheck`);
3. the apiserver's own validation beyond the schema (:mod:`~sidecar_injector.core.podrules`:
   label values, DNS-1123 names, ports, quantities, probes on init containers...) on the
   literal values. Rendered template values are checked per request instead (see
   :mod:`~sidecar_injector.core.build`), where a failure is an injection error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from sidecar_injector.core import specfields
from sidecar_injector.core.config import (
    DEFAULT_PREFIX,
    HOST_NETWORK_MODES,
    RUN_TO_COMPLETION_MODES,
    SPEC_FIELDS,
    ConfigSet,
    SidecarConfig,
    content_digest,
)
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.fragmentcheck import FRAGMENT_ROOTS, Path, PodSchema, check_fragments, typer
from sidecar_injector.core.selector import parse_selector
from sidecar_injector.core.templating import Fragment

__all__ = ["FRAGMENT_ROOTS", "Path", "PodSchema", "parse_config", "parse_configs"]

# A config name is used in a comma-separated annotation and in metrics labels.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


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
    head = specfields.Problems(source)
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
    p = specfields.Problems(f"{source} ({name})")
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
    name: str, source: str, spec: dict[str, Any], p: specfields.Problems, schema: PodSchema | None
) -> SidecarConfig | None:
    for k in spec:
        if k not in SPEC_FIELDS:
            p.add(f"spec.{k}", f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    inject_by_default = specfields.boolean(spec, "injectByDefault", p)
    native = specfields.boolean(spec, "nativeSidecar", p)
    host_network = specfields.mode(spec, "hostNetwork", HOST_NETWORK_MODES, p)
    run_to_completion = specfields.mode(spec, "runToCompletion", RUN_TO_COMPLETION_MODES, p)
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
    conditions = specfields.match_conditions(spec.get("matchConditions"), p)

    before = len(p.lines)  # problems of the fragments' shape stop the deeper checks below
    labels = specfields.str_map(spec.get("labels"), "spec.labels", p)
    annotations = specfields.str_map(spec.get("annotations"), "spec.annotations", p)
    init_containers = specfields.named_list(spec.get("initContainers"), "spec.initContainers", p, required=("image",))
    containers = specfields.named_list(spec.get("containers"), "spec.containers", p, required=("image",))
    both = specfields.names(init_containers) & specfields.names(containers)
    for n in sorted(both):
        p.add("spec.containers", f"container name {n!r} is also an init container")
    volumes = specfields.named_list(spec.get("volumes"), "spec.volumes", p)
    volume_mounts = specfields.named_list(spec.get("volumeMounts"), "spec.volumeMounts", p, key="mountPath",
                                           required=("name",))
    env = specfields.named_list(spec.get("env"), "spec.env", p)
    pull_secrets = specfields.named_list(spec.get("imagePullSecrets"), "spec.imagePullSecrets", p)
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
    check_fragments(raw, native, p, schema)

    def at(f: str) -> str:
        return f"{p.src}: spec.{f}"

    fragments: dict[str, Fragment] = {}
    for key, value in raw.items():
        try:
            fragments[key] = Fragment(value, at(key), typer(schema, key, native))
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

