"""Writing new values as YAML text that kubectl (and :mod:`.read`) reads back unchanged.

A string is written plain only when go-yaml v2 resolves that plain text back to the same
string (so ``"on"``, ``"y"``, ``"0o17"``, ``"1e3"``, ``"10"`` are quoted) and it has no YAML
indicator; otherwise as a JSON string, which is a valid YAML double-quoted scalar.
Collections are written in block style (a mapping's keys at ``indent``, sequence items as
``- `` at the indentation the document uses), or in flow style (JSON) inside flow context.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from sidecar_injector.yamlio.read import resolve_plain

#: Characters a plain scalar may hold here: conservative, the common label/image/path shapes.
_PLAIN_OK = re.compile(r"[A-Za-z0-9_./$(+=^~;][^\x00-\x1f\x7f-\x9f]*\Z")


def scalar(value: Any) -> str:
    """One scalar (or empty collection) as YAML text, on one line."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        text = repr(value)
        return text if resolve_plain(text) == value else orjson.dumps(value).decode()
    if isinstance(value, str):
        if _plain_ok(value):
            return value
        return quoted(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    raise TypeError(f"not a scalar: {type(value).__name__}")


def _plain_ok(value: str) -> bool:
    """Whether ``value`` can be written plain and read back (by kubectl and :mod:`.read`) as itself."""
    body = value.lstrip("-") if value[:1] == "-" and value[1:2] not in ("", " ") else value
    return bool(
        _PLAIN_OK.match(body)
        and not value.endswith((" ", ":"))
        and ": " not in value
        and " #" not in value
        and type(resolve_plain(value)) is str
    )


def quoted(value: str) -> str:
    """Single-quoted when printable on one line (as PyYAML and kubectl write), else JSON."""
    if value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return orjson.dumps(value).decode()


def flow(value: Any) -> str:
    """A value in flow style (``{a: b, c: [d]}``), for flow collections and JSON documents."""
    if isinstance(value, dict) and value:
        return "{" + ", ".join(f"{flow_scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list) and value:
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        return flow_scalar(value)
    return scalar(value)


def flow_scalar(value: str) -> str:
    text = scalar(value)
    if text[0] not in "'\"" and any(c in text for c in ",[]{}"):
        return quoted(value)
    return text


def is_block(value: Any) -> bool:
    return isinstance(value, (dict, list)) and bool(value)


class Style:
    """How the surrounding document indents: ``step`` spaces per mapping level, and whether a
    sequence's ``-`` is indented under its key (``seq_indent`` spaces) or not (0)."""

    __slots__ = ("newline", "seq_indent", "step")

    def __init__(self, step: int = 2, seq_indent: int = 0, newline: str = "\n") -> None:
        self.step = step
        self.seq_indent = seq_indent
        self.newline = newline


def mapping_entries(items: list[tuple[str, Any]], indent: int, style: Style) -> list[str]:
    """Lines (without line breaks) of ``key: value`` entries at column ``indent``."""
    lines: list[str] = []
    pad = " " * indent
    for k, v in items:
        key = scalar(k)
        if is_block(v):
            lines.append(f"{pad}{key}:")
            if isinstance(v, dict):
                lines.extend(mapping_entries(list(v.items()), indent + style.step, style))
            else:
                lines.extend(sequence_items(v, indent + style.seq_indent, style))
        else:
            lines.append(f"{pad}{key}: {scalar(v)}")
    return lines


def sequence_items(items: list[Any], indent: int, style: Style) -> list[str]:
    """Lines of ``- item`` entries with the dash at column ``indent``."""
    lines: list[str] = []
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            sub = mapping_entries(list(item.items()), indent + 2, style)
            sub[0] = pad + "- " + sub[0][indent + 2:]
            lines.extend(sub)
        elif isinstance(item, list) and item:
            sub = sequence_items(item, indent + 2, style)
            sub[0] = pad + "- " + sub[0][indent + 2:]
            lines.extend(sub)
        else:
            lines.append(f"{pad}- {scalar(item)}")
    return lines


_CACHE: dict[tuple[bytes, bool, int, int, int], list[str]] = {}


def cached_lines(items: Any, indent: int, style: Style) -> list[str]:
    """``mapping_entries`` (``items`` a list of pairs) or ``sequence_items`` (a list of values),
    memoised: the same sidecars are written into every pod of a stream."""
    pairs = bool(items) and isinstance(items[0], tuple)
    key = (orjson.dumps(items), pairs, indent, style.step, style.seq_indent)
    lines = _CACHE.get(key)
    if lines is None:
        lines = mapping_entries(items, indent, style) if pairs else sequence_items(items, indent, style)
        if len(_CACHE) > 4096:
            _CACHE.clear()
        _CACHE[key] = lines
    return lines


def document(value: Any, style: Style | None = None) -> str:
    """A whole document in block style (used when a document cannot be edited in place)."""
    style = style or Style()
    if isinstance(value, dict) and value:
        lines = mapping_entries(list(value.items()), 0, style)
    elif isinstance(value, list) and value:
        lines = sequence_items(value, 0, style)
    else:
        lines = [scalar(value)]
    return style.newline.join(lines) + style.newline
