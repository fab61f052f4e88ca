"""Editing a YAML document in its own text: what injection adds, or removes, and nothing else.

libyaml reports where every node of the original text starts and ends. An injection's JSON
Patch only adds (keys to mappings, items to sequences, a whole value where the field was
absent, empty or null), so each operation becomes a piece of new text at one position:

- new keys of a block mapping: new lines after the line of the mapping's last leaf, at the
  column of its keys; new items of a block sequence: new ``- `` lines before the item they
  precede, or after the last one, at the column of its dashes;
- in flow collections (``{a: 1}``, ``[x]``, JSON files): ``, item`` after the last item;
- a field that was empty or null (``labels: {}``, ``volumes:``): its value replaced.

Comments, quoting, block scalars, key order, duplicate keys, CRLF line ends and everything
outside the added parts stay byte for byte, so removal (uninject) can delete exactly the
lines injection wrote. Every edited document is read back and compared with the value it
must have; anything this cannot express (aliases, merge keys, exotic layouts) raises
:class:`Unsupported` and the caller writes that one document whole instead.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sidecar_injector.core.patch import unescape
from sidecar_injector.core.uninject import REMOVE
from sidecar_injector.core.uninject import Edit as DataEdit
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import _key_of, parse, to_python


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


def canonical(value: Any) -> bytes:
    """Comparable bytes of a JSON value: key order ignored, 1 and 1.0 and true kept apart."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class _Doc:
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


def _entry(node: MappingNode, key: str) -> tuple[Node, Node]:
    found = None
    for k, v in node.value:
        if type(k) is ScalarNode and _key_of(k) == key:
            found = (k, v)
    if found is None:
        raise Unsupported(f"no key {key!r}")
    return found


def _locate(root: Node, path: tuple[str | int, ...]) -> Node:
    node: Node | None = root
    for token in path:
        node = child(node, token) if node is not None else None
        if node is None:
            raise Unsupported(f"path {path!r} not found in the text")
    assert node is not None
    return node


class _State:
    __slots__ = ("added", "replaced", "slots")

    def __init__(self, node: Node) -> None:
        self.added: list[str] = []
        self.replaced: list[str] = []
        self.slots: list[int | None] = list(range(len(node.value))) if isinstance(node, SequenceNode) else []


def _tokens(pointer: str) -> list[str]:
    return [unescape(t) for t in pointer[1:].split("/")] if pointer else []


def insertions(text: str, root: Node, base: tuple[str | int, ...], ops: list[dict[str, Any]],
               after: Any) -> list[TextEdit]:
    """The text edits that turn the document into ``after`` (the pod at ``base``), from ``ops``."""
    doc = _Doc(text, root)
    pod_node = _locate(root, base)
    states: dict[int, tuple[Node, _State]] = {}
    for op in ops:
        node = pod_node
        tokens = _tokens(op["path"])
        covered = False
        for depth, token in enumerate(tokens):
            last = depth == len(tokens) - 1
            st = states.get(id(node))
            if st is None:
                st = (node, _State(node))
                states[id(node)] = st
            state = st[1]
            if isinstance(node, MappingNode):
                if token in state.added or token in state.replaced:
                    covered = True
                    break
                nxt = child(node, token)
                if last:
                    if nxt is None:
                        state.added.append(token)
                    else:
                        state.replaced.append(token)
                    break
                if nxt is None:
                    raise Unsupported(f"path {op['path']} not in the text")
                node = nxt
            elif isinstance(node, SequenceNode):
                if not token.isdigit():
                    raise Unsupported(f"index {token!r}")
                idx = int(token)
                if last:
                    state.slots.insert(idx, None)
                    break
                slot = state.slots[idx]
                if slot is None:
                    covered = True
                    break
                node = node.value[slot]
            else:
                raise Unsupported(f"path {op['path']} goes through a scalar")
        del covered
    edits: list[TextEdit] = []
    _emit_edits(doc, pod_node, after, states, edits, 0, set(_ancestors(pod_node, states)))
    return edits


def _ancestors(root: Node, states: dict[int, tuple[Node, _State]]) -> list[int]:
    """ids of the nodes that are, or contain, a changed node."""
    out: list[int] = []

    def walk(node: Node) -> bool:
        hit = id(node) in states and _changed(states[id(node)][1])
        if isinstance(node, MappingNode):
            for _, v in node.value:
                hit = walk(v) or hit
        elif isinstance(node, SequenceNode):
            for v in node.value:
                hit = walk(v) or hit
        if hit:
            out.append(id(node))
        return hit

    walk(root)
    return out


