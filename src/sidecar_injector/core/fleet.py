"""The fleet view, pure: is a running pod's injection what the current configs would give it?

:func:`classify` takes a pod as the API stores it, its namespace, the current
:class:`ConfigSet` and whether the webhook is called for that namespace at all, and returns a
state per config and one for the pod:

- ``up-to-date``: it carries every config the current configs would inject, with the same
  content (per-config digest in the status annotation equals the one re-rendered now);
- ``stale``: it carries a config whose content has changed since (old and new digest), or an
  injection recorded in the old status format (no per-config digests), which cannot be judged;
- ``missing``: the current configs would inject a config it does not carry (the silent miss:
  created while the webhook was down under ``failurePolicy: Ignore``, or before the config);
- ``unexpected``: it carries a config it would no longer get (deleted, or no longer selected);
- ``opted-out``: the pod (annotation or label ``inject: "false"``, or ``exclude``) declines;
- ``not-selected``: the webhook is not called for its namespace, or no config applies.

The judgement uses the webhook's own core: the pod is brought back to what the webhook saw at
admission (:func:`as_admitted`: what the apiserver, the scheduler and the kubelet add since is
stripped, and what the injection added is removed from the status annotation's record by
:func:`~sidecar_injector.core.uninject.uninject`), then :func:`~sidecar_injector.core.inject.inject`
runs on it with the current configs, and the status annotation it would write is compared
config by config with the pod's (``explain``'s stale detection, applied to a running pod).

Also pure helpers for the cluster side: the owning workload of a pod, the rollout plan, and
the rollout-status judgement of Deployments, StatefulSets and DaemonSets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar_injector.core.build import as_dict
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InjectionError, InputError
from sidecar_injector.core.inject import EXCLUDED, MIRROR_ANNOTATION, OPTED_OUT, inject
from sidecar_injector.core.uninject import UninjectError, read_status, uninject

UP_TO_DATE = "up-to-date"
STALE = "stale"
MISSING = "missing"
UNEXPECTED = "unexpected"
OPTED_OUT_STATE = "opted-out"
NOT_SELECTED = "not-selected"
ERROR = "error"
#: Every state, worst first: a pod's state is the worst of its configs'.
STATES = (ERROR, STALE, MISSING, UNEXPECTED, UP_TO_DATE, OPTED_OUT_STATE, NOT_SELECTED)
#: States that fail ``status`` (exit status 1) and that ``rollout`` acts on.
FAILING = frozenset({STALE, MISSING, ERROR})
OLD_FORMAT = "old status format"

#: Metadata the apiserver sets on a stored object (not there when the webhook saw the pod).
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
                    "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
#: Length of the random suffix the apiserver appends to ``generateName``.
_GENERATED_SUFFIX = 5

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True, slots=True)
class ConfigState:
    config: str
    state: str
    detail: str
    old: str | None = None
    """The digest the pod carries (16 hex), when it carries the config."""
    new: str | None = None
    """The digest the current config renders for it, when it would get the config."""


@dataclass(frozen=True, slots=True)
class PodState:
    state: str
    configs: tuple[ConfigState, ...] = ()
    detail: str = ""

    @property
    def by_config(self) -> dict[str, str]:
        return {c.config: c.state for c in self.configs}


def as_admitted(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the webhook saw it at admission, as far as injection can tell: without the
    stored object's server metadata, ``status``, ``spec.nodeName`` (the scheduler's), and
    without the name the apiserver generated from ``generateName`` (a controller's pod had only
    ``generateName`` when it was admitted, and templates' ``name`` is that). A shallow copy:
    nested values are shared with ``pod`` (the core never modifies its input)."""
    out = {k: v for k, v in pod.items() if k != "status"}
    meta = dict(as_dict(pod.get("metadata")))
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    gen, name = meta.get("generateName"), meta.get("name")
    if isinstance(gen, str) and gen and isinstance(name, str) and name.startswith(gen) \
            and len(name) == len(gen) + _GENERATED_SUFFIX:
        del meta["name"]
    out["metadata"] = meta
    spec = as_dict(pod.get("spec"))
    if "nodeName" in spec:
        out["spec"] = {k: v for k, v in spec.items() if k != "nodeName"}
    return out


def _opted_out(pod: dict[str, Any], configs: ConfigSet) -> str | None:
    meta = as_dict(pod.get("metadata"))
    for src, values in (("annotation", as_dict(meta.get("annotations"))), ("label", as_dict(meta.get("labels")))):
        v = values.get(configs.inject_key)
        if isinstance(v, str) and v.strip().lower() == "false":
            return f"the pod opted out with the {src} {configs.inject_key}=false"
    return None


def _worst(states: Iterable[str]) -> str:
    seen = set(states)
    return next((s for s in STATES if s in seen), NOT_SELECTED)


