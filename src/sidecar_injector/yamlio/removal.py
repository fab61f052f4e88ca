"""Removing what an injection wrote from a document's text, for uninject and ``--reinject``.

:func:`removals` turns the data edits of :func:`sidecar_injector.core.uninject.uninject`
(remove this key or item, or set this field back to empty) into :class:`~.textdoc.TextEdit`
deletions: a block key or item goes with its whole lines, a flow item with its comma. It is
the inverse of :mod:`.splice`'s insertions and shares only :mod:`.textdoc` with them, so it
lives in its own module; :mod:`.splice` re-exports :func:`removals` for its importers.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sidecar_injector.core.uninject import REMOVE
from sidecar_injector.core.uninject import Edit as DataEdit
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import _key_of
from sidecar_injector.yamlio.textdoc import TextDoc, TextEdit, Unsupported, locate


def removals(text: str, root: Node, base: tuple[str | int, ...], data_edits: list[DataEdit]) -> list[TextEdit]:
    """The text edits that remove (or set back to empty) what ``data_edits`` name."""
    doc = TextDoc(text, root)
    out: list[TextEdit] = []
    flow_runs: dict[int, tuple[Node, set[int]]] = {}
    for e in data_edits:
        path = (*base, *e.path)
        parent = locate(root, path[:-1])
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
