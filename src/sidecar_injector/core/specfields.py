"""The shape of a SidecarConfig's own fields, checked field by field as it loads.

Each check here reads one field of a document's ``spec`` (a flag, a mode, the
matchConditions, a map of strings, a list of named items), adds what is wrong with it to a
:class:`Problems` and returns a usable value anyway, so that loading goes on and reports
**every** problem at once. :mod:`~sidecar_injector.core.parse` calls them in order and
builds the :class:`~sidecar_injector.core.config.SidecarConfig`; they are separate from it
because they know nothing of configs, pods or schemas: only the shape of YAML values (and
CEL, for matchConditions), and where a problem is (the :class:`Problems` of one document,
which :mod:`~sidecar_injector.core.fragmentcheck` also reports to).
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core import cel
from sidecar_injector.core.errors import ConfigError


class Problems:
    """Collects every problem of one document, each prefixed with where it is."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.lines: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.lines.append(f"{self.src}: {field}: {message}" if field else f"{self.src}: {message}")

    def extend(self, error: ConfigError) -> None:
        self.lines.extend(str(error).splitlines())


def boolean(spec: dict[str, Any], key: str, p: Problems) -> bool:
    value = spec.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        p.add(f"spec.{key}", f"must be true or false, got {value!r}")
        return False
    return value


def mode(spec: dict[str, Any], key: str, modes: tuple[str, ...], p: Problems) -> str:
    value = spec.get(key)
    if value is None:
        return modes[0]
    if value not in modes:
        p.add(f"spec.{key}", f"must be one of {', '.join(modes)} (default {modes[0]}), got {value!r}")
        return modes[0]
    return str(value)


def match_conditions(raw: Any, p: Problems) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add("spec.matchConditions", "must be a list of {name, expression}")
        return []
    out: list[Any] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        field = f"spec.matchConditions[{i}]"
        if not isinstance(item, dict):
            p.add(field, "must be a mapping with name and expression")
            continue
        for k in item:
            if k not in ("name", "expression"):
                p.add(f"{field}.{k}", "unknown field (known: name, expression)")
        name, expression = item.get("name"), item.get("expression")
        if not isinstance(name, str) or not name:
            p.add(f"{field}.name", "required, a non-empty string")
            continue
        if name in seen:
            p.add(f"{field}.name", f"duplicate name {name!r}")
        seen.add(name)
        if not isinstance(expression, str) or not expression.strip():
            p.add(f"{field}.expression", "required, a CEL expression over `object` (the pod)")
            continue
        try:
            out.append(cel.compile_condition(name, expression, f"{p.src}: {field}.expression"))
        except ConfigError as e:
            p.extend(e)
    return out


def str_map(raw: Any, field: str, p: Problems) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        p.add(field, f"must be a mapping of strings, got {type(raw).__name__}")
        return {}
    ok = True
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            p.add(f"{field}.{k}", "keys and values must be strings (quote numbers and booleans)")
            ok = False
    return dict(raw) if ok else {}


def names(items: list[Any]) -> set[str]:
    return {i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)}


def named_list(raw: Any, field: str, p: Problems, key: str = "name", required: tuple[str, ...] = ()) -> list[Any]:
    """A list of mappings each with a unique ``key``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add(field, f"must be a list, got {type(raw).__name__}")
        return []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(item, dict):
            p.add(at, f"must be a mapping, got {type(item).__name__}")
            continue
        for req in (key, *required):
            if not isinstance(item.get(req), str) or not item[req]:
                p.add(f"{at}.{req}", "required, a non-empty string")
        name = item.get(key)
        if isinstance(name, str) and name:
            if name in seen:
                p.add(f"{at}.{key}", f"duplicate {key} {name!r} (also at {field}[{seen[name]}])")
            seen.setdefault(name, i)
    return list(raw)
