"""Delivery per install mode (manifests --mode, explain): webhook, policy or hybrid, per config.

Which configs the policy may deliver, and the rule splitting a set between the policy and the
webhook in a hybrid install (:func:`delivery_plan`): the apiserver runs the policy first and the
webhook sees its result as the pod's own. Separate from the compiler because it compiles nothing:
it decides which configs the compiler is given (``only``) and what explain says of each, from
the refusals (:mod:`sidecar_injector.policy.refusals`) and the configs' own fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.policy.refusals import Unsupported, static_parts, template_paths, unsupported
from sidecar_injector.policy.status import MAX_SELECTIONS, selections

MODES = ("webhook", "policy", "hybrid")


@dataclass(frozen=True)
class Delivery:
    """How one config reaches pods in each install mode."""

    config: str
    compiles: bool
    webhook_only_reason: str
    """Why the compiler refuses it ("" when it compiles)."""
    hybrid: str
    """``policy`` or ``webhook``: its path in a hybrid install."""
    hybrid_reason: str
    """Why it stays in the webhook in a hybrid install ("" when the policy delivers it)."""

    def modes(self) -> dict[str, dict[str, str]]:
        """Mode -> {"delivery": webhook|policy|none, "reason": ...}, for explain."""
        return {
            "webhook": {"delivery": "webhook", "reason": "every config is delivered by the webhook"},
            "policy": ({"delivery": "policy", "reason": "compiles to the MutatingAdmissionPolicy"} if self.compiles
                       else {"delivery": "none", "reason": f"not delivered: webhook-only: {self.webhook_only_reason}"}),
            "hybrid": ({"delivery": "policy", "reason": "compiles, and the split is safe"} if self.hybrid == "policy"
                       else {"delivery": "webhook", "reason": self.hybrid_reason}),
        }


@dataclass(frozen=True)
class DeliveryPlan:
    deliveries: tuple[Delivery, ...]
    split_problem: str = ""
    """Why a hybrid install puts every config in the webhook although some compile ("" if it does not)."""

    @property
    def policy(self) -> tuple[str, ...]:
        return tuple(d.config for d in self.deliveries if d.hybrid == "policy")

    @property
    def webhook(self) -> tuple[str, ...]:
        return tuple(d.config for d in self.deliveries if d.hybrid == "webhook")

    def of(self, name: str) -> Delivery | None:
        return next((d for d in self.deliveries if d.config == name), None)


_POD_READ = re.compile(r"\b(labels|annotations|pod)\b")


def _templates_of(cfg: SidecarConfig) -> list[str]:
    return [src for key, value in static_parts(cfg).items() for _, src in template_paths(value, (key,))]


def _split_problem(pol: list[SidecarConfig], hook: list[SidecarConfig]) -> str:
    """Why the policy (first in the admission chain) and the webhook (second, seeing the policy's
    result as the pod's own) would not give the webhook-only install's pod ("" when they do)."""
    pparts = {c.name: static_parts(c) for c in pol}
    hparts = {c.name: static_parts(c) for c in hook}
    for h in hook:
        hp = hparts[h.name]
        hnames = {x["name"] for k in ("initContainers", "containers") for x in hp[k]}
        for p in pol:
            pp = pparts[p.name]
            shared = hnames & {x["name"] for k in ("initContainers", "containers") for x in pp[k]}
            if shared:
                return (f"{p.name} (policy) and {h.name} (webhook) both inject a container named "
                        f"{sorted(shared)[0]!r}: the webhook would merge into the policy's")
            if (hp["volumeMounts"] or hp["env"]) and pp["containers"]:
                return (f"{h.name} (webhook) adds volumeMounts/env to the app containers, which would include "
                        f"the sidecars of {p.name} (policy)")
            keys = {r.key for r in p.selector.requirements} if p.selector else set()
            if keys & set(hp["labels"]):
                return (f"the selector of {p.name} (policy) reads label {sorted(keys & set(hp['labels']))[0]!r} "
                        f"that {h.name} (webhook) adds: the policy runs first and cannot see it")
        if h.match_conditions:
            return (f"{h.name} (webhook) has matchConditions, which would see the pod after the policy's "
                    "injection instead of as it came in")
        if any(_POD_READ.search(t) for t in _templates_of(h)):
            return (f"{h.name} (webhook) has templates reading the pod's labels/annotations, which would see "
                    "the policy's additions")
    return ""


def delivery_plan(configs: ConfigSet) -> DeliveryPlan:
    """Per config: does it compile (policy mode), and its path in a hybrid install.

    The hybrid rule: the apiserver runs MutatingAdmissionPolicies before mutating webhooks, so
    the policy's configs come first and the webhook sees their result as the pod's own. That
    gives the webhook-only pod only if, for every pod, every policy config comes before every
    webhook config in the webhook's order (so the policy takes the injectByDefault configs that
    compile and precede, in load order, every webhook-delivered default; a requested config is
    ordered by the pod's annotation, so it stays in the webhook whenever the webhook holds any)
    and nothing the policy adds changes what the webhook decides or adds (:func:`_split_problem`).
    When that fails, every config goes to the webhook.
    """
    why: dict[str, list[Unsupported]] = {c.name: unsupported(c, configs) for c in configs.configs}
    ok = [c for c in configs.configs if not why[c.name]]
    try:
        selections(ok)
    except OverflowError:
        for c in ok:
            why[c.name] = [Unsupported(c.name, "spec.injectByDefault", f"more than {MAX_SELECTIONS} ordered sets "
                                       "of configs a pod may get: the status table would be too large")]
        ok = []
    reason = {c.name: "; ".join(f"{u.field}: {u.reason}" for u in why[c.name]) for c in configs.configs}
    hybrid_why = {c.name: f"webhook-only: {reason[c.name]}" for c in configs.configs if why[c.name]}
    if hybrid_why:
        order = [c.name for c in configs.configs]
        hook_defaults = [c.name for c in configs.configs if c.name in hybrid_why and c.inject_by_default]
        first = min((order.index(n) for n in hook_defaults), default=len(order))
        webhook_only = next(iter(hybrid_why))
        for c in ok:
            if not c.inject_by_default:
                hybrid_why[c.name] = (f"not injectByDefault: ordered by the pod's annotation, also relative to the "
                                      f"webhook's configs (e.g. {webhook_only}), so kept in the webhook")
            elif order.index(c.name) > first:
                hybrid_why[c.name] = (f"comes after the webhook-only default {order[first]} in load order, "
                                      "and the policy runs before the webhook: kept in the webhook")
    pol = [c for c in ok if c.name not in hybrid_why]
    hook = [c for c in configs.configs if c.name in hybrid_why]
    problem = _split_problem(pol, hook) if pol and hook else ""
    if problem:
        for c in pol:
            hybrid_why[c.name] = f"compiles, but the set cannot be split safely: {problem}"
    return DeliveryPlan(tuple(
        Delivery(c.name, not why[c.name], reason[c.name], "webhook" if c.name in hybrid_why else "policy",
                 hybrid_why.get(c.name, ""))
        for c in configs.configs), problem)
