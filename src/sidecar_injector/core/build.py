"""Building one pod's patch from the configs :func:`~sidecar_injector.core.inject.inject` chose.

Separate from the decisions (which configs, and why) because this part has its own rules:

- **Order**: each config's init containers, then its native sidecars, before the pod's own
  init containers; regular sidecars after the app containers.
- **A pod-declared container with a sidecar's name is merged over the injected one**: the
  pod's fields win; ``env`` merges by name, ``volumeMounts`` by ``mountPath``, ``ports`` by
  ``containerPort``. A pod can override just the image or the resources of a sidecar this
  way. Only ``add`` operations are emitted: the pod's own values are never replaced. Fields
  the pod's kind of container does not allow (``restartPolicy`` on a regular container,
  probes on a plain init container) are not merged.
- **Nothing the apiserver would refuse**: what depends on the pod is checked on every
  request (:mod:`~sidecar_injector.core.checks`): rendered template values, mounts, host
  ports, the annotations' size. A failure is an :class:`InjectionError` naming the config
  and the field, which the webhook answers per ``--on-error``: never a pod refused with 422.
- **What was added is recorded** in the status annotation
  (:mod:`~sidecar_injector.core.record`), so ``uninject`` needs no configs.
- **Patch only, for the webhook**: :class:`~sidecar_injector.core.patch.PatchRecorder`
  records the operations without building the mutated pod, which only the offline
  commands read.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sidecar_injector.core import checks
from sidecar_injector.core.config import ConfigSet, SidecarConfig, content_digest
from sidecar_injector.core.errors import InputError
from sidecar_injector.core.patch import PatchBuilder, PatchRecorder
from sidecar_injector.core.record import MERGE_KEYS, Record, status_annotation
from sidecar_injector.core.types import JSONPatchOp, Pod

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
INJECTED = "injected"

#: Fields a plain init container (no ``restartPolicy: Always``) may not have.
_SIDECAR_ONLY = frozenset({"livenessProbe", "readinessProbe", "startupProbe", "lifecycle"})


class ConfigDecision(NamedTuple):
    """What happened to one config for one pod, and why.

    A NamedTuple rather than a frozen dataclass: one is made per loaded config per request,
    and tuple construction is several times cheaper.
    """

    config: str
    reason: str
    """A reason code (see :mod:`~sidecar_injector.core.inject`); ``injected`` when it was."""
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


def field_of(obj: dict[str, Any], key: str, typ: type, where: str) -> Any:
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


def _names(items: Any) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}


def ordered(decisions: list[ConfigDecision], configs: ConfigSet) -> tuple[ConfigDecision, ...]:
    """Decisions in load order, then unknown names, for stable output."""
    if len(decisions) < 2:
        return tuple(decisions)
    order, last = configs.order, len(configs.order)
    return tuple(sorted(decisions, key=lambda d: order.get(d.config, last)))


class _Merge(NamedTuple):
    """A sidecar the pod already declares: its fields are added where the pod's lack them."""

    config: str
    list_key: str
    """``containers`` or ``initContainers``: where the pod declares it."""
    position: int
    item: dict[str, Any]