def _changed(state: _State) -> bool:
    return bool(state.added or state.replaced or None in state.slots)


def _emit_edits(doc: _Doc, node: Node, value: Any, states: dict[int, tuple[Node, _State]],
                edits: list[TextEdit], depth: int, wanted: set[int]) -> None:
    if id(node) not in wanted:
        return
    st = states.get(id(node))
    state = st[1] if st else None
    if isinstance(node, MappingNode):
        if not isinstance(value, dict):
            raise Unsupported("a mapping became something else")
        if state is not None:
            for name in state.replaced:
                _replace_value(doc, node, name, value[name], edits, depth)
            if state.added:
                _add_keys(doc, node, [(k, value[k]) for k in state.added], edits, depth)
        seen: set[str] = set()
        for k, v in reversed(node.value):  # the last of duplicate keys is the value
            key = _key_of(k) if type(k) is ScalarNode else None
            if key is None or key in seen:
                continue
            seen.add(key)
            if state is not None and key in state.replaced:
                continue
            if isinstance(v, (MappingNode, SequenceNode)):
                _emit_edits(doc, v, value.get(key), states, edits, depth + 1, wanted)
    elif isinstance(node, SequenceNode):
        if not isinstance(value, list):
            raise Unsupported("a sequence became something else")
        slots: list[int | None] = state.slots if state is not None else list(range(len(node.value)))
        if state is not None and None in slots:
            _add_items(doc, node, slots, value, edits, depth)
        for final, slot in enumerate(slots):
            if slot is not None:
                item = node.value[slot]
                if isinstance(item, (MappingNode, SequenceNode)):
                    _emit_edits(doc, item, value[final], states, edits, depth + 1, wanted)


def _flow_key(key: str) -> str:
    s = emit.scalar(key)
    return s if not any(c in s for c in ",[]{}#&*!|>'%@`") else orjson.dumps(key).decode()


def _replace_value(doc: _Doc, node: MappingNode, key: str, new: Any, edits: list[TextEdit], depth: int) -> None:
    k, v = _entry(node, key)
    if isinstance(v, (MappingNode, SequenceNode)) and not v.flow_style:
        raise Unsupported("replacing a block collection")
    if node.flow_style:
        edits.append(TextEdit(v.start_mark.index, v.end_mark.index, doc.flow(new), depth))
        return
    if isinstance(v, (MappingNode, SequenceNode)) and v.value:
        raise Unsupported("replacing a non-empty collection")
    start = doc.colon_after(k)
    end = v.end_mark.index if (v.end_mark.index > start) else start
    if emit.is_block(new):
        col = doc.column(k.start_mark.index)
        if isinstance(new, dict):
            lines = emit.cached_lines(list(new.items()), col + doc.style.step, doc.style)
        else:
            lines = emit.cached_lines(new, col + doc.style.seq_indent, doc.style)
        text = doc.newline + doc.newline.join(lines)
    else:
        text = " " + emit.scalar(new)
    edits.append(TextEdit(start, end, text, depth))


def _add_keys(doc: _Doc, node: MappingNode, items: list[tuple[str, Any]], edits: list[TextEdit], depth: int) -> None:
    if node.flow_style or not node.value:
        parts = [f"{doc.flow_key(k)}: {doc.flow(v)}" for k, v in items]
        if node.value:
            edits.append(TextEdit(node.value[-1][1].end_mark.index, node.value[-1][1].end_mark.index,
                                  ", " + ", ".join(parts), depth))
        else:
            at = node.start_mark.index + 1
            edits.append(TextEdit(at, at, ", ".join(parts), depth))
        return
    col = doc.column(node.value[0][0].start_mark.index)
    at = doc.block_end(node)
    edits.append(TextEdit(at, at, doc.lines(emit.cached_lines(items, col, doc.style), at), depth))


