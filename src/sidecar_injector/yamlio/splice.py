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

This module holds the insertions and :func:`check`; finding nodes and positions in the text,
and applying the edits, are in :mod:`.textdoc`, and the deletions of uninject in
:mod:`.removal`. The names importers take from here (:class:`TextEdit`, :class:`Unsupported`,
:func:`apply_edits`, :func:`removals`) are re-exported.
"""

from __future__ import annotations

from typing import Any

import orjson
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sidecar_injector.core.patch import unescape
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import _key_of, parse, to_python
from sidecar_injector.yamlio.removal import removals
from sidecar_injector.yamlio.textdoc import TextDoc, TextEdit, Unsupported, apply_edits, child, entry, locate

__all__ = ["TextEdit", "Unsupported", "apply_edits", "canonical", "check", "insertions", "removals"]


def canonical(value: Any) -> bytes:
    """Comparable bytes of a JSON value: key order ignored, 1 and 1.0 and true kept apart."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


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
    doc = TextDoc(text, root)
    pod_node = locate(root, base)
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


def _emit_edits(doc: TextDoc, node: Node, value: Any, states: dict[int, tuple[Node, _State]],
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


def _replace_value(doc: TextDoc, node: MappingNode, key: str, new: Any, edits: list[TextEdit], depth: int) -> None:
    k, v = entry(node, key)
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


def _add_keys(doc: TextDoc, node: MappingNode, items: list[tuple[str, Any]], edits: list[TextEdit], depth: int) -> None:
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


def _add_items(doc: TextDoc, node: SequenceNode, slots: list[int | None], value: list[Any],
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


def check(new_text: str, expected: Any) -> bool:
    """Whether ``new_text`` (one document) reads back as ``expected``."""
    try:
        docs = [d for d in parse(new_text) if d.root is not None]
    except ValueError:
        return False
    return len(docs) == 1 and docs[0].root is not None and canonical(to_python(docs[0].root)) == canonical(expected)
