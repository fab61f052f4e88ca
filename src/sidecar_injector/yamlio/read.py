"""Reading YAML streams as kubectl reads them, keeping where every node sits in the text.

kubectl reads manifests with ``sigs.k8s.io/yaml`` (go-yaml v2's resolution, then JSON): a
plain scalar is a bool only for ``y|yes|on|true|n|no|off|false`` (in three casings), an int
for what Go's ``strconv.ParseInt(s, 0, 64)`` takes after removing ``_`` (``0x1F``, ``0o17``,
``017``, ``0b101``), a float for ``1.5``, ``1e3``, ``.inf``; everything else is a string:
``10:30`` (no sexagesimal), ``2024-01-01T10:00:00Z`` (timestamps stay text), ``=``. Keys
become strings (``on:`` is the key ``"true"``, ``1:`` the key ``"1"``); a duplicate key's
last value wins. PyYAML's YAML 1.1 resolvers differ on all of these, so only its parser
(libyaml, in C) is used here: the values are resolved by :func:`resolve_plain`.

Known difference: a plain scalar with the non-specific tag ``!`` (``! 12``) is resolved by
value here (libyaml does not tell it apart from an untagged one); go-yaml keeps it a string.

The parse keeps the node tree with character offsets (libyaml's marks), which
:mod:`~sidecar_injector.yamlio.splice` uses to write changes into the original text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml._yaml import CParser
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_STR = "tag:yaml.org,2002:str"
_PLAIN = "?plain"  # an untagged plain scalar: resolved by value
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_SPECIAL: dict[str, Any] = {
    **_BOOLS,
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
#: go-yaml v2's ``yamlStyleFloat``.
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
#: Go's strconv.ParseInt(s, 0, 64) after go-yaml removed the underscores.
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
#: Go's strconv.ParseFloat syntax (decimal and hexadecimal, inf/nan words), for the '.' hint.
_GO_FLOAT = re.compile(
    r"[-+]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
    r"[pP][-+]?[0-9]+|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])\Z"
)
_INT64 = 1 << 63
_UINT64 = 1 << 64


def _go_int(text: str) -> int:
    sign = -1 if text[0] == "-" else 1
    body = text.lstrip("+-")
    low = body[:2].lower()
    if low == "0x":
        v = int(body[2:], 16)
    elif low == "0o":
        v = int(body[2:], 8)
    elif low == "0b":
        v = int(body[2:], 2)
    elif len(body) > 1 and body[0] == "0":
        v = int(body[1:], 8)
    else:
        v = int(body)
    return sign * v


def resolve_plain(text: str) -> Any:
    """The value of a plain (unquoted) scalar as go-yaml v2 resolves it into ``interface{}``."""
    if not text:
        return None
    c = text[0]
    if c in "ynYNtTfFoO~":
        return _SPECIAL.get(text, text)
    if c == ".":
        special = _SPECIAL.get(text)
        if special is not None or text in _SPECIAL:
            return special
        if _GO_FLOAT.match(text):
            try:
                return float.fromhex(text) if "x" in text.lower() else float(text)
            except ValueError:
                return text
        return text
    if c.isdigit() or c in "+-":
        special = _SPECIAL.get(text)
        if special is not None:
            return special
        # A timestamp (YYYY-...) stays a string: go-yaml keeps the text in an interface{}.
        plain = text.replace("_", "")
        if plain and _GO_INT.match(plain):
            v = _go_int(plain)
            if -_INT64 <= v < _INT64 or (plain[0] not in "+-" and 0 <= v < _UINT64):
                return v
        if _YAML_FLOAT.match(plain):
            f = float(plain)
            return text if math.isinf(f) else f
        return text
    return text


def _key(value: Any) -> str:
    """A mapping key as sigs.k8s.io/yaml turns it into a JSON object key."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value >= _INT64:
            raise ValueError(f"unsupported map key of type uint64: {value}")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return _format_float32(value)
    raise ValueError(f"unsupported map key: {value!r}")


