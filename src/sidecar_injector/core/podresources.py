"""The apiserver's rules for a container's ``resources`` (resource names, quantities, requests
against limits, extended resources and hugepages, claims) and ``resizePolicy``. Part of
:mod:`sidecar_injector.core.podrules`.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import Any

from sidecar_injector.core.kubenames import (
    Path,
    duplicate,
    forbidden,
    invalid,
    is_qualified_name,
    not_found,
    not_supported,
    required,
)
from sidecar_injector.core.podfields import Out, as_dict, as_list
from sidecar_injector.core.quantity import QUANTITY_FORMAT, ceil_int, parse_quantity, quantity_error

_NEGATIVE = "must be greater than or equal to 0"


_STANDARD_CONTAINER_RESOURCES = frozenset(["cpu", "memory", "ephemeral-storage"])


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    return not _is_native(name) and not name.startswith("requests.") and not is_qualified_name("requests." + name)


def _check_resource_name(name: str, path: Path, out: Out) -> None:
    errors = is_qualified_name(name)
    out.extend(invalid(path, name, m) for m in errors)
    if "/" not in name:
        if not errors and name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            out.append(invalid(path, name, "must be a standard resource for containers"))
    elif not _is_native(name) and not _is_extended(name):
        out.append(invalid(path, name, "doesn't follow extended resource name standard"))


def _check_quantity_value(name: str, raw: Any, value: Decimal, path: Path, out: Out) -> None:
    if value < 0:
        out.append(invalid(path, str(raw).strip(), _NEGATIVE))
    if _is_extended(name) and ceil_int(value * 1000) % 1000:
        out.append(invalid(path, str(raw).strip(), "must be an integer"))
    if name.startswith("hugepages-"):
        page = parse_quantity(name[len("hugepages-") :])
        if page is None or page <= 0 or page % 1 or ceil_int(value) % int(page):
            out.append(
                invalid(path, str(raw).strip(), f"{str(raw).strip()} is not positive integer multiple of {name}")
            )


def check_resources(res: dict[str, Any], claim_names: Collection[str] | None, path: Path, out: Out) -> None:
    limits, requests = as_dict(res.get("limits")), as_dict(res.get("requests"))
    parsed_limits: dict[str, Decimal] = {}
    cpu_or_memory = huge = False
    for section, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            where = (*path, section, name)
            _check_resource_name(name, where, out)
            value = parse_quantity(raw)
            if value is None:
                out.append(invalid(where, raw, quantity_error(raw) or QUANTITY_FORMAT))
                continue
            _check_quantity_value(name, raw, value, where, out)
            cpu_or_memory = cpu_or_memory or name in ("cpu", "memory")
            huge = huge or name.startswith("hugepages-")
            if section == "limits":
                parsed_limits[name] = value
                continue
            limit = parsed_limits.get(name)
            overcommit = _is_native(name) and not name.startswith("hugepages-")
            if name in limits and limit is None:
                continue  # the limit does not parse: already reported
            if limit is not None:
                lim_text = str(limits[name]).strip()
                if value != limit and not overcommit:
                    detail = f"must be equal to {name} limit of {lim_text}"
                    out.append(invalid((*path, "requests", name), str(raw).strip(), detail))
                elif value > limit:
                    detail = f"must be less than or equal to {name} limit of {lim_text}"
                    out.append(invalid((*path, "requests", name), str(raw).strip(), detail))
            elif not overcommit:
                out.append(required((*path, "limits", name), "Limit must be set for non overcommitable resources"))
    if huge and not cpu_or_memory:
        out.append(forbidden(path, "HugePages require cpu or memory"))
    seen: set[str] = set()
    for i, claim in enumerate(as_list(res.get("claims"))):
        claim = as_dict(claim)
        claim_name, request = claim.get("name"), claim.get("request")
        if not claim_name or not isinstance(claim_name, str):
            out.append(required((*path, "claims", i)))
            continue
        key = f"{claim_name}/{request}" if request else claim_name
        if key in seen or claim_name in seen:
            out.append(duplicate((*path, "claims", i), key))
        seen.add(key)
        if claim_names is not None and claim_name not in claim_names:
            names = ", ".join(sorted(claim_names))
            detail = "must be one of the names in pod.spec.resourceClaims" + (
                f": {names}" if names else " which is empty"
            )
            out.append(not_found((*path, "claims", i), claim_name, detail))


def check_resize_policy(policies: list[Any], restartable: bool, pod_restart: str, path: Path, out: Out) -> None:
    seen: set[Any] = set()
    for i, p in enumerate(policies):
        p = as_dict(p)
        resource, policy = p.get("resourceName", ""), p.get("restartPolicy", "")
        if resource in seen:
            out.append(duplicate((*path, i), resource))
        seen.add(resource)
        if not resource:
            out.append(required(path))
        elif resource not in ("cpu", "memory"):
            out.append(not_supported(path, resource, ("cpu", "memory")))
        if not policy:
            out.append(required(path))
        elif policy not in ("NotRequired", "RestartContainer"):
            out.append(not_supported(path, policy, ("NotRequired", "RestartContainer")))
        if pod_restart == "Never" and policy != "NotRequired":
            out.append(invalid(path, policy, "must be 'NotRequired' when pod `restartPolicy` is 'Never'"))
        if not restartable and policy == "RestartContainer":
            detail = "must not be set to 'RestartContainer' for non-sidecar initContainers"
            out.append(invalid((*path, i, "restartPolicy"), policy, detail))
