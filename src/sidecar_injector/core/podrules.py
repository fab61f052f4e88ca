"""What the kube-apiserver's Pod validation enforces beyond the OpenAPI schema, for every field a
SidecarConfig can set, so a config that would get pods refused is caught before a pod is.

Mirrors ``ValidatePodCreate`` (k8s.io/kubernetes/pkg/apis/core/validation, Kubernetes 1.37 with
default feature gates) and apimachinery's name and label formats, on a pod dict as the webhook
sees it (before the apiserver's defaulting, which is taken into account). Every problem is
returned at once, as ``(path, message)`` with the apiserver's wording, e.g. for
``check_container({"name": "Sidecar_1", "image": "x"}, ("spec", "containers", 1), "container")``::

    [(("spec", "containers", 1, "name"),
      'Invalid value: "Sidecar_1": a lowercase RFC 1123 label must consist of lower case ...')]

``format_problem`` renders one as ``spec.containers[1].name: Invalid value: ...``.

With default feature gates, 1.37 allows ``restartPolicy`` (Always, Never, OnFailure) and
``restartPolicyRules`` on regular containers too (ContainerRestartRules, beta), relaxed env var
names (any printable ASCII but '='), env ``fileKeyRef`` (EnvFiles, beta); it drops
``lifecycle.stopSignal`` (ContainerStopSignals, alpha) before validating, and only warns about
a repeated containerPort. ``native_sidecars=False`` (a cluster before 1.29) refuses any
``restartPolicy`` on a container.

Pure and stdlib-only; regexes are compiled once, string formats and quantities are memoised:
a one-container pod takes a few microseconds, a pod with five containers with probes,
resources, mounts and security contexts under 100 µs on a loaded 2-core machine.
Differentially tested against a real kube-apiserver (tests/e2e/test_podrules_apiserver.py).

Not covered (the apiserver checks them, a SidecarConfig rarely sets them): volume sources other
than emptyDir, hostPath, secret, configMap, persistentVolumeClaim, csi (driver) and downwardAPI
(item paths); volumeDevices; securityContext beyond user/group ranges, procMount, seccomp and
AppArmor profiles and the privilege-escalation conflicts; pod-level fields a config cannot set.
"""

from __future__ import annotations

from collections.abc import Collection, Container
from typing import Any, Literal

from sidecar_injector.core.kubenames import (
    Path,
    Problem,
    duplicate,
    forbidden,
    format_path,
    format_problem,
    invalid,
    is_dns1123_label,
    is_port_name,
    not_found,
    not_supported,
    required,
)
from sidecar_injector.core.podenv import check_env, check_env_from
from sidecar_injector.core.podfields import (
    Out,
    as_dict,
    as_list,
    check_lifecycle,
    check_probe,
    check_security_context,
    check_volume_mounts,
    check_volume_source,
    is_int,
)
from sidecar_injector.core.podmeta import (
    ANNOTATIONS_SIZE_LIMIT,
    check_annotations,
    check_labels,
    check_pod_annotations,
)
from sidecar_injector.core.podresources import check_resize_policy, check_resources

__all__ = [
    "ANNOTATIONS_SIZE_LIMIT",
    "Path",
    "Problem",
    "check_annotations",
    "check_container",
    "check_labels",
    "check_pod",
    "check_volume",
    "format_path",
    "format_problem",
]

ContainerKind = Literal["container", "init", "sidecar"]
_KINDS = ("container", "init", "sidecar")

NO_NATIVE_SIDECARS = (
    "may not be set: the target Kubernetes version has no native sidecars "
    "(init containers with restartPolicy: Always need Kubernetes 1.29 or later)"
)
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_RESTART_POLICIES = ("Always", "Never", "OnFailure")
_HANDLER_FIELDS = ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe")