def _format_float32(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 32): the shortest text that reads back as the float32."""
    import struct

    f32 = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        s = f"{f32:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(s)))[0] == f32:
            break
    mant, _, exp = s.partition("e")
    if exp:
        e = int(exp)
        if -4 <= e < 21:
            return repr(float(s)).removesuffix(".0")
        return f"{mant}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    return s


class YAMLInputError(ValueError):
    """The text is not YAML, or not YAML kubectl can read; the message says where."""


class _Parser(CParser):
    """libyaml's parser and composer, with every node tagged by its kind only: values are
    resolved by :func:`to_python` with kubectl's rules, never PyYAML's."""

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP


def to_python(node: Node) -> Any:
    """A node as kubectl reads it (JSON-compatible values; aliases share the object)."""
    return _Converter().convert(node)


class _Converter:
    __slots__ = ("memo",)

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def convert(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        memo = self.memo
        known = memo.get(id(node))
        if known is not None:
            return known
        if isinstance(node, SequenceNode):
            out_list: list[Any] = []
            memo[id(node)] = out_list
            conv = self.convert
            scalar = self.scalar
            for item in node.value:
                out_list.append(scalar(item) if type(item) is ScalarNode else conv(item))
            return out_list
        out: dict[str, Any] = {}
        memo[id(node)] = out
        merges: list[Node] = []
        for k, v in node.value:
            if type(k) is ScalarNode:
                if k.tag == _PLAIN and k.value == "<<":
                    merges.append(v)
                    continue
                key = _key(self.scalar(k))
            else:
                raise YAMLInputError(f"line {k.start_mark.line + 1}: a mapping key is a collection")
            out[key] = self.scalar(v) if type(v) is ScalarNode else self.convert(v)
        for m in merges:  # explicit keys win over merged ones; earlier merges win over later
            sources = m.value if isinstance(m, SequenceNode) else [m]
            for src in sources:
                merged = self.convert(src)
                if not isinstance(merged, dict):
                    raise YAMLInputError(f"line {m.start_mark.line + 1}: map merge requires map or sequence of maps")
                for mk, mv in merged.items():
                    out.setdefault(mk, mv)
        return out

    @staticmethod
    def scalar(node: ScalarNode) -> Any:
        tag = node.tag
        if tag == _PLAIN:
            return resolve_plain(node.value)
        if tag == _STR:
            return node.value
        return _tagged(node)


def _tagged(node: ScalarNode) -> Any:
    """An explicitly tagged scalar: the core tags resolve as go-yaml does, others are text."""
    tag = node.tag
    value = node.value
    if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:binary", "!"):
        return value
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
               "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"):
        resolved = resolve_plain(value)
        return resolved
    return value


@dataclass(slots=True)
class Document:
    """One document of a stream: its root node (``None`` for an empty document)."""

    index: int
    """1-based, in the stream."""
    root: Node | None
    start: int
    end: int
    """Character offsets of the document's content (its root node) in the text."""


def parse(text: str, label: str = "stdin") -> list[Document]:
    """Every document of ``text``, with nodes and offsets. Raises :class:`YAMLInputError`."""
    parser = _Parser(text)
    docs: list[Document] = []
    try:
        while parser.check_node():
            node = parser.get_node()
            assert node is not None
            if isinstance(node, ScalarNode) and node.value == "" and node.tag == _PLAIN:
                docs.append(Document(len(docs) + 1, None, node.start_mark.index, node.end_mark.index))
            else:
                docs.append(Document(len(docs) + 1, node, node.start_mark.index, node.end_mark.index))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise YAMLInputError(f"{label}: not valid YAML{where}: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise YAMLInputError(f"{label}: not valid YAML: {e}") from None
    return docs


def load_all(text: str, label: str = "stdin") -> list[Any]:
    """Every document's value as kubectl reads it (``None`` for empty documents)."""
    out = []
    for d in parse(text, label):
        try:
            out.append(None if d.root is None else to_python(d.root))
        except ValueError as e:
            raise YAMLInputError(f"{label}, document {d.index}: {e}") from None
    return out


def mapping_get(node: Node, key: str) -> Node | None:
    """The value node of ``key`` in a mapping node (the last one if the key is repeated)."""
    if not isinstance(node, MappingNode):
        return None
    found = None
    for k, v in node.value:
        if type(k) is ScalarNode and _key_of(k) == key:
            found = v
    return found


def _key_of(k: ScalarNode) -> str | None:
    try:
        return _key(_Converter.scalar(k))
    except ValueError:
        return None


def head(node: Node) -> tuple[str | None, str | None]:
    """``(apiVersion, kind)`` of a document's root, reading only those two scalars."""
    api = mapping_get(node, "apiVersion")
    kind = mapping_get(node, "kind")
    a = _Converter.scalar(api) if isinstance(api, ScalarNode) else None
    k = _Converter.scalar(kind) if isinstance(kind, ScalarNode) else None
    return (a if isinstance(a, str) else None), (k if isinstance(k, str) else None)