class Injection:
    """Accumulates what the selected configs add, then builds the patch in one pass."""

    def __init__(
        self,
        pod: Pod,
        configs: ConfigSet,
        context: dict[str, Any] | None,
        decisions: list[ConfigDecision],
        warnings: list[str],
        patch_only: bool = False,
        shape_checked: bool = False,
    ) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
            raise InputError("the pod has no spec.containers list")
        if not shape_checked:
            _check_shape(spec)
        # Where the pod declares each container name (merges go there): init containers first.
        declared: dict[str, tuple[str, int]] = {}
        for key in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(key) or ()):
                name = c.get("name")
                if isinstance(name, str) and name not in declared:
                    declared[name] = (key, i)
        meta = pod.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        self.pod = pod
        self.configs = configs
        self.spec: dict[str, Any] = spec
        labels = meta.get("labels")
        annotations = meta.get("annotations")
        self.labels: dict[str, Any] = labels if isinstance(labels, dict) else {}
        self.annotations: dict[str, Any] = annotations if isinstance(annotations, dict) else {}
        self.decisions = decisions
        self.warnings = warnings
        self.context = context
        self.patch_only = patch_only
        self.declared = declared
        self.container_names = set(declared)
        self.volume_names = _names(spec.get("volumes"))
        self.secret_names = _names(spec.get("imagePullSecrets"))
        self.add_labels: dict[str, str] = {}
        self.add_annotations: dict[str, str] = {}
        self.new_inits: list[Any] = []
        self.new_containers: list[Any] = []
        self.new_volumes: list[Any] = []
        self.new_secrets: list[Any] = []
        self.merges: list[_Merge] = []
        self.mounts: list[tuple[str, Any]] = []
        self.env: list[tuple[str, Any]] = []
        self.digests: list[tuple[str, str]] = []
        self.injected: list[str] = []

    def add(self, cfg: SidecarConfig, requested: bool, as_native: bool = False, note: str = "") -> None:
        """Add one config. ``as_native``: its regular sidecars go in as native ones (a pod that
        runs to completion would never complete with a regular sidecar still running)."""
        ctx = self.context
        # Labels, annotations, mounts and env are only read here (copied entry by entry where
        # they land in the pod); containers, volumes and secrets go into the patch as they are.
        r_labels = cfg.labels.render(ctx, copy=False)
        r_annotations = cfg.annotations.render(ctx, copy=False)
        # Patch only (the webhook): the patch is serialised at once and the config's own
        # values may stand in it; otherwise they land in the mutated pod: copies.
        copy = not self.patch_only
        r_inits = cfg.init_containers.render(ctx, copy=copy)
        r_containers = cfg.containers.render(ctx, copy=copy)
        r_volumes = cfg.volumes.render(ctx, copy=copy)
        r_mounts = cfg.volume_mounts.render(ctx, copy=False)
        r_env = cfg.env.render(ctx, copy=False)
        r_secrets = cfg.image_pull_secrets.render(ctx, copy=copy)
        if cfg.has_templates:
            checks.rendered(cfg, r_labels, r_annotations, r_inits, r_containers, r_volumes, r_mounts, r_env,
                            self.configs.native_sidecars)
        native = cfg.native_sidecar or as_native
        if as_native and not cfg.native_sidecar:
            r_containers_out = [{**c, "restartPolicy": "Always"} for c in r_containers]
        else:
            r_containers_out = r_containers
        conflicts: list[str] = []
        merged: list[str] = []
        if r_labels:
            for k, v in r_labels.items():
                if k not in self.labels and k not in self.add_labels:
                    self.add_labels[k] = v
        if r_annotations:
            own = self.configs.prefix + "/"
            for k, v in r_annotations.items():
                if k not in self.annotations and k not in self.add_annotations and not k.startswith(own):
                    self.add_annotations[k] = v
        for kind, items, target in (
            ("init container", r_inits, self.new_inits),
            ("container", r_containers_out, self.new_inits if native else self.new_containers),
        ):
            for item in items:
                name = item["name"]
                if name in self.container_names:
                    where = self.declared.get(name)
                    if where is not None and not any(m.list_key == where[0] and m.position == where[1]
                                                     for m in self.merges):
                        self.merges.append(_Merge(cfg.name, where[0], where[1], item))
                        merged.append(name)
                    else:
                        conflicts.append(f"{kind} {name}")
                    continue
                self.container_names.add(name)
                target.append(item)
        volume_names = self.volume_names
        for vol in r_volumes:
            if vol["name"] in volume_names:
                conflicts.append(f"volume {vol['name']}")
                continue
            volume_names.add(vol["name"])
            self.new_volumes.append(vol)
        for sec in r_secrets:
            if sec["name"] not in self.secret_names:
                self.secret_names.add(sec["name"])
                self.new_secrets.append(sec)
        if r_mounts:
            self.mounts.extend((cfg.name, m) for m in r_mounts)
        if r_env:
            self.env.extend((cfg.name, e) for e in r_env)
        if cfg.static_digest:
            self.digests.append((cfg.name, cfg.static_digest))
        else:
            self.digests.append((cfg.name, content_digest({
                "labels": r_labels, "annotations": r_annotations, "initContainers": r_inits,
                "containers": r_containers, "volumes": r_volumes, "volumeMounts": r_mounts,
                "env": r_env, "imagePullSecrets": r_secrets,
            })))
        msg = "requested by the pod's annotation" if requested else "injected by default"
        if note or merged or conflicts:
            for c in conflicts:
                self.warnings.append(f"config {cfg.name!r}: the pod already has {c}; kept the pod's own")
            msg += note + (
                f"; merged into the pod's own container {', '.join(merged)} (the pod's fields win)" if merged else ""
            ) + (f"; kept the pod's own {', '.join(conflicts)}" if conflicts else "")
        self.decisions.append(ConfigDecision(cfg.name, INJECTED, msg, requested, tuple(conflicts) if conflicts else ()))
        self.injected.append(cfg.name)

    def finish(self, already: list[str], previous_hash: str | None) -> InjectionResult:
        injected = (*self.new_inits, *self.new_containers, *(m.item for m in self.merges))
        checks.mounts(injected, self.spec["containers"], self.mounts, self.volume_names)
        if self.new_containers:
            checks.host_ports(self.spec, self.new_containers)
        b = PatchRecorder(self.pod) if self.patch_only else PatchBuilder(self.pod)
        rec = Record()
        meta = self.pod.get("metadata")
        if not isinstance(meta, dict):
            if "metadata" in self.pod:
                rec.empty["metadata"] = meta
            b.set_key((), "metadata", {})
        else:
            if not meta:
                rec.empty["metadata"] = {}
            for key in ("labels", "annotations"):
                if key in meta and not meta[key]:
                    rec.empty[f"metadata.{key}"] = meta[key]
        app_containers: list[Any] = self.spec["containers"]
        add_annotations = dict(self.add_annotations)
        if self.new_containers and DEFAULT_CONTAINER_ANNOTATION not in self.annotations:
            # Sidecars come after the app: keep `kubectl logs`/`exec` pointed at the app.
            first = app_containers[0] if app_containers else None
            if isinstance(first, dict) and isinstance(first.get("name"), str):
                add_annotations[DEFAULT_CONTAINER_ANNOTATION] = first["name"]
        rec.labels = list(self.add_labels)
        rec.annotations = list(add_annotations)
        for key, items in (("initContainers", self.new_inits), ("containers", self.new_containers),
                           ("volumes", self.new_volumes), ("imagePullSecrets", self.new_secrets)):
            if items:
                rec.lists[key] = [i["name"] for i in items]
                if key in self.spec and not self.spec[key]:
                    rec.empty[f"spec.{key}"] = self.spec[key]
        plans = []
        for m in self.merges:
            mine = self.spec[m.list_key][m.position]
            plan = _merge_plan(m, mine)
            plans.append((m, mine, plan))
            rec.merged(mine, plan)
        if self.mounts or self.env:
            sidecars = {m.position for m in self.merges if m.list_key == "containers"}
            adds = [(i, c, *self._to_add(c)) for i, c in enumerate(app_containers)
                    if isinstance(c, dict) and i not in sidecars]
            for _, c, mounts, env in adds:
                rec.into_lists(c, "volumeMounts", [m["mountPath"] for m in mounts])
                rec.into_lists(c, "env", [e["name"] for e in env])
        else:
            adds = []
        add_annotations[self.configs.status_key] = status_annotation(
            already + self.injected, self.digests, previous_hash, rec, self.annotations.get(self.configs.status_key)
        )
        checks.annotation_size(self.annotations, add_annotations)
        b.merge_map(("metadata",), "labels", self.add_labels)
        b.merge_map(("metadata",), "annotations", add_annotations)
        # Merges first: they address the pod's containers by their original indices.
        for m, mine, plan in plans:
            _merge_container(b, m, mine, plan)
        # Injected init containers (each config's init containers, then its native sidecars) go
        # before the pod's own, so the pod's init containers can rely on a native sidecar.
        b.insert_items(("spec",), "initContainers", 0, self.new_inits)
        b.insert_items(("spec",), "containers", -1, self.new_containers)
        b.insert_items(("spec",), "volumes", -1, self.new_volumes)
        b.insert_items(("spec",), "imagePullSecrets", -1, self.new_secrets)
        for i, _, mounts, env in adds:
            path = ("spec", "containers", i)
            b.insert_items(path, "volumeMounts", -1, mounts)
            b.insert_items(path, "env", -1, env)
        decisions = ordered(self.decisions, self.configs)
        return InjectionResult(b.root, b.ops, decisions, tuple(self.warnings), "", tuple(self.injected))

    def _to_add(self, c: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """The mounts and env an app container lacks (by mountPath / name); a different one of
        the same path or name is the pod's, kept, with a warning."""
        have_paths = {m.get("mountPath"): m for m in c.get("volumeMounts") or [] if isinstance(m, dict)}
        have_env = {e.get("name"): e for e in c.get("env") or [] if isinstance(e, dict)}
        add_mounts = []
        for cfg_name, m in self.mounts:
            mine = have_paths.get(m["mountPath"])
            if mine is None:
                have_paths[m["mountPath"]] = m
                add_mounts.append(dict(m))
            elif mine.get("name") != m.get("name"):
                self.warnings.append(
                    f"config {cfg_name!r}: container {c.get('name')} already mounts {m['mountPath']!r} "
                    f"(volume {mine.get('name')}); kept the pod's own"
                )
        add_env = []
        for cfg_name, e in self.env:
            mine = have_env.get(e["name"])
            if mine is None:
                have_env[e["name"]] = e
                add_env.append(dict(e))
            elif mine != e:
                self.warnings.append(
                    f"config {cfg_name!r}: container {c.get('name')} already sets env {e['name']}; kept the pod's own"
                )
        return add_mounts, add_env


def _check_shape(spec: dict[str, Any]) -> None:
    """The list fields injection writes into have their types (InputError, naming the field,
    otherwise). The webhook's pods passed :mod:`core.podshape` already, which checks more."""
    for key in ("initContainers", "volumes", "imagePullSecrets"):
        if not isinstance(spec.get(key), (list, type(None))):
            field_of(spec, key, list, f"spec.{key}")  # raises, naming the field
    for key in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(key) or ()):
            if not isinstance(c, dict):
                raise InputError(f"spec.{key}[{i}] is not an object")
            if not isinstance(c.get("volumeMounts"), (list, type(None))):
                field_of(c, "volumeMounts", list, f"spec.{key}[{i}].volumeMounts")
            if not isinstance(c.get("env"), (list, type(None))):
                field_of(c, "env", list, f"spec.{key}[{i}].env")


