"""A ConfigSet -> one MutatingAdmissionPolicy (JSONPatch, CEL) and its binding: the entry point.

One policy for the ordered group of configs that compile, because the apiserver runs
policies in no fixed order while the webhook's result depends on config order (init
containers, sidecars, the ``injected`` list, which config's label wins): the CEL computes
each config's place (defaults in load order, then the requested ones in the order the
pod's annotation names them) and builds every list in that order, in one pass, exactly
once (a match condition on the status annotation makes it idempotent under reinvocation).

What the webhook does and CEL in Kubernetes 1.37 cannot is refused per config, in one line
naming the field and the reason (:func:`unsupported`): such configs stay webhook-only.
Pods whose injection the policy cannot reproduce (a pod declaring a container named like a
sidecar, merged field by field by the webhook; a pod arriving with a status annotation,
whose hash chain needs sha256) are not matched by the policy at all: see docs/policy.md.

The status annotation is computed with the core's own ``status_annotation`` at compile time for every
possible ordered set of injected configs (a CEL map from the names to the constant head),
and the pod-dependent ``added`` record is built in CEL.

This module holds the policy and binding objects, their match conditions and
:func:`policy_declines`, which says the same of one pod; the parts, each in its own module:
:mod:`~sidecar_injector.policy.refusals` (what compiles), :mod:`~sidecar_injector.policy.generate`
(the variables and the mutation), :mod:`~sidecar_injector.policy.status` (the status table),
:mod:`~sidecar_injector.policy.celtext` (CEL text) and :mod:`~sidecar_injector.policy.delivery`
(install modes, the hybrid split). Their public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.core.inject import MIRROR_ANNOTATION
from sidecar_injector.policy.celtext import lit
from sidecar_injector.policy.delivery import MODES, Delivery, DeliveryPlan, delivery_plan
from sidecar_injector.policy.generate import Generator, V
from sidecar_injector.policy.refusals import Unsupported, unsupported
from sidecar_injector.policy.status import MAX_SELECTIONS, selections
from sidecar_injector.policy.templates import cel_string

__all__ = ["API_VERSION", "ENABLE_LABEL_VALUE", "MAX_SELECTIONS", "MODES", "SYSTEM_NAMESPACES", "CompiledSet",
           "Delivery", "DeliveryPlan", "Unsupported", "V", "compile_set", "delivery_plan", "lit", "namespace_selector",
           "policy_declines", "unsupported"]

API_VERSION = "admissionregistration.k8s.io/v1"
ENABLE_LABEL_VALUE = "enabled"
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class CompiledSet:
    """The policy and binding for the configs that compile (None when none does)."""

    policy: dict[str, Any] | None
    binding: dict[str, Any] | None
    compiled: tuple[str, ...]
    unsupported: tuple[Unsupported, ...]
    templated: tuple[str, ...] = ()
    """Compiled configs with templates: their status hash cannot be the webhook's (no sha256 in CEL)."""
    sidecar_names: tuple[str, ...] = field(default=())

    def objects(self) -> list[dict[str, Any]]:
        return [o for o in (self.policy, self.binding) if o is not None]


def namespace_selector(prefix: str, own_namespace: str | None = None) -> dict[str, Any]:
    """The webhook's: namespaces labelled ``<prefix>/injection: enabled``, never the system ones."""
    return {"matchExpressions": [
        {"key": f"{prefix}/injection", "operator": "In", "values": [ENABLE_LABEL_VALUE]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": [*SYSTEM_NAMESPACES, *([own_namespace] if own_namespace else [])]},
    ]}


def compile_set(
    configs: ConfigSet,
    *,
    name: str = "sidecar-injector",
    selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    only: Collection[str] | None = None,
) -> CompiledSet:
    """The policy and binding for every config of ``configs`` that compiles (an ordered group);
    ``only``: for those of these names only (the policy part of a hybrid install)."""
    problems: list[Unsupported] = []
    ok: list[SidecarConfig] = []
    for c in configs.configs:
        why = unsupported(c, configs)
        problems += why
        if not why and (only is None or c.name in only):
            ok.append(c)
    if not ok:
        return CompiledSet(None, None, (), tuple(problems))
    try:
        selections(ok)
    except OverflowError:
        return CompiledSet(None, None, (), (*problems, *(
            Unsupported(c.name, "spec.injectByDefault", f"more than {MAX_SELECTIONS} ordered sets of configs a pod "
                        "may get: the status table would be too large") for c in ok)))
    gen = Generator(configs, ok)
    variables, expression = gen.build()
    sidecars = sorted({x["name"] for p in gen.parts for k in ("initContainers", "containers") for x in p[k]})
    status_key = cel_string(configs.status_key)
    conditions = [
        {"name": "not-a-mirror-pod",
         "expression": f"!object.metadata.?annotations[{cel_string(MIRROR_ANNOTATION)}].hasValue()"},
        {"name": "not-opted-out",
         "expression": " && ".join(
             f"object.metadata.?{m}[{cel_string(configs.inject_key)}].orValue('').trim().lowerAscii() != 'false'"
             for m in ("annotations", "labels"))},
        # Idempotence, and the case CEL cannot hash (a pod injected before): never twice.
        {"name": "not-injected-yet", "expression": f"!object.metadata.?annotations[{status_key}].hasValue()"},
    ]
    if sidecars:
        names = lit(sidecars)
        conditions.append({
            "name": "declares-no-sidecar",  # the webhook merges such a container field by field
            "expression": f"!object.spec.containers.exists(c, c.name in {names}) && "
                          f"!object.spec.?initContainers.orValue([]).exists(c, c.name in {names})"})
    templated = tuple(c.name for c in ok if c.has_templates)
    policy = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "annotations": {f"{configs.prefix}/configs": ",".join(c.name for c in ok)}},
        "spec": {
            "failurePolicy": failure_policy,
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
            "matchConditions": conditions,
            "variables": variables,
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}],
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "matchResources": {
                "namespaceSelector": selector if selector is not None else namespace_selector(configs.prefix),
                "objectSelector": {"matchExpressions": [
                    {"key": configs.inject_key, "operator": "NotIn", "values": ["false"]}]},
            },
        },
    }
    return CompiledSet(policy, binding, tuple(c.name for c in ok), tuple(problems), templated, tuple(sidecars))


def policy_declines(pod: Any, configs: ConfigSet, sidecars: Collection[str]) -> str:
    """Why the compiled policy leaves this pod alone by design ("" when it does not): see the
    match conditions ``not-injected-yet`` and ``declares-no-sidecar`` of :func:`compile_set`."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(ann, dict) and configs.status_key in ann:
        return ("it arrives with the status annotation (injected before): the policy never touches such a pod "
                "(CEL has no sha256 to chain the hash); the webhook injects what is missing")
    spec = pod.get("spec") if isinstance(pod, dict) else None
    for key in ("initContainers", "containers"):
        for c in (spec.get(key) if isinstance(spec, dict) else None) or []:
            if isinstance(c, dict) and c.get("name") in sidecars:
                return (f"it declares a container named {c['name']!r} like a sidecar: the webhook merges it field "
                        "by field, which CEL cannot; the policy leaves the pod alone")
    return ""
