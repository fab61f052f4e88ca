"""The apiserver's rules for a container's ``env`` and ``envFrom`` (relaxed variable names,
exactly one ``valueFrom`` source, the downward API paths and divisors it supports, key
selectors). Part of :mod:`sidecar_injector.core.podrules`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sidecar_injector.core.kubenames import (
    Path,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    not_supported,
    required,
)
from sidecar_injector.core.podfields import Out, as_dict, check_no_backsteps, is_set
from sidecar_injector.core.quantity import QUANTITY_FORMAT, parse_quantity, quantity_error

_ENV_FIELD_PATHS = frozenset(
    [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ]
)
_CONVERTIBLE_FIELD_PATHS = _ENV_FIELD_PATHS | {
    "metadata.annotations",
    "metadata.labels",
    "spec.restartPolicy",
    "spec.schedulerName",
    "status.phase",
}
_RESOURCE_FIELD_PATHS = frozenset(
    [
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
    ]
)
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")


def check_env(env: list[Any], path: Path, out: Out) -> None:
    for i, var in enumerate(env):
        var = as_dict(var)
        where = (*path, i)
        name = var.get("name")
        if name is None or name == "":
            out.append(required((*where, "name")))
        elif isinstance(name, str):
            out.extend(invalid((*where, "name"), name, m) for m in is_env_var_name(name))
        if is_set(var, "valueFrom"):
            _check_value_from(var, as_dict(var["valueFrom"]), (*where, "valueFrom"), out)


def _check_value_from(var: dict[str, Any], vf: dict[str, Any], path: Path, out: Out) -> None:
    sources = [s for s in _ENV_SOURCES if is_set(vf, s)]
    for source in sources:
        ref, where = as_dict(vf[source]), (*path, source)
        if source == "fieldRef":
            _check_field_ref(ref, where, out)
        elif source == "resourceFieldRef":
            _check_resource_field_ref(ref, where, out)
        elif source == "fileKeyRef":
            _check_file_key_ref(ref, where, out)
        else:
            name = ref.get("name", "")
            if isinstance(name, str):
                out.extend(invalid((*where, "name"), name, m) for m in is_dns1123_subdomain(name))
            key = ref.get("key")
            if not key:
                out.append(required((*where, "key")))
            elif isinstance(key, str):
                out.extend(invalid((*where, "key"), key, m) for m in is_config_map_key(key))
    if not sources:
        options = "`fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`"
        out.append(invalid(path, "", f"must specify one of: {options}"))
    elif var.get("value"):
        out.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif len(sources) > 1:
        out.append(invalid(path, "", "may not have more than one field specified at a time"))


def _check_field_ref(ref: dict[str, Any], path: Path, out: Out) -> None:
    version = ref.get("apiVersion") or "v1"
    field_path = ref.get("fieldPath")
    if not isinstance(field_path, str) or not isinstance(version, str):
        if not field_path:
            out.append(required((*path, "fieldPath")))
        return
    if not field_path:
        out.append(required((*path, "fieldPath")))
        return
    base, subscript = field_path, None
    if field_path.endswith("']") and "['" in field_path and not field_path.startswith("['"):
        base, _, subscript = field_path[:-2].partition("['")
    error = None
    if version != "v1":
        error = f"unsupported pod version: {version}"
    elif subscript is not None and base not in ("metadata.annotations", "metadata.labels"):
        error = f"field label does not support subscript: {field_path}"
    elif subscript is None and base not in _CONVERTIBLE_FIELD_PATHS and base != "spec.host":
        error = f"field label not supported: {field_path}"
    if error:
        out.append(invalid((*path, "fieldPath"), field_path, f"error converting fieldPath: {error}"))
    elif subscript is not None:
        key = subscript.lower() if base == "metadata.annotations" else subscript
        out.extend(invalid(path, key, m) for m in is_qualified_name(key))
    elif base != "spec.host" and base not in _ENV_FIELD_PATHS:
        out.append(not_supported((*path, "fieldPath"), base, _ENV_FIELD_PATHS))


_CPU_DIVISORS = (Decimal("0.001"), Decimal(1))
_DECIMAL_DIVISORS = tuple(Decimal(10) ** e for e in (0, 3, 6, 9, 12, 15, 18))
_BINARY_DIVISORS = tuple(Decimal(2**e) for e in (10, 20, 30, 40, 50, 60))


def _check_resource_field_ref(ref: dict[str, Any], path: Path, out: Out) -> None:
    resource = ref.get("resource")
    if not resource:
        out.append(required((*path, "resource")))
        resource = ""
    elif isinstance(resource, str) and resource not in _RESOURCE_FIELD_PATHS:
        if not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
            out.append(not_supported((*path, "resource"), resource, _RESOURCE_FIELD_PATHS))
    divisor = ref.get("divisor")
    if divisor is None or not isinstance(resource, str):
        return
    value = parse_quantity(divisor)
    if value is None:
        out.append(invalid((*path, "divisor"), divisor, quantity_error(divisor) or QUANTITY_FORMAT))
        return
    if not value:
        return
    text = str(divisor).strip()
    binary = text.endswith(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    exponent = not binary and any(c in "eE" for c in text.lstrip("+-").lstrip("0123456789."))
    if resource in ("limits.cpu", "requests.cpu"):
        ok, what = value in _CPU_DIVISORS and not binary and (not exponent or value == 1), "1m and 1"
        detail = f"only divisor's values {what} are supported with the cpu resource"
    elif resource.endswith(("memory", "ephemeral-storage")) or "hugepages-" in resource:
        ok = (binary and value in _BINARY_DIVISORS) or (
            not binary and value in _DECIMAL_DIVISORS and (not exponent or value == 1)
        )
        kind = "memory" if resource.endswith("memory") else "local ephemeral storage"
        kind = "hugepages" if "hugepages-" in resource else kind
        detail = (
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported "
            f"with the {kind} resource"
        )
    else:
        return
    if not ok:
        out.append(invalid((*path, "divisor"), resource, detail))


def _check_file_key_ref(ref: dict[str, Any], path: Path, out: Out) -> None:
    key, volume, file_path = ref.get("key"), ref.get("volumeName"), ref.get("path")
    if not key:
        out.append(required((*path, "key")))
    elif isinstance(key, str):
        out.extend(invalid((*path, "key"), key, m) for m in is_env_var_name(key))
    if not volume:
        out.append(required((*path, "volumeName")))
    elif isinstance(volume, str):
        out.extend(invalid((*path, "volumeName"), volume, m) for m in is_dns1123_label(volume))
    if not file_path:
        out.append(required((*path, "path")))
    elif isinstance(file_path, str):
        check_no_backsteps(file_path, (*path, "path"), out)


def check_env_from(env_from: list[Any], path: Path, out: Out) -> None:
    for i, source in enumerate(env_from):
        source = as_dict(source)
        where = (*path, i)
        prefix = source.get("prefix")
        if prefix and isinstance(prefix, str):
            out.extend(invalid((*where, "prefix"), prefix, m) for m in is_env_var_name(prefix))
        refs = [k for k in ("configMapRef", "secretRef") if is_set(source, k)]
        for ref in refs:
            name = as_dict(source[ref]).get("name")
            if not name:
                out.append(required((*where, ref, "name")))
            elif isinstance(name, str):
                out.extend(invalid((*where, ref, "name"), name, m) for m in is_dns1123_subdomain(name))
        if not refs:
            out.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif len(refs) > 1:
            out.append(invalid(path, "", "may not have more than one field specified at a time"))
