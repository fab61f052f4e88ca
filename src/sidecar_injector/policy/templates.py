"""The common forms of a SidecarConfig template, translated to CEL.

Accepted: literal text with ``{{ X }}`` parts, where ``X`` is ``namespace``, ``name``,
``annotations['k']`` or ``labels['k']``, optionally followed by ``| default(D)`` where ``D`` is a
quoted string or another such ``X`` (so defaults chain). Anything else (filters, conditionals,
``pod.…``, arithmetic) raises :class:`NotCompilable` with the reason, and the config stays
webhook-only. The meaning is Jinja's with ``StrictUndefined``: a key absent without a default
is an error for that pod (the webhook's injection error; the policy's runtime error, which
follows its failurePolicy).
"""

from __future__ import annotations

import re

import orjson

_PART = re.compile(r"\{\{(.*?)\}\}", re.S)
_LOOKUP = re.compile(r"""(annotations|labels)\s*\[\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\]""")
_STRING = re.compile(r"""'([^'\\]*)'|"([^"\\]*)\"""")
_NAME = ("object.metadata.?name.orValue('') != '' ? object.metadata.name : "
         "object.metadata.?generateName.orValue('')")


class NotCompilable(ValueError):
    """A template outside the compiled forms; the message says why, in one line."""


def cel_string(s: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's, for what orjson emits)."""
    return orjson.dumps(s).decode()


def _expr(src: str) -> str:
    """CEL for one ``X [| default(D)]`` (recursively for ``D``)."""
    src = src.strip()
    head, sep, rest = src.partition("|")
    head = head.strip()
    if head == "namespace":
        base, optional = "request.namespace", None
    elif head == "name":
        base, optional = f"({_NAME})", None
    else:
        m = _LOOKUP.fullmatch(head)
        if m is None:
            raise NotCompilable(f"{head!r} is not namespace, name, annotations['k'] or labels['k']")
        key = m.group(2) if m.group(2) is not None else m.group(3)
        base = f"object.metadata.{m.group(1)}[{cel_string(key)}]"
        optional = f"object.metadata.?{m.group(1)}[{cel_string(key)}]"
    if not sep:
        return base
    rest = rest.strip()
    dm = re.fullmatch(r"default\s*\((.*)\)", rest, re.S)
    if dm is None:
        raise NotCompilable(f"filter {rest.split('(')[0].strip()!r} is not compiled (only default(...))")
    inner = dm.group(1).strip()
    sm = _STRING.fullmatch(inner)
    default = cel_string(sm.group(1) if sm.group(1) is not None else sm.group(2)) if sm else _expr(inner)
    if optional is None:
        return base  # namespace and name are always defined
    return f"{optional}.orValue({default})"


def compile_template(source: str) -> str:
    """CEL (a string expression) for a template; raises :class:`NotCompilable`."""
    if "{%" in source or "{#" in source:
        raise NotCompilable("statements ({% … %}) and comments are not compiled")
    parts: list[str] = []
    pos = 0
    for m in _PART.finditer(source):
        if m.start() > pos:
            parts.append(cel_string(source[pos:m.start()]))
        parts.append(f"({_expr(m.group(1))})")
        pos = m.end()
    if pos < len(source):
        parts.append(cel_string(source[pos:]))
    return " + ".join(parts) if parts else "''"
