"""THE CORE: decide which configs a pod gets, and build the patch that injects them.

:func:`inject` is pure: a pod dict, its namespace and a :class:`ConfigSet` in; an
:class:`InjectionResult` (mutated copy, JSON Patch, per-config decisions, warnings) out.
The webhook, the offline ``inject``/``explain`` commands and the tests all call it.

Idempotence rests on two things: the status annotation lists the configs already injected
(skipped wholesale, whatever the apiserver or another webhook did to the pod since), and
any container or volume the pod already has by name is kept and that one item skipped.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from sidecar_injector.core.config import ConfigSet, SidecarConfig, content_digest
from sidecar_injector.core.errors import InputError
from sidecar_injector.core.patch import PatchBuilder
from sidecar_injector.core.types import JSONPatchOp, Pod

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"

# Reason codes: stable strings, used in metrics labels, logs, `explain` and tests.
INJECTED = "injected"
NOT_REQUESTED = "not-requested"
EXCLUDED = "excluded"
SELECTOR_MISMATCH = "selector-mismatch"
NAMESPACE_NOT_ALLOWED = "namespace-not-allowed"
ALREADY_INJECTED = "already-injected"
OPTED_OUT = "opted-out"
UNKNOWN_CONFIG = "unknown-config"
MIRROR_POD = "mirror-pod"
NOTHING_TO_INJECT = "nothing-to-inject"


class ConfigDecision(NamedTuple):
    """What happened to one config for one pod, and why.

    A NamedTuple rather than a frozen dataclass: one is made per loaded config per request,
    and tuple construction is several times cheaper.
    """

    config: str
    reason: str
    """One of the reason codes above; ``injected`` when it was."""
    message: str
    requested: bool = False
    """Named by the pod's inject annotation (as opposed to injected by default)."""
    conflicts: tuple[str, ...] = ()
    """Items the pod already had by name, kept as the pod declared them."""

    @property
    def injected(self) -> bool:
        return self.reason == INJECTED


