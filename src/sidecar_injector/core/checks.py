"""Per-request checks of what one pod will be: nothing the apiserver would refuse.

A config is checked whole when it loads (:mod:`core.parse`); what depends on the pod is
checked here, on every request: a templated config's values as rendered for this pod, every
injected mount naming a volume the final pod has (a config may mount the pod's own), host
ports that must not repeat, and the annotations' total size. A failure is an
:class:`InjectionError` naming the config and the field, answered per ``--on-error``: never
a pod refused with 422.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sidecar_injector.core import podrules
from sidecar_injector.core.config import SidecarConfig
from sidecar_injector.core.errors import InjectionError

#: The apiserver's limit on the total size of a pod's annotations.
ANNOTATIONS_MAX = 256 * 1024


def host_ports(spec: dict[str, Any], new_containers: list[Any]) -> None:
    """A sidecar's host port must not repeat one of the pod's: the apiserver refuses the
    pod. On a hostNetwork pod every port is a host port (the apiserver sets hostPort to
    containerPort), so a sidecar listening on a port the app holds is such a conflict."""
    host_network = spec.get("hostNetwork") is True
    if not host_network and not any(
        isinstance(p, dict) and p.get("hostPort") for c in new_containers for p in c.get("ports") or ()
    ):
        return  # the common case: no sidecar port is a host port

    def keys(c: Any) -> list[tuple[str, str, Any]]:
        out = []
        for port in c.get("ports") or [] if isinstance(c, dict) else []:
            if not isinstance(port, dict):
                continue
            host_port = port.get("hostPort") or (port.get("containerPort") if host_network else None)
            if host_port:
                out.append((str(port.get("protocol") or "TCP"), str(port.get("hostIP") or ""), host_port))
        return out

    taken = {k for c in spec["containers"] for k in keys(c)}
    problems = []
    for c in new_containers:
        for protocol, ip, port in keys(c):
            if (protocol, ip, port) in taken:
                why = " (hostNetwork: every container port is a host port)" if host_network else ""
                problems.append(f"container {c['name']}: host port {protocol}/{ip}/{port} is already taken "
                                f"in the pod{why}")
            taken.add((protocol, ip, port))
    if problems:
        raise InjectionError("; ".join(problems))

def mounts(
sidecars: Iterable[dict[str, Any]], app_containers: list[Any], app_mounts: list[tuple[str, Any]], volumes: set[str]
) -> None:
    """Every mount injected must name a volume the pod will have (the apiserver refuses
    the pod otherwise): a config may mount the pod's own volume, so this is per pod."""
    problems = []
    for c in sidecars:
        for m in c.get("volumeMounts") or ():
            if isinstance(m, dict) and m.get("name") not in volumes:
                problems.append(f"container {c['name']}: volumeMounts {m.get('mountPath')!r} names "
                                f"volume {m.get('name')!r}, which neither the config nor the pod has")
    # The app mounts land only where there is an app container.
    if app_mounts and any(isinstance(c, dict) for c in app_containers):
        for cfg_name, m in app_mounts:
            if m.get("name") not in volumes:
                problems.append(f"config {cfg_name!r}: spec.volumeMounts {m.get('mountPath')!r} names volume "
                                f"{m.get('name')!r}, which neither the config nor the pod has")
    if problems:
        raise InjectionError("; ".join(problems))

def annotation_size(own: dict[str, Any], add: dict[str, str]) -> None:
    total = 0
    for k, v in add.items():
        if k not in own:
            total += len(k) + len(v)
    try:  # map(len) runs in C; a value that is not a string (a malformed pod) takes the long way
        total += sum(map(len, own)) + sum(map(len, own.values()))
    except TypeError:
        total += sum(len(k) + len(v) for k, v in own.items() if isinstance(v, str))
    if total > ANNOTATIONS_MAX:
        raise InjectionError(
            f"the pod's annotations would total {total} bytes, over the apiserver's limit of {ANNOTATIONS_MAX}"
        )


def rendered(
    cfg: SidecarConfig,
    labels: dict[str, Any],
    annotations: dict[str, Any],
    inits: list[Any],
    containers: list[Any],
    volumes: list[Any],
    mounts: list[Any],
    env: list[Any],
    native_sidecars: bool,
) -> None:
    """The apiserver's rules on a templated config's values as rendered for this pod."""
    problems: list[podrules.Problem] = []
    problems += podrules.check_labels(labels, ("spec", "labels"))
    problems += podrules.check_annotations(annotations, ("spec", "annotations"))
    for i, c in enumerate(inits):
        problems += podrules.check_container(c, ("spec", "initContainers", i), "init")
    kind: podrules.ContainerKind = "sidecar" if cfg.native_sidecar else "container"
    for i, c in enumerate(containers):
        problems += podrules.check_container(c, ("spec", "containers", i), kind)
    for i, v in enumerate(volumes):
        problems += podrules.check_volume(v, ("spec", "volumes", i))
    if mounts or env:
        app = {"name": "app", "image": "app", "volumeMounts": list(mounts), "env": list(env)}
        for path, msg in podrules.check_container(app, ("spec",), "container"):
            problems.append((path, msg))
    if problems:
        where = "; ".join(f"{fmt_path(path)}: {msg}" for path, msg in problems[:5])
        raise InjectionError(f"config {cfg.name!r} ({cfg.source}) rendered values the apiserver would refuse: {where}")


def fmt_path(path: podrules.Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out
