"""What compiles: the reasons a SidecarConfig cannot be delivered by a policy, one line each.

What the webhook does and CEL in Kubernetes 1.37 cannot is refused per config, naming the
field and the reason (:func:`unsupported`): such configs stay webhook-only. Separate from the
CEL generation because the delivery plan (install modes, explain) asks only this question,
and the generator may assume every config it is given passed it. Also the config's static
parts, by the field names the CEL and the refusals speak of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.core.templating import is_template
from sidecar_injector.policy.templates import NotCompilable, compile_template


@dataclass(frozen=True)
class Unsupported:
    """Why one config cannot be delivered by a policy."""

    config: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.config}: {self.field}: {self.reason}"


_TEMPLATE_OK = {"image", "workingDir"}
_TEMPLATE_LIST_OK = {"args", "command"}


def template_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every template string in ``value``, with its path (keys and list indexes) below ``path``."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in template_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in template_paths(v, (*path, i))]
    if isinstance(value, str) and is_template(value):
        return [(path, value)]
    return []


def _fmt(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _template_allowed(path: tuple[Any, ...]) -> bool:
    """Fields whose rendered value the webhook does not check with the apiserver's rules."""
    top = path[0]
    if top == "annotations":
        return len(path) == 2
    if top == "env":
        return len(path) == 3 and path[2] == "value"
    if top in ("containers", "initContainers") and len(path) >= 3:
        rest = path[2:]
        if len(rest) == 1 and rest[0] in _TEMPLATE_OK:
            return True
        if len(rest) == 2 and rest[0] in _TEMPLATE_LIST_OK:
            return True
        if len(rest) == 3 and rest[0] == "env" and rest[2] == "value":
            return True
    return False


def unsupported(cfg: SidecarConfig, configs: ConfigSet) -> list[Unsupported]:
    """Every reason ``cfg`` cannot be a policy (empty: it compiles)."""
    out: list[Unsupported] = []
    parts = static_parts(cfg)
    if configs.scoped:
        out.append(Unsupported(cfg.name, "metadata.namespace", "namespaced SidecarConfigs (tenancy) shadow configs "
                                                               "per namespace: not compiled"))
    for key, value in parts.items():
        for path, src in template_paths(value, (key,)):
            where = "spec." + _fmt(path)
            if not _template_allowed(path):
                out.append(Unsupported(cfg.name, where, "a template here renders a value the webhook checks with the "
                                                        "apiserver's rules per pod, which CEL cannot do"))
                continue
            try:
                compile_template(src)
            except NotCompilable as e:
                out.append(Unsupported(cfg.name, where, f"template not compiled to CEL: {e}"))
    own_volumes = {v.get("name") for v in parts["volumes"] if isinstance(v, dict)}
    for key in ("initContainers", "containers"):
        for i, c in enumerate(parts[key]):
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in own_volumes:
                    out.append(Unsupported(cfg.name, f"spec.{key}[{i}].volumeMounts[{j}]",
                                           f"mounts volume {m.get('name')!r}, which the config does not declare: "
                                           "the webhook checks per pod that the pod has it"))
            for j, p in enumerate(c.get("ports") or []):
                if p.get("hostPort") or (cfg.host_network == "inject" and key == "containers"):
                    out.append(Unsupported(cfg.name, f"spec.{key}[{i}].ports[{j}]",
                                           "a host port (or any port of a sidecar on hostNetwork pods): the webhook "
                                           "checks per pod that the pod does not hold it already"))
                    break
    for j, m in enumerate(parts["volumeMounts"]):
        if m.get("name") not in own_volumes:
            out.append(Unsupported(cfg.name, f"spec.volumeMounts[{j}]",
                                   f"mounts volume {m.get('name')!r}, which the config does not declare: the webhook "
                                   "checks per pod that the pod has it"))
    return out


def static_parts(cfg: SidecarConfig) -> dict[str, Any]:
    """The config's fields as written (templates unrendered), by their names in the spec."""
    return {
        "labels": cfg.labels.static, "annotations": cfg.annotations.static,
        "initContainers": cfg.init_containers.static, "containers": cfg.containers.static,
        "volumes": cfg.volumes.static, "volumeMounts": cfg.volume_mounts.static, "env": cfg.env.static,
        "imagePullSecrets": cfg.image_pull_secrets.static,
    }

