"""Field-level checks of a Pod the kube-apiserver (1.37, default feature gates) makes beyond the
OpenAPI schema: probes and lifecycle handlers, volume mounts, security context and volumes, and
the helpers :mod:`~sidecar_injector.core.podenv` and :mod:`~sidecar_injector.core.podresources`
share. :mod:`sidecar_injector.core.podrules` assembles them.

Each function appends the problems it finds to ``out``, paths rooted at ``path``. The pod is
read as the apiserver reads it after defaulting: an absent or empty protocol is TCP, a probe's
zero thresholds are its defaults, a volume without a source is an emptyDir, limits without a
request are also the request. Values of the wrong JSON type are the schema's business and are
skipped, never crashed on.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any, TypeGuard

from sidecar_injector.core.kubenames import (
    Path,
    Problem,
    byte_len,
    forbidden,
    invalid,
    is_http_header_name,
    is_port_name,
    not_found,
    not_supported,
    required,
    too_long,
)
from sidecar_injector.core.quantity import QUANTITY_FORMAT, parse_quantity, quantity_error

Out = list[Problem]
_NEGATIVE = "must be greater than or equal to 0"
_PORT_RANGE = "must be between 1 and 65535, inclusive"


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_set(d: Mapping[str, Any], key: str) -> bool:
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
            port = action.get("port", 0)
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


def check_lifecycle(lc: dict[str, Any], grace: int | None, path: Path, out: Out) -> None:
    """postStart and preStop. (``stopSignal`` is dropped by a 1.37 apiserver: ContainerStopSignals
    is alpha, off by default.)"""
    for hook in ("postStart", "preStop"):
        if is_set(lc, hook):
            check_handler(as_dict(lc[hook]), _LIFECYCLE_HANDLERS, grace, (*path, hook), out)


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
    if is_set(sc, "seccompProfile"):
        _check_profile(as_dict(sc["seccompProfile"]), "seccomp", (*path, "seccompProfile"), out)
    if is_set(sc, "appArmorProfile"):
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
                out.append(invalid((*where, "sizeLimit"), size, quantity_error(size) or QUANTITY_FORMAT))
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