def classify(pod: dict[str, Any], namespace: str, configs: ConfigSet, *, namespace_selected: bool = True,
             selection_note: str = "") -> PodState:
    """The state of one running pod, per config and overall. ``configs`` is the cluster set
    (the namespace's own set is picked here); ``namespace_selected``: the webhook's
    ``namespaceSelector`` matches the pod's namespace."""
    cfgs = configs.for_namespace(namespace)
    meta = as_dict(pod.get("metadata"))
    if MIRROR_ANNOTATION in as_dict(meta.get("annotations")):
        return PodState(NOT_SELECTED, (), "mirror pod (static pod): managed by the kubelet, never admitted")
    if not namespace_selected:
        return PodState(NOT_SELECTED, (), selection_note or
                        f"the webhook is not called for namespace {namespace} (its namespaceSelector)")
    seen = as_admitted(pod)
    try:
        status = read_status(seen, cfgs.status_key)
    except UninjectError as e:
        return PodState(STALE, (), str(e))
    old: dict[str, str] = {}
    base = seen
    if status is not None:
        names = [str(n) for n in status.get("injected") or []]
        digests = status.get("digests")
        unrecorded = status.get("unrecorded") if isinstance(status.get("unrecorded"), list) else []
        if not isinstance(digests, dict) or "added" not in status or unrecorded:
            which = [str(n) for n in unrecorded] if unrecorded and isinstance(digests, dict) else names
            states = tuple(ConfigState(n, STALE, OLD_FORMAT) for n in which)
            return PodState(STALE, states, f"{OLD_FORMAT}: injected ({', '.join(which)}) by an earlier "
                            "sidecar-injector without per-config digests; recreate it to judge it")
        old = {n: str(digests.get(n) or "") for n in names}
        try:
            u = uninject(seen, cfgs.status_key)
        except UninjectError as e:
            return PodState(STALE, tuple(ConfigState(n, STALE, str(e)) for n in names), f"{OLD_FORMAT}: {e}")
        assert u is not None
        base = u.pod
    try:
        fresh = inject(base, namespace, cfgs)
    except (InjectionError, InputError) as e:
        return PodState(ERROR, tuple(ConfigState(n, ERROR, str(e), old[n]) for n in old),
                        f"the current configs fail for this pod (the webhook would answer an error): {e}")
    new: dict[str, str] = {}
    if fresh.injected:
        now = read_status(fresh.pod, cfgs.status_key) or {}
        now_digests = as_dict(now.get("digests"))
        new = {n: str(now_digests.get(n) or "") for n in fresh.injected}
    decisions = {d.config: d for d in fresh.decisions}
    out: list[ConfigState] = []
    for n, digest in new.items():
        if n not in old:
            out.append(ConfigState(n, MISSING, f"config {n} missing: the current configs inject it, the pod does "
                                   "not carry it", None, digest))
        elif old[n] != digest:
            out.append(ConfigState(n, STALE, f"config {n} changed: the pod carries {old[n] or '(none)'}, "
                                   f"the current config gives {digest}", old[n], digest))
        else:
            out.append(ConfigState(n, UP_TO_DATE, "as the current config gives it", old[n], digest))
    for n, digest in old.items():
        if n in new:
            continue
        d = decisions.get(n)
        if n not in cfgs.by_name:
            why = f"config {n} no longer exists"
        elif d is not None:
            why = f"config {n} no longer applies: {d.reason}: {d.message}"
        else:
            why = f"config {n} no longer applies"
        out.append(ConfigState(n, UNEXPECTED, why, digest, None))
    for d in fresh.decisions:
        if d.reason == EXCLUDED and d.config not in old and d.config not in new:
            out.append(ConfigState(d.config, OPTED_OUT_STATE, d.message))
    order = cfgs.order
    out.sort(key=lambda c: (order.get(c.config, len(order)), c.config))
    if not out:
        opted = _opted_out(seen, cfgs) if fresh.skip_reason == OPTED_OUT else None
        if opted:
            return PodState(OPTED_OUT_STATE, (), opted)
        return PodState(NOT_SELECTED, (), f"no config applies to it ({fresh.skip_reason or 'nothing to inject'})")
    state = _worst(c.state for c in out)
    detail = "; ".join(c.detail for c in out if c.state == state)
    return PodState(state, tuple(out), detail)


def summary(states: Iterable[str]) -> dict[str, int]:
    """Counts per state, every state present (zero included), in :data:`STATES` order."""
    counts = dict.fromkeys(STATES, 0)
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return counts


# ---- owners -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """A workload that owns pods; ``kind`` ``Pod`` for a bare pod (its own name)."""

    namespace: str
    kind: str
    name: str


def controller_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, name)`` of the object's controlling owner reference, if any."""
    for ref in as_dict(obj.get("metadata")).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") and ref.get("kind") and ref.get("name"):
            return str(ref["kind"]), str(ref["name"])
    return None


