"""The apiserver's rules for a pod's metadata: label keys and values, annotation keys and their
total size, and the annotations it reads itself (the pod deletion cost, the AppArmor and seccomp
profiles of the containers). Part of :mod:`sidecar_injector.core.podrules`, which re-exports
:func:`check_labels` and :func:`check_annotations`.

Separate from the container and volume rules: these look only at ``metadata`` (and at the
container names the AppArmor annotations point to), the same rules a SidecarConfig's own
``labels`` and ``annotations`` are checked against.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core.kubenames import (
    Path,
    Problem,
    byte_len,
    invalid,
    is_label_value,
    is_qualified_name,
    too_long,
)
from sidecar_injector.core.podfields import Out, as_dict

__all__ = ["ANNOTATIONS_SIZE_LIMIT", "check_annotations", "check_labels", "check_pod_annotations"]

ANNOTATIONS_SIZE_LIMIT = 256 * 1024
_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
_SECCOMP_POD = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"


def check_labels(labels: dict[str, Any], path: Path) -> list[Problem]:
    """Keys qualified names (``[prefix/]name``), values label values (<= 63, alnum at the ends)."""
    out: list[Problem] = []
    for key, value in labels.items():
        if not isinstance(key, str):
            continue
        where = (*path, key)
        out.extend(invalid(where, key, m) for m in is_qualified_name(key))
        if isinstance(value, str):
            out.extend(invalid(where, value, m) for m in is_label_value(value))
    return out


def check_annotations(annotations: dict[str, Any], path: Path) -> list[Problem]:
    """Keys qualified names (case-insensitively); keys and values together at most 256 KiB (bytes)."""
    out: list[Problem] = []
    size = 0
    for key, value in annotations.items():
        if not isinstance(key, str):
            continue
        out.extend(invalid((*path, key), key, m) for m in is_qualified_name(key.lower()))
        size += byte_len(key) + (byte_len(value) if isinstance(value, str) else 0)
    if size > ANNOTATIONS_SIZE_LIMIT:
        out.append(too_long(path, ANNOTATIONS_SIZE_LIMIT))
    return out


def check_pod_annotations(annotations: dict[str, Any], containers: list[Any], inits: list[Any], out: Out) -> None:
    """The annotations the apiserver reads on a pod: the deletion cost a 32-bit integer, the
    AppArmor ones naming one of ``containers`` or ``inits`` and a valid profile, the seccomp ones
    a valid profile."""
    path: Path = ("metadata", "annotations")
    cost = annotations.get(_DELETION_COST)
    if isinstance(cost, str) and not _is_int32_text(cost):
        out.append(invalid((*path, _DELETION_COST), cost, "must be a 32bit integer"))
    names = {n for c in containers + inits if isinstance(n := as_dict(c).get("name"), str)}
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            continue
        if key.startswith(_APPARMOR_PREFIX):
            container = key[len(_APPARMOR_PREFIX) :]
            if container not in names:
                out.append(invalid((*path, key), container, "container not found"))
            if value not in ("", "runtime/default", "unconfined") and not value.startswith("localhost/"):
                out.append(invalid((*path, key), value, f"invalid AppArmor profile name: {value!r}".replace("'", '"')))
        elif key == _SECCOMP_POD or key.startswith(_SECCOMP_PREFIX):
            if value in ("runtime/default", "docker/default", "unconfined"):
                continue
            if value.startswith("localhost/"):
                local = value[len("localhost/") :]
                if local.startswith("/"):
                    out.append(invalid((*path, key), local, "must be a relative path"))
                if ".." in local.split("/"):
                    out.append(invalid((*path, key), local, "must not contain '..'"))
            else:
                out.append(invalid((*path, key), value, "must be a valid seccomp profile"))


def _is_int32_text(text: str) -> bool:
    if not text or not (text[0] == "-" or text == "0" or "1" <= text[0] <= "9"):
        return False
    digits = text[1:] if text[0] == "-" else text
    return digits.isascii() and digits.isdigit() and -(2**31) <= int(text) < 2**31
