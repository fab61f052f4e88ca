"""One YAML document's text and its libyaml nodes: where things are, and how edits apply.

:class:`TextDoc` answers the questions about positions that both writing injection into a
document (:mod:`.splice`) and taking it out again (:mod:`.removal`) ask: the column of a key
or of a sequence item's dash, where a block ends, what follows a key's ``:``, and the
indentation, newline and JSON-ness the document uses. :func:`child`, :func:`entry` and
:func:`locate` find nodes by path; :func:`apply_edits` writes a list of :class:`TextEdit`
into the text. This module is separate because it knows nothing of JSON Patch or of
uninject's edits, only of positions in the text, and both directions share it.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import _key_of


class Unsupported(Exception):
    """The change cannot be written into this document's text; write the document whole."""


class TextEdit(NamedTuple):
    start: int
    end: int
    text: str
    depth: int
    """Deeper edits at the same position come first (the inner structure's end)."""


def apply_edits(text: str, edits: list[TextEdit], offset: int = 0) -> str:
    out: list[str] = []
    pos = 0
    for e in sorted(edits, key=lambda e: (e.start, -e.depth)):
        start, end = e.start - offset, e.end - offset
        if start < pos:
            raise Unsupported("overlapping edits")
        out.append(text[pos:start])
        out.append(e.text)
        pos = end
    out.append(text[pos:])
    return "".join(out)


class TextDoc:
    """One document's text and nodes, with the helpers to find lines and columns."""

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self.root = root
        self.newline = "\r\n" if "\r\n" in text[root.start_mark.index:root.end_mark.index] else "\n"
        self.style = emit.Style(*self._indents(root), newline=self.newline)
        # A JSON document (kubectl reads a stream starting with "{" as JSON) stays JSON.
        self.json = text[root.start_mark.index:root.start_mark.index + 1] == "{" and text.lstrip().startswith("{")

    def flow(self, value: Any) -> str:
        return orjson.dumps(value).decode() if self.json else emit.flow(value)

    def flow_key(self, key: str) -> str:
        return orjson.dumps(key).decode() if self.json else _flow_key(key)

    def _indents(self, root: Node) -> tuple[int, int]:
        """(mapping step, sequence indent under its key) as the document writes them."""
        step, seq = 2, None
        stack = [root]
        seen = 0
        while stack and seen < 200:
            node = stack.pop()
            seen += 1
            if isinstance(node, MappingNode) and not node.flow_style:
                for k, v in node.value:
                    if isinstance(v, MappingNode) and not v.flow_style and v.value and \
                            v.start_mark.line > k.start_mark.line:
                        step = max(1, v.value[0][0].start_mark.column - k.start_mark.column)
                    if isinstance(v, SequenceNode) and not v.flow_style and v.value and seq is None:
                        dash = self.dash(v.value[0])
                        if dash is not None and v.start_mark.line > k.start_mark.line:
                            seq = max(0, dash - self.column(k.start_mark.index))
                    stack.append(v)
            elif isinstance(node, SequenceNode):
                stack.extend(node.value)
        return step, (0 if seq is None else seq)

    def column(self, pos: int) -> int:
        return pos - (self.text.rfind("\n", 0, pos) + 1)

    def line_start(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1

    def line_end_after(self, pos: int) -> int:
        """Where the next line begins after ``pos`` (or the end of the text)."""
        if pos > 0 and self.text[pos - 1] == "\n":
            return pos
        i = self.text.find("\n", pos)
        return len(self.text) if i < 0 else i + 1

    def dash(self, item: Node) -> int | None:
        """The column of the ``-`` of a block sequence item, if it is alone before the item."""
        pos = item.start_mark.index - 1
        text = self.text
        while pos >= 0 and text[pos] == " ":
            pos -= 1
        if pos < 0 or text[pos] != "-":
            return None
        start = self.line_start(pos)
        if text[start:pos].strip(" "):
            return None
        return pos - start

    def dash_pos(self, item: Node) -> int:
        col = self.dash(item)
        if col is None:
            raise Unsupported("a sequence item whose dash is not alone on its line")
        return self.line_start(item.start_mark.index) + col

    @staticmethod
    def last_leaf_end(node: Node) -> int:
        while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
            last = node.value[-1]
            node = last[1] if isinstance(node, MappingNode) else last
        return int(node.end_mark.index)

    def block_end(self, node: Node) -> int:
        return self.line_end_after(self.last_leaf_end(node))

    def lines(self, lines: list[str], at: int) -> str:
        nl = self.newline
        body = nl.join(lines) + nl
        if at == len(self.text) and not self.text.endswith("\n"):
            return nl + body
        return body

    def colon_after(self, key: Node) -> int:
        """The position just after the ``:`` that follows a mapping key."""
        i = self.text.find(":", key.end_mark.index)
        if i < 0:
            raise Unsupported("no ':' after a key")
        return i + 1


def child(node: Node, token: str | int) -> Node | None:
    """A mapping's value for the key ``token`` (the last of duplicates) or a sequence's item."""
    if isinstance(node, MappingNode):
        found = None
        for k, v in node.value:
            if type(k) is ScalarNode and _key_of(k) == token:
                found = v
        return found
    if isinstance(node, SequenceNode) and isinstance(token, int) and 0 <= token < len(node.value):
        item: Node = node.value[token]
        return item
    return None


def entry(node: MappingNode, key: str) -> tuple[Node, Node]:
    """The (key, value) nodes of ``key`` in a mapping (the last of duplicates, as it is read)."""
    found = None
    for k, v in node.value:
        if type(k) is ScalarNode and _key_of(k) == key:
            found = (k, v)
    if found is None:
        raise Unsupported(f"no key {key!r}")
    return found


def locate(root: Node, path: tuple[str | int, ...]) -> Node:
    """The node at ``path`` under ``root``, or :class:`Unsupported` if the text has none there."""
    node: Node | None = root
    for token in path:
        node = child(node, token) if node is not None else None
        if node is None:
            raise Unsupported(f"path {path!r} not found in the text")
    assert node is not None
    return node


def _flow_key(key: str) -> str:
    s = emit.scalar(key)
    return s if not any(c in s for c in ",[]{}#&*!|>'%@`") else orjson.dumps(key).decode()
