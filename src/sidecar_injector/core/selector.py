"""Kubernetes LabelSelector matching (``matchLabels`` and ``matchExpressions``).

Selectors are validated once at load (:func:`parse_selector`) into a matcher that only
compares strings per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar_injector.core.errors import ConfigError

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        present = self.key in labels and labels[self.key] in self.values
        return present if self.operator == "In" else not present


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        for r in self.requirements:
            if not r.matches(labels):
                return False
        return True

    def describe(self) -> str:
        """kubectl's selector syntax, e.g. ``app=web,tier in (a,b),!legacy``."""
        parts = []
        for r in self.requirements:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            elif r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={next(iter(r.values))}")
            else:
                op = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {op} ({','.join(sorted(r.values))})")
        return ",".join(parts) or "(everything)"


def parse_selector(raw: Any, where: str) -> LabelSelector | None:
    """Validate a LabelSelector; ``None`` or ``{}`` selects every pod (returns ``None``)."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a LabelSelector mapping")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r} (matchLabels, matchExpressions)")
    reqs: list[Requirement] = []
    ml = raw.get("matchLabels") or {}
    if not isinstance(ml, dict):
        raise ConfigError(f"{where}.matchLabels: must be a mapping of strings")
    for k, v in ml.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"{where}.matchLabels.{k}: keys and values must be strings (quote numbers)")
        reqs.append(Requirement(k, "In", frozenset([v])))
    me = raw.get("matchExpressions") or []
    if not isinstance(me, list):
        raise ConfigError(f"{where}.matchExpressions: must be a list")
    for i, expr in enumerate(me):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, dict):
            raise ConfigError(f"{at}: must be a mapping with key, operator, values")
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{at}.key: required string")
        if op not in _OPERATORS:
            raise ConfigError(f"{at}.operator: must be one of {', '.join(_OPERATORS)}")
        if op in ("In", "NotIn"):
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"{at}.values: {op} needs a non-empty list of strings")
        elif values:
            raise ConfigError(f"{at}.values: must be empty for {op}")
        reqs.append(Requirement(key, op, frozenset(values or ())))
    return LabelSelector(tuple(reqs))