class InjectionResult(NamedTuple):
    """What :func:`inject` did to one pod (a NamedTuple: one is made per request)."""

    pod: Pod
    """The mutated copy (the input itself when nothing changed)."""
    patch: list[JSONPatchOp]
    decisions: tuple[ConfigDecision, ...]
    warnings: tuple[str, ...] = ()
    skip_reason: str = ""
    """Why nothing was injected (empty when something was)."""
    injected: tuple[str, ...] = ()


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty one: pods from users may be malformed."""
    return value if isinstance(value, dict) else {}


def _field(obj: dict[str, Any], key: str, typ: type, where: str) -> Any:
    """``obj[key]`` if it has the type a pod's field has, empty if absent or null.

    Anything else is not a pod the apiserver would send, and patching around it could
    overwrite it: the request is refused as the client's error (HTTP 400), never patched.
    """
    value = obj.get(key)
    if value is None:
        return typ()
    if not isinstance(value, typ):
        raise InputError(f"{where} is a {type(value).__name__}, not {'an object' if typ is dict else 'a list'}")
    return value


def _csv(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def injected_names(annotations: dict[str, Any], status_key: str) -> tuple[list[str], str | None, str | None]:
    """Read the status annotation: (names injected, previous hash, warning if unreadable)."""
    raw = annotations.get(status_key)
    if raw is None:
        return [], None, None
    try:
        status = orjson.loads(raw) if isinstance(raw, str) else None
        names = status.get("injected") if isinstance(status, dict) else None
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            h = status.get("hash") if isinstance(status, dict) else None
            return list(names), h if isinstance(h, str) else None, None
    except orjson.JSONDecodeError:
        pass
    return [], None, f"annotation {status_key} is not readable and was ignored"


def inject(pod: Pod, namespace: str, configs: ConfigSet) -> InjectionResult:
    """Inject the configs this pod should get. Never modifies ``pod``.

    Raises :class:`InjectionError` when a template fails for this pod, and
    :class:`InputError` when ``pod`` is not a pod (no ``spec.containers`` list).
    """
    if not isinstance(pod, dict):
        raise InputError("the object is not a mapping")
    meta = _field(pod, "metadata", dict, "metadata")
    annotations = _field(meta, "annotations", dict, "metadata.annotations")
    labels = _field(meta, "labels", dict, "metadata.labels")

    if MIRROR_ANNOTATION in annotations:
        return _skip(pod, configs, MIRROR_POD, "mirror pods (static pods) are managed by the kubelet")

    inject_key = configs.inject_key
    inject_value = annotations.get(inject_key)
    for src, value in (("annotation", inject_value), ("label", labels.get(inject_key))):
        if isinstance(value, str) and value.strip().lower() == "false":
            return _skip(pod, configs, OPTED_OUT, f"the pod opted out with the {src} {inject_key}=false")

    requested = [n for n in _csv(inject_value) if n.lower() != "true"]
    excluded = set(_csv(annotations.get(configs.exclude_key)))
    already, previous_hash, status_warning = injected_names(annotations, configs.status_key)
    warnings: list[str] = [status_warning] if status_warning else []
    decisions: list[ConfigDecision] = []

    # Candidates in order: defaults as loaded, then requested ones as the annotation names them.
    candidates: list[tuple[SidecarConfig, bool]] = []
    for c in configs.defaults:
        if c.name in excluded:
            decisions.append(ConfigDecision(c.name, EXCLUDED, f"excluded by the annotation {configs.exclude_key}"))
            if c.name in requested:
                warnings.append(f"config {c.name!r} is both requested and excluded; excluded wins")
        else:
            candidates.append((c, c.name in requested))
    seen = set(configs.default_names)
    for name in requested:
        if name in seen:
            continue
        seen.add(name)
        cfg = configs.by_name.get(name)
        if cfg is None:
            msg = f"config {name!r} requested by {configs.inject_key} does not exist"
            decisions.append(ConfigDecision(name, UNKNOWN_CONFIG, msg, requested=True))
            warnings.append(msg)
        elif name in excluded:
            decisions.append(ConfigDecision(name, EXCLUDED, f"excluded by the annotation {configs.exclude_key}"))
            warnings.append(f"config {name!r} is both requested and excluded; excluded wins")
        else:
            candidates.append((cfg, True))
    not_requested = f"not injected by default and not named in {configs.inject_key}"
    for c in configs.optional:
        if c.name not in seen:
            decisions.append(ConfigDecision(c.name, NOT_REQUESTED, not_requested))
    if excluded:
        for name in sorted(excluded - set(configs.by_name)):
            warnings.append(f"config {name!r} named in {configs.exclude_key} does not exist")

    eligible: list[tuple[SidecarConfig, bool]] = []
    for c, req in candidates:
        if c.name in already:
            decisions.append(ConfigDecision(c.name, ALREADY_INJECTED, "already injected (status annotation)", req))
        elif c.namespaces and namespace not in c.namespaces:
            msg = f"namespace {namespace!r} is not among the config's namespaces ({c.namespaces_text})"
            decisions.append(ConfigDecision(c.name, NAMESPACE_NOT_ALLOWED, msg, req))
            if req:
                warnings.append(f"requested config {c.name!r} not injected: {msg}")
        else:
            eligible.append((c, req))

    context: dict[str, Any] | None = None
    if any(c.has_templates for c, _ in eligible):
        # Templates see the pod as it came in (not what earlier configs added).
        context = {"pod": pod, "namespace": namespace, "labels": labels, "annotations": annotations}
    chosen = _choose(eligible, labels, context)
    selected = [(c, req) for c, req in eligible if c.name in chosen]
    for c, req in eligible:
        if c.name not in chosen:
            msg = f"the pod's labels do not match the config's selector {c.selector_text}"
            decisions.append(ConfigDecision(c.name, SELECTOR_MISMATCH, msg, req))
            if req:
                warnings.append(f"requested config {c.name!r} not injected: {msg}")

    if not selected:
        done = any(d.reason == ALREADY_INJECTED for d in decisions)
        reason = ALREADY_INJECTED if done else NOTHING_TO_INJECT
        return InjectionResult(pod, [], _ordered(decisions, configs), tuple(warnings), reason)
    acc = _Injection(pod, configs, context, decisions, warnings)
    for c, req in selected:
        acc.add(c, req)
    return acc.finish(already, previous_hash)


def _choose(
    eligible: list[tuple[SidecarConfig, bool]], labels: dict[str, Any], context: dict[str, Any] | None
) -> set[str]:
    """The configs whose selectors match the pod's labels *as injection leaves them*.

    A config may add a label another config's selector wants, before or after it in order.
    Judging against the original labels alone would inject that other config on the next
    invocation (reinvocation, or ``inject`` run twice), breaking idempotence. So iterate to a
    fixed point: every config chosen matches, and every one left out does not match the final
    labels, which is exactly what a second invocation sees. Without selectors that fail, or
    labels added, this is a single pass.
    """
    chosen: set[str] = set()
    added: dict[str, Any] = {}
    while True:
        labels_now = {**added, **labels} if added else labels
        new = [
            c for c, _ in eligible
            if c.name not in chosen and (c.selector is None or c.selector.matches(labels_now))
        ]
        if not new:
            return chosen
        chosen.update(c.name for c in new)
        if len(chosen) == len(eligible) or not any(c.labels.static for c in new):
            # All chosen, or nothing chosen in this pass adds a label (so no selector can
            # start matching): done.
            return chosen
        # Labels as the injection will merge them: the pod's win, then earlier configs'.
        added = {}
        for c, _ in eligible:
            if c.name in chosen:
                for k, v in c.labels.render(context, copy=False).items():
                    added.setdefault(k, v)


def _skip(pod: Pod, configs: ConfigSet, reason: str, message: str) -> InjectionResult:
    decisions = tuple(ConfigDecision(c.name, reason, message) for c in configs.configs)
    return InjectionResult(pod, [], decisions, (), reason)


def _ordered(decisions: list[ConfigDecision], configs: ConfigSet) -> tuple[ConfigDecision, ...]:
    """Decisions in load order, then unknown names, for stable output."""
    if len(decisions) < 2:
        return tuple(decisions)
    order, last = configs.order, len(configs.order)
    return tuple(sorted(decisions, key=lambda d: order.get(d.config, last)))


def _names(items: Any) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}


class _Injection:
    """Accumulates what the selected configs add, then builds the patch in one pass."""

    def __init__(
        self,
        pod: Pod,
        configs: ConfigSet,
        context: dict[str, Any] | None,
        decisions: list[ConfigDecision],
        warnings: list[str],
    ) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
            raise InputError("the pod has no spec.containers list")
        for key in ("initContainers", "volumes", "imagePullSecrets"):
            _field(spec, key, list, f"spec.{key}")
        for i, c in enumerate(spec["containers"]):
            if not isinstance(c, dict):
                raise InputError(f"spec.containers[{i}] is not an object")
            _field(c, "volumeMounts", list, f"spec.containers[{i}].volumeMounts")
            _field(c, "env", list, f"spec.containers[{i}].env")
        meta = as_dict(pod.get("metadata"))
        self.pod = pod
        self.configs = configs
        self.spec: dict[str, Any] = spec
        self.labels = as_dict(meta.get("labels"))
        self.annotations = as_dict(meta.get("annotations"))
        self.decisions = decisions
        self.warnings = warnings
        self.context = context
        self.container_names = _names(spec["containers"]) | _names(spec.get("initContainers"))
        self.volume_names = _names(spec.get("volumes"))
        self.secret_names = _names(spec.get("imagePullSecrets"))
        self.add_labels: dict[str, str] = {}
        self.add_annotations: dict[str, str] = {}
        self.new_inits: list[Any] = []
        self.new_containers: list[Any] = []
        self.new_volumes: list[Any] = []
        self.new_secrets: list[Any] = []
        self.mounts: list[Any] = []
        self.env: list[Any] = []
        self.digests: list[tuple[str, str]] = []
        self.injected: list[str] = []

    def add(self, cfg: SidecarConfig, requested: bool) -> None:
        ctx = self.context
        # Labels, annotations, mounts and env are only read here (copied entry by entry where
        # they land in the pod); containers, volumes and secrets go into the patch as they are.
        r_labels = cfg.labels.render(ctx, copy=False)
        r_annotations = cfg.annotations.render(ctx, copy=False)
        r_inits = cfg.init_containers.render(ctx)
        r_containers = cfg.containers.render(ctx)
        r_volumes = cfg.volumes.render(ctx)
        r_mounts = cfg.volume_mounts.render(ctx, copy=False)
        r_env = cfg.env.render(ctx, copy=False)
        r_secrets = cfg.image_pull_secrets.render(ctx)
        conflicts: list[str] = []
        for k, v in r_labels.items():
            if k not in self.labels and k not in self.add_labels:
                self.add_labels[k] = v
        own = self.configs.prefix + "/"
        for k, v in r_annotations.items():
            if k not in self.annotations and k not in self.add_annotations and not k.startswith(own):
                self.add_annotations[k] = v
        for kind, items, target in (
            ("init container", r_inits, self.new_inits),
            ("container", r_containers, self.new_inits if cfg.native_sidecar else self.new_containers),
        ):
            for item in items:
                if item["name"] in self.container_names:
                    conflicts.append(f"{kind} {item['name']}")
                    continue
                self.container_names.add(item["name"])
                target.append(item)
        for vol in r_volumes:
            if vol["name"] in self.volume_names:
                conflicts.append(f"volume {vol['name']}")
                continue
            self.volume_names.add(vol["name"])
            self.new_volumes.append(vol)
        for sec in r_secrets:
            if sec["name"] not in self.secret_names:
                self.secret_names.add(sec["name"])
                self.new_secrets.append(sec)
        self.mounts.extend(r_mounts)
        self.env.extend(r_env)
        if cfg.static_digest:
            self.digests.append((cfg.name, cfg.static_digest))
        else:
            self.digests.append((cfg.name, content_digest({
                "labels": r_labels, "annotations": r_annotations, "initContainers": r_inits,
                "containers": r_containers, "volumes": r_volumes, "volumeMounts": r_mounts,
                "env": r_env, "imagePullSecrets": r_secrets,
            })))
        for c in conflicts:
            self.warnings.append(f"config {cfg.name!r}: the pod already has {c}; kept the pod's own")
        msg = ("requested by the pod's annotation" if requested else "injected by default") + (
            f"; kept the pod's own {', '.join(conflicts)}" if conflicts else ""
        )
        self.decisions.append(ConfigDecision(cfg.name, INJECTED, msg, requested, tuple(conflicts)))
        self.injected.append(cfg.name)

    def finish(self, already: list[str], previous_hash: str | None) -> InjectionResult:
        b = PatchBuilder(self.pod)
        if not isinstance(self.pod.get("metadata"), dict):
            b.set_key((), "metadata", {})
        app_containers: list[Any] = self.spec["containers"]
        add_annotations = dict(self.add_annotations)
        if self.new_containers and DEFAULT_CONTAINER_ANNOTATION not in self.annotations:
            # Sidecars come after the app: keep `kubectl logs`/`exec` pointed at the app.
            first = app_containers[0] if app_containers else None
            if isinstance(first, dict) and isinstance(first.get("name"), str):
                add_annotations[DEFAULT_CONTAINER_ANNOTATION] = first["name"]
        add_annotations[self.configs.status_key] = _status(already + self.injected, self.digests, previous_hash)
        b.merge_map(("metadata",), "labels", self.add_labels)
        b.merge_map(("metadata",), "annotations", add_annotations)
        # Injected init containers (each config's init containers, then its native sidecars) go
        # before the pod's own, so the pod's init containers can rely on a native sidecar.
        b.insert_items(("spec",), "initContainers", 0, self.new_inits)
        b.insert_items(("spec",), "containers", -1, self.new_containers)
        b.insert_items(("spec",), "volumes", -1, self.new_volumes)
        b.insert_items(("spec",), "imagePullSecrets", -1, self.new_secrets)
        if self.mounts or self.env:
            for i, c in enumerate(app_containers):
                if isinstance(c, dict):
                    _add_to_container(b, i, c, self.mounts, self.env)
        decisions = _ordered(self.decisions, self.configs)
        return InjectionResult(b.root, b.ops, decisions, tuple(self.warnings), "", tuple(self.injected))


def _add_to_container(b: PatchBuilder, index: int, c: dict[str, Any], mounts: list[Any], env: list[Any]) -> None:
    """Add mounts and env a regular app container lacks (by mountPath / name)."""
    have_paths = {m.get("mountPath") for m in c.get("volumeMounts") or [] if isinstance(m, dict)}
    have_env = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
    add_mounts = []
    for m in mounts:
        if m["mountPath"] not in have_paths:
            have_paths.add(m["mountPath"])
            add_mounts.append(dict(m))
    add_env = []
    for e in env:
        if e["name"] not in have_env:
            have_env.add(e["name"])
            add_env.append(dict(e))
    path = ("spec", "containers", index)
    b.insert_items(path, "volumeMounts", -1, add_mounts)
    b.insert_items(path, "env", -1, add_env)


def _status(names: list[str], digests: list[tuple[str, str]], previous_hash: str | None) -> str:
    """The status annotation: the configs injected, and a hash of what this injection added.

    The hash covers each injected config's rendered content (see ``content_digest``), in
    order, so a reader that re-renders the same configs for the pod can tell whether its
    sidecars are current. When earlier configs were injected before, their hash is chained in.
    For static configs the same few annotations recur on every pod: they are memoised.
    """
    key = (tuple(names), tuple(digests), previous_hash)
    cached = _STATUS_CACHE.get(key)
    if cached is None:
        payload = orjson.dumps([previous_hash, digests] if previous_hash else digests)
        digest = hashlib.sha256(payload).hexdigest()
        cached = orjson.dumps({"injected": names, "hash": f"sha256:{digest}"}).decode()
        if len(_STATUS_CACHE) >= 1024:  # templated configs give a new key per pod: stay small
            _STATUS_CACHE.clear()
        _STATUS_CACHE[key] = cached
    return cached


_STATUS_CACHE: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...], str | None], str] = {}


__all__ = [
    "ConfigDecision",
    "InjectionResult",
    "inject",
    "injected_names",
]
