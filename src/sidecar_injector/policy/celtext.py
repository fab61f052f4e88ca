"""CEL source text building blocks: literals, JSON pointers, JSON quoting, list sums, patches.

Small string functions that know nothing of SidecarConfigs, kept out of the generator
(:mod:`sidecar_injector.policy.generate`) so that it reads as what it builds, not as how CEL
and JSON Patch are spelled.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core.templating import is_template
from sidecar_injector.policy.templates import cel_string, compile_template


def lit(value: Any) -> str:
    """A CEL literal for a JSON value; templates become CEL string expressions. Every map value
    and list element is ``dyn``: Kubernetes checks literals to be of one type."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{cel_string(k)}: dyn({lit(v)})" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(f"dyn({lit(v)})" for v in value) + "]"
    if isinstance(value, str):
        return f"({compile_template(value)})" if is_template(value) else cel_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to ``parts``, escaped."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def json_quote(expr: str) -> str:
    """CEL building the JSON string of a runtime string (quotes and backslashes escaped)."""
    return (f"'\"' + {expr}.replace({cel_string(chr(92))}, {cel_string(chr(92) * 2)})"
            f".replace('\"', {cel_string(chr(92) + chr(34))}) + '\"'")


def concat(items: list[str]) -> str:
    """CEL for the sum of list expressions, the empty ones (``[]``) left out."""
    items = [i for i in items if i != "[]"]
    return " + ".join(items) if items else "[]"


def patch(op_path: str, value: str) -> str:
    """CEL for one JSON Patch ``add`` of ``value`` (CEL) at ``op_path``."""
    return f"JSONPatch{{op: 'add', path: {cel_string(op_path)}, value: {value}}}"