def owner_of(pod: dict[str, Any], parents: Mapping[tuple[str, str, str], dict[str, Any]]) -> Owner:
    """The top workload owning ``pod``: Pod → ReplicaSet → Deployment, Job → CronJob,
    StatefulSet, DaemonSet... ``parents`` maps ``(namespace, kind, name)`` to the intermediate
    objects (ReplicaSets, Jobs) so their own owner can be followed; an owner not in it is the top."""
    meta = as_dict(pod.get("metadata"))
    ns = str(meta.get("namespace") or "")
    ref = controller_of(pod)
    if ref is None:
        return Owner(ns, "Pod", str(meta.get("name") or ""))
    kind, name = ref
    for _ in range(4):  # ReplicaSet -> Deployment, Job -> CronJob: two levels at most in practice
        parent = parents.get((ns, kind, name))
        up = controller_of(parent) if parent is not None else None
        if up is None:
            break
        kind, name = up
    return Owner(ns, kind, name)


#: Kinds ``rollout`` restarts (``kubectl rollout restart``'s).
RESTARTABLE = ("DaemonSet", "Deployment", "StatefulSet")


@dataclass(frozen=True, slots=True)
class Plan:
    restart: tuple[Owner, ...]
    """In stable order: namespace, kind, name."""
    skipped: tuple[tuple[Owner, str], ...] = field(default=())
    """Workloads not restarted, with why and (bare pods) what to run instead."""


def plan_rollout(owners: Iterable[Owner], opted_out: Iterable[Owner] = (), status_key: str = "") -> Plan:
    """Which of ``owners`` (of the selected pods) to restart, in order, and which are left and why.
    ``opted_out``: workloads whose own object carries ``inject: "false"``."""
    declined = set(opted_out)
    restart: list[Owner] = []
    skipped: list[tuple[Owner, str]] = []
    for o in sorted(set(owners)):
        if o in declined:
            skipped.append((o, "the workload itself carries the inject=false opt-out: not touched"))
        elif o.kind in RESTARTABLE:
            restart.append(o)
        elif o.kind == "Pod":
            skipped.append((o, "a bare pod (no controller): recreate it with "
                            f"`kubectl -n {o.namespace} get pod {o.name} -o yaml | sidecar-injector uninject -f - "
                            "| kubectl replace --force -f -`"))
        elif o.kind in ("Job", "CronJob"):
            skipped.append((o, "runs to completion: its next run gets the current sidecars; not restarted"))
        else:
            skipped.append((o, f"{o.kind} is not a kind rollout restarts (Deployment, StatefulSet, DaemonSet)"))
    return Plan(tuple(restart), tuple(skipped))


def restart_patch(timestamp: str) -> dict[str, Any]:
    """The merge patch ``kubectl rollout restart`` sends."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: timestamp}}}}}


def rollout_status(kind: str, obj: dict[str, Any]) -> tuple[bool, str]:
    """``kubectl rollout status``'s judgement: (done, message) for a Deployment, StatefulSet or
    DaemonSet as the API returns it. A Deployment that failed for good (progress deadline
    exceeded) is reported by :func:`rollout_failed`."""
    meta, spec, st = as_dict(obj.get("metadata")), as_dict(obj.get("spec")), as_dict(obj.get("status"))
    gen, observed = int(meta.get("generation") or 0), int(st.get("observedGeneration") or 0)
    if observed < gen:
        return False, "waiting for the controller to observe the change"
    if kind == "Deployment":
        want = int(spec.get("replicas", 1))
        updated, total = int(st.get("updatedReplicas") or 0), int(st.get("replicas") or 0)
        available = int(st.get("availableReplicas") or 0)
        if updated < want:
            return False, f"{updated} of {want} new replicas updated"
        if total > updated:
            return False, f"{total - updated} old replicas pending termination"
        if available < updated:
            return False, f"{available} of {updated} updated replicas available"
        return True, f"{updated} of {want} updated replicas available"
    if kind == "StatefulSet":
        want = int(spec.get("replicas", 1))
        ready, updated = int(st.get("readyReplicas") or 0), int(st.get("updatedReplicas") or 0)
        strategy = as_dict(spec.get("updateStrategy"))
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return True, "updateStrategy OnDelete: pods are replaced when deleted"
        if ready < want:
            return False, f"{ready} of {want} replicas ready"
        partition = int(as_dict(strategy.get("rollingUpdate")).get("partition") or 0)
        if updated < want - partition:
            return False, f"{updated} of {want - partition} replicas updated"
        if partition == 0 and st.get("currentRevision") != st.get("updateRevision"):
            return False, "waiting for the update to finish (currentRevision != updateRevision)"
        return True, f"{ready} of {want} replicas ready"
    if kind == "DaemonSet":
        desired = int(st.get("desiredNumberScheduled") or 0)
        updated, available = int(st.get("updatedNumberScheduled") or 0), int(st.get("numberAvailable") or 0)
        if updated < desired:
            return False, f"{updated} of {desired} updated pods scheduled"
        if available < desired:
            return False, f"{available} of {desired} updated pods available"
        return True, f"{available} of {desired} pods available"
    return True, f"{kind} has no rollout status"


def rollout_failed(kind: str, obj: dict[str, Any]) -> str | None:
    """Why a rollout has failed for good (a Deployment past its progress deadline), or ``None``."""
    if kind != "Deployment":
        return None
    for c in as_dict(obj.get("status")).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return f"progress deadline exceeded: {c.get('message') or ''}".strip()
    return None