def _add_items(doc: _Doc, node: SequenceNode, slots: list[int | None], value: list[Any],
               edits: list[TextEdit], depth: int) -> None:
    runs: list[tuple[int | None, list[Any]]] = []  # (original item they precede, or None: the end)
    pending: list[Any] = []
    for final, slot in enumerate(slots):
        if slot is None:
            pending.append(value[final])
        elif pending:
            runs.append((slot, pending))
            pending = []
    if pending:
        runs.append((None, pending))
    if node.flow_style or not node.value:
        for before, items in runs:
            flows = ", ".join(doc.flow(i) for i in items)
            if before is not None:
                at = node.value[before].start_mark.index
                edits.append(TextEdit(at, at, flows + ", ", depth))
            elif node.value:
                at = node.value[-1].end_mark.index
                edits.append(TextEdit(at, at, ", " + flows, depth))
            else:
                at = node.start_mark.index + 1
                edits.append(TextEdit(at, at, flows, depth))
        return
    col = doc.dash(node.value[0])
    if col is None:
        raise Unsupported("a sequence item whose dash is not alone on its line")
    for before, items in runs:
        lines = emit.cached_lines(items, col, doc.style)
        if before is not None:
            at = doc.line_start(doc.dash_pos(node.value[before]))
        else:
            at = doc.block_end(node)
        edits.append(TextEdit(at, at, doc.lines(lines, at), depth))


def removals(text: str, root: Node, base: tuple[str | int, ...], data_edits: list[DataEdit]) -> list[TextEdit]:
    """The text edits that remove (or set back to empty) what ``data_edits`` name."""
    doc = _Doc(text, root)
    out: list[TextEdit] = []
    flow_runs: dict[int, tuple[Node, set[int]]] = {}
    for e in data_edits:
        path = (*base, *e.path)
        parent = _locate(root, path[:-1])
        last = path[-1]
        if isinstance(parent, MappingNode):
            assert isinstance(last, str)
            idx = max(i for i, (k, _) in enumerate(parent.value) if type(k) is ScalarNode and _key_of(k) == last)
            k, v = parent.value[idx]
            if e.value is not REMOVE:
                text_ = emit.scalar(e.value)
                if parent.flow_style:
                    out.append(TextEdit(v.start_mark.index, v.end_mark.index, text_, 0))
                else:
                    start = doc.colon_after(k)
                    end = doc.last_leaf_end(v)
                    out.append(TextEdit(start, end, " " + text_, 0))  # null comes back as `null`
                continue
            if parent.flow_style:
                flow_runs.setdefault(id(parent), (parent, set()))[1].add(idx)
                continue
            start = doc.line_start(k.start_mark.index)
            if doc.text[start:k.start_mark.index].strip(" "):
                raise Unsupported("a key that does not start its line")
            out.append(TextEdit(start, doc.block_end(v), "", 0))
        elif isinstance(parent, SequenceNode):
            assert isinstance(last, int)
            if parent.flow_style:
                flow_runs.setdefault(id(parent), (parent, set()))[1].add(last)
                continue
            item = parent.value[last]
            start = doc.line_start(doc.dash_pos(item))
            out.append(TextEdit(start, doc.block_end(item), "", 0))
        else:
            raise Unsupported("removal under a scalar")
    for node, gone in flow_runs.values():
        out.extend(_flow_removals(node, gone))
    return out


def _flow_removals(node: Node, gone: set[int]) -> list[TextEdit]:
    """Remove the items ``gone`` of a flow collection, with their commas: each run of removed
    items up to the next kept one, or (a run at the end) from the previous kept one's end."""
    if isinstance(node, MappingNode):
        starts = [k.start_mark.index for k, _ in node.value]
        ends = [v.end_mark.index for _, v in node.value]
    else:
        starts = [i.start_mark.index for i in node.value]
        ends = [i.end_mark.index for i in node.value]
    n = len(starts)
    out: list[TextEdit] = []
    i = 0
    while i < n:
        if i not in gone:
            i += 1
            continue
        j = i
        while j + 1 < n and j + 1 in gone:
            j += 1
        if j + 1 < n:
            out.append(TextEdit(starts[i], starts[j + 1], "", 0))
        elif i > 0:
            out.append(TextEdit(ends[i - 1], ends[j], "", 0))
        else:
            out.append(TextEdit(starts[i], ends[j], "", 0))
        i = j + 1
    return out


def check(new_text: str, expected: Any) -> bool:
    """Whether ``new_text`` (one document) reads back as ``expected``."""
    try:
        docs = [d for d in parse(new_text) if d.root is not None]
    except ValueError:
        return False
    return len(docs) == 1 and docs[0].root is not None and canonical(to_python(docs[0].root)) == canonical(expected)