def check_volume(v: dict[str, Any], path: Path) -> list[Problem]:
    """Name a DNS-1123 label; at most one volume source (none is an emptyDir), each source's rules."""
    out: list[Problem] = []
    _check_volume(v, path, out)
    return out


def _check_volume(v: dict[str, Any], path: Path, out: Out) -> str:
    kind = check_volume_source(v, path, out)
    name = v.get("name")
    if not name:
        out.append(required((*path, "name")))
    elif isinstance(name, str) and (messages := is_dns1123_label(name)):
        out.extend(invalid((*path, "name"), name, m) for m in messages)
    return kind or "emptyDir"


def check_container(
    c: dict[str, Any],
    path: Path,
    kind: ContainerKind | str,
    *,
    native_sidecars: bool = True,
    volumes: Container[str] | None = None,
    grace_period: int | None = 30,
    pod_restart_policy: str = "Always",
    host_users: bool = True,
    claim_names: Collection[str] | None = None,
) -> list[Problem]:
    """One container: ``kind`` "container" (in spec.containers), "init" (spec.initContainers) or
    "sidecar" (an init container the injector gives ``restartPolicy: Always``).

    ``volumes`` are the pod's volume names (None: unknown, mounts are not resolved); the other
    keywords are the pod's settings the rules depend on, defaulted as the apiserver does.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    out: list[Problem] = []
    get = c.get
    name = get("name")
    if not name:
        out.append(required((*path, "name")))
    elif isinstance(name, str) and (messages := is_dns1123_label(name)):
        out.extend(invalid((*path, "name"), name, m) for m in messages)
    image = get("image")
    if not image:
        out.append(required((*path, "image")))
    elif isinstance(image, str) and image != image.strip():
        out.append(invalid((*path, "image"), image, "must not have leading or trailing whitespace"))
    if get("terminationMessagePolicy"):
        _check_enum(c, "terminationMessagePolicy", ("File", "FallbackToLogsOnError"), path, out)
    if get("imagePullPolicy"):
        _check_enum(c, "imagePullPolicy", ("Always", "IfNotPresent", "Never"), path, out)
    if value := get("ports"):
        _check_ports(as_list(value), (*path, "ports"), out)
    if value := get("env"):
        check_env(as_list(value), (*path, "env"), out)
    if value := get("envFrom"):
        check_env_from(as_list(value), (*path, "envFrom"), out)
    if value := get("volumeMounts"):
        check_volume_mounts(as_list(value), c, volumes, (*path, "volumeMounts"), out)
    if value := get("resources"):
        check_resources(as_dict(value), claim_names, (*path, "resources"), out)
    if (value := get("securityContext")) is not None:
        check_security_context(as_dict(value), host_users, (*path, "securityContext"), out)

    restartable = False
    if kind == "sidecar" or get("restartPolicy") is not None or get("restartPolicyRules") or not native_sidecars:
        restartable = _check_restart_policy(c, path, kind, native_sidecars, out)
    if value := get("resizePolicy"):
        check_resize_policy(as_list(value), restartable, pod_restart_policy, (*path, "resizePolicy"), out)
    handlers_allowed = kind == "container" or restartable
    for key in _HANDLER_FIELDS:
        if (value := get(key)) is None:
            continue
        if not handlers_allowed:
            out.append(forbidden((*path, key), "may not be set for init containers without restartPolicy=Always"))
        elif key == "lifecycle":
            check_lifecycle(as_dict(value), grace_period, (*path, key), out)
        else:
            check_probe(as_dict(value), key, grace_period, (*path, key), out)
    return out


def check_pod(pod: dict[str, Any], *, native_sidecars: bool = True) -> list[Problem]:
    """Every problem of the pod's metadata labels and annotations, containers, init containers
    (native sidecars included), volumes, mounts, env and pull secrets, and the cross checks."""
    out: list[Problem] = []
    meta, spec = as_dict(pod.get("metadata")), as_dict(pod.get("spec"))
    labels, annotations = meta.get("labels"), meta.get("annotations")
    if isinstance(labels, dict):
        out.extend(check_labels(labels, ("metadata", "labels")))
    containers, inits = as_list(spec.get("containers")), as_list(spec.get("initContainers"))
    if isinstance(annotations, dict):
        out.extend(check_annotations(annotations, ("metadata", "annotations")))
        check_pod_annotations(annotations, containers, inits, out)

    volumes: dict[str, str] = {}
    for i, v in enumerate(as_list(spec.get("volumes"))):
        v = as_dict(v)
        where = ("spec", "volumes", i)
        kind = _check_volume(v, where, out)
        name = v.get("name")
        if isinstance(name, str) and name:
            if name in volumes:
                out.append(duplicate((*where, "name"), name))
            else:
                volumes[name] = kind

    grace = spec.get("terminationGracePeriodSeconds", 30)
    grace = (1 if grace < 0 else grace) if is_int(grace) else None
    common: dict[str, Any] = {
        "native_sidecars": native_sidecars,
        "volumes": volumes,
        "grace_period": grace,
        "pod_restart_policy": spec.get("restartPolicy") or "Always",
        "host_users": spec.get("hostUsers") is not False,
        "claim_names": {n for c in as_list(spec.get("resourceClaims")) if isinstance(n := as_dict(c).get("name"), str)},
    }
    if not containers:
        out.append(required(("spec", "containers")))
    names: set[str] = set()
    host_ports: set[tuple[Any, ...]] = set()
    for i, c in enumerate(containers):
        c = as_dict(c)
        where = ("spec", "containers", i)
        out.extend(check_container(c, where, "container", **common))
        _check_unique_name(c, where, names, out)
        mine = _host_ports(c)
        out.extend(
            duplicate((*where, "ports", j, "hostPort"), key_text) for j, key, key_text in mine if key in host_ports
        )
        host_ports.update(key for _, key, _ in mine)
    for i, c in enumerate(inits):
        c = as_dict(c)
        where = ("spec", "initContainers", i)
        out.extend(check_container(c, where, "init", **common))
        _check_unique_name(c, where, names, out)
    for i, c in enumerate(containers + inits):
        _check_file_key_refs(as_dict(c), i, len(containers), volumes, out)
    if spec.get("ephemeralContainers"):
        out.append(forbidden(("spec", "ephemeralContainers"), "cannot be set on create"))
    return out


# -- pieces ------------------------------------------------------------------------------------


def _check_enum(c: dict[str, Any], key: str, allowed: tuple[str, ...], path: Path, out: Out) -> None:
    value = c.get(key)
    if value and isinstance(value, str) and value not in allowed:
        out.append(not_supported((*path, key), value, allowed))


def _check_ports(ports: list[Any], path: Path, out: Out) -> None:
    names: set[str] = set()
    host_ports: set[tuple[Any, ...]] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        where = (*path, i)
        name = port.get("name")
        if name and isinstance(name, str):
            messages = is_port_name(name)
            out.extend(invalid((*where, "name"), name, m) for m in messages)
            if not messages:
                if name in names:
                    out.append(duplicate((*where, "name"), name))
                names.add(name)
        container_port = port.get("containerPort")
        if not container_port:
            out.append(required((*where, "containerPort")))
        elif is_int(container_port) and not 1 <= container_port <= 65535:
            out.append(invalid((*where, "containerPort"), container_port, "must be between 1 and 65535, inclusive"))
        host_port = port.get("hostPort")
        if is_int(host_port) and host_port and not 1 <= host_port <= 65535:
            out.append(invalid((*where, "hostPort"), host_port, "must be between 1 and 65535, inclusive"))
        protocol = port.get("protocol") or "TCP"
        if isinstance(protocol, str) and protocol not in _PROTOCOLS:
            out.append(not_supported((*where, "protocol"), protocol, _PROTOCOLS))
    for j, key, key_text in _host_ports({"ports": ports}):
        if key in host_ports:
            out.append(duplicate((*path, j, "hostPort"), key_text))
        host_ports.add(key)


def _host_ports(c: dict[str, Any]) -> list[tuple[int, tuple[Any, ...], str]]:
    """(index, key, "TCP/hostIP/port") of each port with a hostPort, as the apiserver keys them."""
    found = []
    for j, port in enumerate(as_list(c.get("ports"))):
        port = as_dict(port)
        host_port = port.get("hostPort")
        if is_int(host_port) and host_port:
            protocol, host_ip = port.get("protocol") or "TCP", port.get("hostIP") or ""
            found.append((j, (protocol, host_ip, host_port), f"{protocol}/{host_ip}/{host_port}"))
    return found


def _check_restart_policy(c: dict[str, Any], path: Path, kind: str, native: bool, out: Out) -> bool:
    """Check restartPolicy and restartPolicyRules; True when the container is a restartable
    (sidecar) init container."""
    policy, rules = c.get("restartPolicy"), c.get("restartPolicyRules")
    where = (*path, "restartPolicy")
    if not native:
        if policy is not None or kind == "sidecar":
            out.append(forbidden(where, NO_NATIVE_SIDECARS))
        return False
    if kind == "sidecar":
        if policy is None:
            policy = "Always"
        elif policy != "Always":
            out.append(not_supported(where, policy, ("Always",)))
            return False
    if policy is None:
        if rules:
            out.append(required(where, "must specify restartPolicy when restart rules are used"))
        return False
    if isinstance(policy, str) and policy not in _RESTART_POLICIES:
        out.append(not_supported(where, policy, _RESTART_POLICIES))
    rules = as_list(rules)
    if len(rules) > 20:
        out.append((((*path, "restartPolicyRules")), f"Too many: {len(rules)}: must have at most 20 items"))
    for i, rule in enumerate(rules):
        rule = as_dict(rule)
        rule_path = (*path, "restartPolicyRules", i)
        action = rule.get("action", "")
        if action not in ("Restart", "RestartAllContainers"):
            out.append(not_supported((*rule_path, "action"), action, ("Restart", "RestartAllContainers")))
        exit_codes = rule.get("exitCodes")
        if exit_codes is None:
            out.append(required((*rule_path, "exitCodes"), "must be specified"))
            continue
        exit_codes = as_dict(exit_codes)
        operator = exit_codes.get("operator", "")
        if operator not in ("In", "NotIn"):
            out.append(not_supported((*rule_path, "exitCodes", "operator"), operator, ("In", "NotIn")))
        values = as_list(exit_codes.get("values"))
        if len(values) > 255:
            out.append(((*rule_path, "exitCodes", "values"), f"Too many: {len(values)}: must have at most 255 items"))
    return kind != "container" and policy == "Always"


def _check_unique_name(c: dict[str, Any], path: Path, names: set[str], out: Out) -> None:
    name = c.get("name")
    if isinstance(name, str) and name:
        if name in names:
            out.append(duplicate((*path, "name"), name))
        names.add(name)


def _check_file_key_refs(c: dict[str, Any], i: int, n_regular: int, volumes: dict[str, str], out: Out) -> None:
    where = ("spec", "containers", i) if i < n_regular else ("spec", "initContainers", i - n_regular)
    for j, var in enumerate(as_list(c.get("env"))):
        ref = as_dict(as_dict(as_dict(var).get("valueFrom")).get("fileKeyRef"))
        volume = ref.get("volumeName")
        if not ref or not isinstance(volume, str):
            continue
        path = (*where, "env", j, "valueFrom", "fileKeyRef", "volumeName")
        if volume not in volumes:
            out.append(not_found(path, volume))
        elif volumes[volume] != "emptyDir":
            out.append(invalid(path, volume, "referenced volume must be of type emptyDir"))