def _merge_plan(m: _Merge, mine: dict[str, Any]) -> list[tuple[str, Any]]:
    """The sidecar's fields that the pod's own container of that name lacks: ``(key, value)``
    to set, or ``(key, [items])`` to append to a list merged by key (``MERGE_KEYS``)."""
    plan: list[tuple[str, Any]] = []
    restart = mine.get("restartPolicy", m.item.get("restartPolicy") if m.list_key == "initContainers" else None)
    for key, value in m.item.items():
        if key == "restartPolicy" and m.list_key == "containers":
            continue  # a regular container has no restartPolicy
        if key in _SIDECAR_ONLY and m.list_key == "initContainers" and restart != "Always":
            continue  # a plain init container may not have probes or lifecycle hooks
        if key not in mine or mine[key] is None:
            plan.append((key, value))
        elif key in MERGE_KEYS and isinstance(mine[key], list) and isinstance(value, list):
            by = MERGE_KEYS[key]
            have = {i.get(by) for i in mine[key] if isinstance(i, dict)}
            items = [dict(i) for i in value if isinstance(i, dict) and i.get(by) not in have]
            if items:
                plan.append((key, items))
    return plan


def _merge_container(
    b: PatchBuilder | PatchRecorder, m: _Merge, mine: dict[str, Any], plan: list[tuple[str, Any]]
) -> None:
    """Add the sidecar's fields that the pod's own container of that name lacks."""
    path = ("spec", m.list_key, m.position)
    for key, value in plan:
        if key not in mine or mine[key] is None:
            b.set_key(path, key, value)
        else:
            b.insert_items(path, key, -1, value)
