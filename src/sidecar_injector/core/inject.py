"""THE CORE: decide which configs a pod gets, and build the patch that injects them.

:func:`inject` is pure: a pod dict, its namespace and a :class:`ConfigSet` in; an
:class:`InjectionResult` (mutated copy, JSON Patch, per-config decisions, warnings) out.
The webhook, the offline ``inject``/``explain`` commands and the tests all call it.

Idempotence rests on two things: the status annotation lists the configs already injected
(skipped wholesale, whatever the apiserver or another webhook did to the pod since), and
any container or volume the pod already has by name is kept and that one item skipped.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar_injector.core import cel
from sidecar_injector.core.build import (
    DEFAULT_CONTAINER_ANNOTATION,
    INJECTED,
    ConfigDecision,
    Injection,
    InjectionResult,
    as_dict,
    field_of,
    ordered,
)
from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.core.errors import InputError
from sidecar_injector.core.types import Pod

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# Reason codes: stable strings, used in metrics labels, logs, `explain` and tests.
NOT_REQUESTED = "not-requested"
EXCLUDED = "excluded"
SELECTOR_MISMATCH = "selector-mismatch"
NAMESPACE_NOT_ALLOWED = "namespace-not-allowed"
ALREADY_INJECTED = "already-injected"
OPTED_OUT = "opted-out"
UNKNOWN_CONFIG = "unknown-config"
MIRROR_POD = "mirror-pod"
NOTHING_TO_INJECT = "nothing-to-inject"
HOST_NETWORK = "host-network"
RUN_TO_COMPLETION = "run-to-completion"
MATCH_CONDITION = "match-condition"

#: Pod restart policies of pods that run to completion (Jobs, CronJobs, one-off pods).
_RUNS_TO_COMPLETION = frozenset({"Never", "OnFailure"})


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


def inject(
    pod: Pod, namespace: str, configs: ConfigSet, *, patch_only: bool = False, shape_checked: bool = False
) -> InjectionResult:
    """Inject the configs this pod should get. Never modifies ``pod``.

    ``patch_only`` (the webhook): skip building the mutated copy; the result's ``pod`` is then
    ``pod`` itself, and the patch may share values with the configs, so it must be serialised,
    never modified. ``shape_checked``: the pod passed :func:`core.podshape.check` (or is a
    skeleton, whose types are its rules), so the field types need no second look.

    Raises :class:`InjectionError` when a template fails for this pod, and
    :class:`InputError` when ``pod`` is not a pod (no ``spec.containers`` list).
    """
    if not isinstance(pod, dict):
        raise InputError("the object is not a mapping")
    meta = field_of(pod, "metadata", dict, "metadata")
    annotations = field_of(meta, "annotations", dict, "metadata.annotations")
    labels = field_of(meta, "labels", dict, "metadata.labels")

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

    spec = as_dict(pod.get("spec"))
    host_network = spec.get("hostNetwork") is True
    completes = spec.get("restartPolicy") in _RUNS_TO_COMPLETION
    bound: cel.Bound | None = None
    native_for: set[str] = set()
    eligible: list[tuple[SidecarConfig, bool]] = []
    for c, req in candidates:
        skip: tuple[str, str] | None = None
        if c.name in already:
            decisions.append(ConfigDecision(c.name, ALREADY_INJECTED, "already injected (status annotation)", req))
            continue
        if c.namespaces and namespace not in c.namespaces:
            skip = NAMESPACE_NOT_ALLOWED, (
                f"namespace {namespace!r} is not among the config's namespaces ({c.namespaces_text})"
            )
        elif host_network and c.host_network == "skip":
            skip = HOST_NETWORK, (
                "the pod uses the node's network (hostNetwork: true), which the config skips "
                "(spec.hostNetwork: skip; set it to inject to override)"
            )
        elif completes and c.containers.static and c.run_to_completion != "inject":
            mode = c.run_to_completion
            if c.native_sidecar:
                pass  # native sidecars already end with the pod's containers
            elif mode == "native" and configs.native_sidecars:
                native_for.add(c.name)
            else:
                why = ("spec.runToCompletion: skip" if mode == "skip"
                       else "this Kubernetes version has no native sidecars to run them as")
                skip = RUN_TO_COMPLETION, (
                    f"the pod runs to completion (restartPolicy {spec.get('restartPolicy')}) and a regular "
                    f"sidecar would keep it from completing ({why})"
                )
        if skip is None and c.match_conditions:
            if bound is None:
                bound = cel.bind(pod)
            failed = bound.evaluate(c.match_conditions)
            if failed is not None:
                skip = MATCH_CONDITION, f"matchCondition {failed.name!r} is false ({failed.expression})"
        if skip is not None:
            decisions.append(ConfigDecision(c.name, skip[0], skip[1], req))
            if req or skip[0] in (HOST_NETWORK, RUN_TO_COMPLETION):
                warnings.append(f"{'requested ' if req else ''}config {c.name!r} not injected: {skip[1]}")
            continue
        eligible.append((c, req))

    context: dict[str, Any] | None = None
    if any(c.has_templates for c, _ in eligible):
        # Templates see the pod as it came in (not what earlier configs added).
        name = as_dict(pod.get("metadata")).get("name") or as_dict(pod.get("metadata")).get("generateName") or ""
        context = {"pod": pod, "name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
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
        if any(d.reason in (HOST_NETWORK, RUN_TO_COMPLETION, MATCH_CONDITION) for d in decisions) and not done:
            reason = next(d.reason for d in decisions if d.reason in (HOST_NETWORK, RUN_TO_COMPLETION, MATCH_CONDITION))
        return InjectionResult(pod, [], ordered(decisions, configs), tuple(warnings), reason)
    acc = Injection(pod, configs, context, decisions, warnings, patch_only, shape_checked)
    as_native = "; as native sidecars: the pod runs to completion (spec.runToCompletion: native)"
    for c, req in selected:
        native = c.name in native_for
        acc.add(c, req, as_native=native, note=as_native if native else "")
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
    if all(c.selector is None for c, _ in eligible):
        return {c.name for c, _ in eligible}  # no selectors (the common case): all of them
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


__all__ = [
    "DEFAULT_CONTAINER_ANNOTATION",
    "INJECTED",
    "ConfigDecision",
    "InjectionResult",
    "inject",
    "injected_names",
]
