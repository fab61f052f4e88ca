"""Compiling SidecarConfigs to MutatingAdmissionPolicy (no webhook in the request path).

Pure like :mod:`sidecar_injector.core` (no I/O; enforced by import-linter): a ConfigSet in,
Kubernetes objects (dicts) and the reasons a config stays webhook-only out. See docs/policy.md.
"""

from sidecar_injector.policy.compile import (
    MODES,
    CompiledSet,
    Delivery,
    DeliveryPlan,
    Unsupported,
    compile_set,
    delivery_plan,
    namespace_selector,
    policy_declines,
    unsupported,
)

__all__ = ["MODES", "CompiledSet", "Delivery", "DeliveryPlan", "Unsupported", "compile_set", "delivery_plan",
           "namespace_selector", "policy_declines", "unsupported"]
