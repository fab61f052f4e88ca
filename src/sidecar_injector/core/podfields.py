"""Field-level checks of a Pod the kube-apiserver (1.37, default feature gates) makes beyond the
OpenAPI schema: env, envFrom, volume mounts, resources, probes and lifecycle handlers, resize
policy, security context and volumes. :mod:`sidecar_injector.core.podrules` assembles them.

Each function appends the problems it finds to ``out``, paths rooted at ``path``. The pod is
read as the apiserver reads it after defaulting: an absent or empty protocol is TCP, a probe's
zero thresholds are its defaults, a volume without a source is an emptyDir, limits without a
request are also the request. Values of the wrong JSON type are the schema's business and are
skipped, never crashed on.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from decimal import Decimal
from typing import Any, TypeGuard

from sidecar_injector.core.kubenames import (
    Path,
    Problem,
    byte_len,
    duplicate,
    forbidden,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_http_header_name,
    is_port_name,
    is_qualified_name,
    not_found,
    not_supported,
    required,
    too_long,
)
from sidecar_injector.core.quantity import ceil_int, parse_quantity

Out = list[Problem]

_NEGATIVE = "must be greater than or equal to 0"
_PORT_RANGE = "must be between 1 and 65535, inclusive"


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _set(d: Mapping[str, Any], key: str) -> bool:
    """A pointer field the apiserver sees as set (JSON null is unset)."""
    return d.get(key) is not None


# -- paths -------------------------------------------------------------------------------------


def check_local_descending_path(value: str, path: Path, out: Out) -> None:
    if value.startswith("/"):
        out.append(invalid(path, value, "must be a relative path"))
    check_no_backsteps(value, path, out)


def check_no_backsteps(value: str, path: Path, out: Out) -> None:
    if ".." in value and ".." in value.split("/"):
        out.append(invalid(path, value, "must not contain '..'"))


def check_local_non_reserved_path(value: str, path: Path, out: Out) -> None:
    check_local_descending_path(value, path, out)
    if value.startswith("..") and not value.startswith("../"):
        out.append(invalid(path, value, "must not start with '..'"))


# -- ports and handlers ------------------------------------------------------------------------


def check_port_num_or_name(port: Any, path: Path, out: Out) -> None:
    if isinstance(port, str):
        out.extend(invalid(path, port, m) for m in is_port_name(port))
    elif is_int(port) and not 1 <= port <= 65535:
        out.append(invalid(path, port, _PORT_RANGE))
    elif port is None:
        out.append(invalid(path, 0, _PORT_RANGE))


_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def check_handler(h: dict[str, Any], kinds: tuple[str, ...], grace: int | None, path: Path, out: Out) -> None:
    seen = 0
    for kind in kinds:
        action = h.get(kind)
        if action is None:
            continue
        if seen:
            out.append(forbidden((*path, kind), "may not specify more than 1 handler type"))
            continue
        seen += 1
        action = as_dict(action)
        where = (*path, kind)
        if kind == "exec":
            if not as_list(action.get("command")):
                out.append(required((*where, "command")))
        elif kind == "httpGet":
            check_port_num_or_name(action.get("port"), (*where, "port"), out)
            scheme = action.get("scheme") or "HTTP"
            if isinstance(scheme, str) and scheme not in ("HTTP", "HTTPS"):
                out.append(not_supported((*where, "scheme"), scheme, ("HTTP", "HTTPS")))
            for header in as_list(action.get("httpHeaders")):
                name = as_dict(header).get("name")
                if isinstance(name, str):
                    out.extend(invalid((*where, "httpHeaders"), name, m) for m in is_http_header_name(name))
        elif kind == "tcpSocket":
            check_port_num_or_name(action.get("port"), (*where, "port"), out)
        elif kind == "grpc":
            port = action.get("port")
            if is_int(port) and not 1 <= port <= 65535:
                out.append(invalid((*where, "port"), port, _PORT_RANGE))
        elif kind == "sleep":
            seconds = action.get("seconds")
            if is_int(seconds) and grace is not None and not 0 <= seconds <= grace:
                detail = f"must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                out.append(invalid(where, seconds, detail))
    if not seen:
        out.append(required(path, "must specify a handler type"))


def check_probe(probe: dict[str, Any], which: str, grace: int | None, path: Path, out: Out) -> None:
    check_handler(probe, _PROBE_HANDLERS, grace, path, out)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        value = probe.get(key)
        if is_int(value) and value < 0:
            out.append(invalid((*path, key), value, _NEGATIVE))
    tgps = probe.get("terminationGracePeriodSeconds")
    if is_int(tgps) and tgps <= 0:
        out.append(invalid((*path, "terminationGracePeriodSeconds"), tgps, "must be greater than 0"))
    success = probe.get("successThreshold")
    if which != "readinessProbe" and is_int(success) and success not in (0, 1):  # 0 is defaulted to 1
        out.append(invalid((*path, "successThreshold"), success, "must be 1"))
    if which == "readinessProbe" and tgps is not None:
        out.append(invalid((*path, "terminationGracePeriodSeconds"), tgps, "must not be set for readinessProbes"))


_LINUX_SIGNALS = frozenset(
    [
        *(
            f"SIG{s}"
            for s in "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV "
            "STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX".split()
        ),
        *(f"SIGRTMIN+{i}" for i in range(1, 16)),
        *(f"SIGRTMAX-{i}" for i in range(1, 15)),
    ]
)


def check_lifecycle(lc: dict[str, Any], grace: int | None, os_name: str | None, path: Path, out: Out) -> None:
    for hook in ("postStart", "preStop"):
        if _set(lc, hook):
            check_handler(as_dict(lc[hook]), _LIFECYCLE_HANDLERS, grace, (*path, hook), out)
    signal = lc.get("stopSignal")
    if signal is not None:
        where = (*path, "stopSignal")
        if not os_name:
            out.append(forbidden(where, "may not be set for containers with empty `spec.os.name`"))
        elif os_name == "windows" and signal not in ("SIGKILL", "SIGTERM"):
            out.append(not_supported(where, signal, ("SIGKILL", "SIGTERM")))
        elif os_name == "linux" and signal not in _LINUX_SIGNALS:
            out.append(not_supported(where, signal, _LINUX_SIGNALS))


# -- env ---------------------------------------------------------------------------------------

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
        if _set(var, "valueFrom"):
            _check_value_from(var, as_dict(var["valueFrom"]), (*where, "valueFrom"), out)


def _check_value_from(var: dict[str, Any], vf: dict[str, Any], path: Path, out: Out) -> None:
    sources = [s for s in _ENV_SOURCES if _set(vf, s)]
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
        out.append(invalid((*path, "divisor"), divisor, "quantities must match the regular expression"))
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
        refs = [k for k in ("configMapRef", "secretRef") if _set(source, k)]
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


# -- volume mounts -----------------------------------------------------------------------------


def check_volume_mounts(
    mounts: list[Any], c: dict[str, Any], volumes: Container[str] | None, path: Path, out: Out
) -> None:
    seen: set[Any] = set()
    privileged = as_dict(c.get("securityContext")).get("privileged") is True
    for i, mount in enumerate(mounts):
        mount = as_dict(mount)
        where = (*path, i)
        name, mount_path = mount.get("name"), mount.get("mountPath")
        if not name:
            out.append(required((*where, "name")))
        if volumes is not None and isinstance(name, str | None) and (name or "") not in volumes:
            out.append(not_found((*where, "name"), name or ""))
        if not mount_path:
            out.append(required((*where, "mountPath")))
        if isinstance(mount_path, str | None):
            if (mount_path or "") in seen:
                out.append(invalid((*where, "mountPath"), mount_path or "", "must be unique"))
            seen.add(mount_path or "")
        sub_path, sub_path_expr = mount.get("subPath"), mount.get("subPathExpr")
        if sub_path and isinstance(sub_path, str):
            check_local_descending_path(sub_path, (*where, "subPath"), out)
        if sub_path_expr and isinstance(sub_path_expr, str):
            if sub_path:
                out.append(
                    invalid((*where, "subPathExpr"), sub_path_expr, "subPathExpr and subPath are mutually exclusive")
                )
            check_local_descending_path(sub_path_expr, (*where, "subPathExpr"), out)
        propagation = mount.get("mountPropagation")
        if propagation is not None:
            if propagation not in ("Bidirectional", "HostToContainer", "None"):
                out.append(
                    not_supported(
                        (*where, "mountPropagation"), propagation, ("Bidirectional", "HostToContainer", "None")
                    )
                )
            if propagation == "Bidirectional" and not privileged:
                detail = "Bidirectional mount propagation is available only to privileged containers"
                out.append(forbidden((*where, "mountPropagation"), detail))
        rro = mount.get("recursiveReadOnly")
        if rro is not None and rro != "Disabled":
            if rro not in ("Enabled", "IfPossible"):
                out.append(not_supported((*where, "recursiveReadOnly"), rro, ("Disabled", "Enabled", "IfPossible")))
            else:
                if mount.get("readOnly") is not True:
                    out.append(forbidden((*where, "recursiveReadOnly"), "may only be specified when readOnly is true"))
                if propagation not in (None, "None"):
                    detail = "may only be specified when mountPropagation is None or not specified"
                    out.append(forbidden((*where, "recursiveReadOnly"), detail))


# -- resources ---------------------------------------------------------------------------------

_STANDARD_CONTAINER_RESOURCES = frozenset(["cpu", "memory", "ephemeral-storage"])
_QUANTITY_FORMAT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


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
                out.append(invalid(where, raw, _QUANTITY_FORMAT))
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


# -- security context --------------------------------------------------------------------------


def check_security_context(sc: dict[str, Any], host_users: bool, path: Path, out: Out) -> None:
    for key in ("runAsUser", "runAsGroup"):
        value = sc.get(key)
        if is_int(value) and not 0 <= value <= 2147483647:
            out.append(invalid((*path, key), value, "must be between 0 and 2147483647, inclusive"))
    proc_mount = sc.get("procMount")
    if proc_mount is not None:
        if proc_mount not in ("Default", "Unmasked"):
            out.append(not_supported((*path, "procMount"), proc_mount, ("Default", "Unmasked")))
        if host_users and proc_mount == "Unmasked":
            out.append(invalid((*path, "procMount"), proc_mount, "`hostUsers` must be false to use `Unmasked`"))
    if _set(sc, "seccompProfile"):
        _check_profile(as_dict(sc["seccompProfile"]), "seccomp", (*path, "seccompProfile"), out)
    if _set(sc, "appArmorProfile"):
        _check_profile(as_dict(sc["appArmorProfile"]), "AppArmor", (*path, "appArmorProfile"), out)
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            out.append(invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
        if "CAP_SYS_ADMIN" in as_list(as_dict(sc.get("capabilities")).get("add")):
            detail = "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"
            out.append(invalid(path, sc, detail))


def _check_profile(profile: dict[str, Any], what: str, path: Path, out: Out) -> None:
    kind, localhost = profile.get("type") or "", profile.get("localhostProfile")
    field = "seccompProfile" if what == "seccomp" else "appArmorProfile"
    if not kind:
        out.append(required((*path, "type"), f"type is required when {field} is set"))
    elif kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
        out.append(not_supported((*path, "type"), kind, ("Localhost", "RuntimeDefault", "Unconfined")))
    where = (*path, "localhostProfile")
    if kind == "Localhost":
        if localhost is None or (what == "AppArmor" and isinstance(localhost, str) and not localhost.strip()):
            if localhost is None or localhost == localhost.strip():
                out.append(required(where, f"must be set when {what} type is Localhost"))
        if not isinstance(localhost, str):
            pass
        elif what == "seccomp":
            check_local_descending_path(localhost, where, out)
        elif localhost != localhost.strip():
            out.append(invalid(where, localhost, "must not be padded with whitespace"))
        elif byte_len(localhost) > 4095:
            out.append(too_long(where, 4095))
    elif localhost is not None and (what == "seccomp" or kind in ("RuntimeDefault", "Unconfined")):
        out.append(
            invalid(
                where, profile if what == "seccomp" else localhost, f"can only be set when {what} type is Localhost"
            )
        )


# -- volumes -----------------------------------------------------------------------------------

VOLUME_SOURCES = (  # in the order the apiserver counts them
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
    "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs", "quobyte", "downwardAPI", "fc",
    "flexVolume", "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk",
    "storageos", "projected", "scaleIO", "csi", "ephemeral", "image",
)  # fmt: skip
_VOLUME_SOURCE_SET = frozenset(VOLUME_SOURCES)
_HOST_PATH_TYPES = (
    "", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice",
)  # fmt: skip
_FILE_MODE = "must be a number between 0 and 0777 (octal), both inclusive"


def check_volume_source(v: dict[str, Any], path: Path, out: Out) -> str | None:
    """The volume's single source (None when it has none: the apiserver makes that an emptyDir)."""
    sources = [s for s in v if s in _VOLUME_SOURCE_SET and v[s] is not None]
    if len(sources) > 1:
        sources.sort(key=VOLUME_SOURCES.index)
    for extra in sources[1:]:
        out.append(forbidden((*path, extra), "may not specify more than 1 volume type"))
    if not sources:
        return None
    kind = sources[0]
    src, where = as_dict(v[kind]), (*path, kind)
    if kind == "emptyDir":
        size = src.get("sizeLimit")
        if size is not None:
            value = parse_quantity(size)
            if value is None:
                out.append(invalid((*where, "sizeLimit"), size, _QUANTITY_FORMAT))
            elif value < 0:
                out.append(forbidden((*where, "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
    elif kind == "hostPath":
        host_path = src.get("path")
        if not host_path:
            out.append(required((*where, "path")))
        elif isinstance(host_path, str):
            check_no_backsteps(host_path, (*where, "path"), out)
            if src.get("type") is not None and src["type"] not in _HOST_PATH_TYPES:
                out.append(not_supported((*where, "type"), src["type"], _HOST_PATH_TYPES))
    elif kind in ("secret", "configMap"):
        name_key = "secretName" if kind == "secret" else "name"
        if not src.get(name_key):
            out.append(required((*where, name_key)))
        mode = src.get("defaultMode")
        if is_int(mode) and not 0 <= mode <= 0o777:
            out.append(invalid((*where, "defaultMode"), mode, _FILE_MODE))
        _check_key_to_paths(as_list(src.get("items")), (*where, "items"), out)
    elif kind == "persistentVolumeClaim":
        if not src.get("claimName"):
            out.append(required((*where, "claimName")))
    elif kind == "csi":
        if not src.get("driver"):
            out.append(required((*where, "driver")))
    elif kind == "downwardAPI":
        for i, item in enumerate(as_list(src.get("items"))):
            item_path = as_dict(item).get("path")
            if not item_path:
                out.append(required((*where, "items", i, "path")))
            elif isinstance(item_path, str):
                check_local_non_reserved_path(item_path, (*where, "items", i, "path"), out)
    return kind


def _check_key_to_paths(items: list[Any], path: Path, out: Out) -> None:
    for i, item in enumerate(items):
        item = as_dict(item)
        where = (*path, i)
        if not item.get("key"):
            out.append(required((*where, "key")))
        item_path = item.get("path")
        if not item_path:
            out.append(required((*where, "path")))
        if isinstance(item_path, str):
            check_local_non_reserved_path(item_path, (*where, "path"), out)
        mode = item.get("mode")
        if is_int(mode) and not 0 <= mode <= 0o777:
            out.append(invalid((*where, "mode"), mode, _FILE_MODE))
