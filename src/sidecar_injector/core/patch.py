"""JSON Patch (RFC 6902) as kube-apiserver applies it.

The apiserver applies a webhook's patch with evanphx/json-patch v4 to its own ``omitempty``
JSON encoding of the typed object: empty lists and maps are *absent* there, and ``add`` needs
the parent to exist. So a list or map that is absent *or empty* in the request is created
whole (``add /spec/initContainers`` with the full list), never appended to.

:class:`PatchBuilder` records the operations and, alongside, builds the mutated pod by
copy-on-write, so the input pod is never modified and the two cannot disagree.
:func:`apply_patch` applies a patch with the apiserver's rules (used by tests and by
``explain``); :func:`strip_empty` is the apiserver's view of a request object.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core.types import JSONPatchOp


def escape(token: str) -> str:
    """Escape one JSON-pointer token: ``~`` as ``~0`` and ``/`` as ``~1`` (that order)."""
    if "~" in token:
        token = token.replace("~", "~0")
    if "/" in token:
        token = token.replace("/", "~1")
    return token


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


# Pod fields that are Go maps: encoded with omitempty, so an empty one is absent. Empty
# objects elsewhere are structs (``emptyDir: {}``), which Go's encoder keeps.
_MAP_FIELDS = frozenset({"labels", "annotations", "nodeSelector", "limits", "requests", "overhead", "matchLabels"})


def strip_empty(value: Any) -> Any:
    """The object as the apiserver serialises it before patching.

    Empty lists, empty maps (see ``_MAP_FIELDS``) and nulls are absent; empty structs stay.
    """
    if isinstance(value, dict):
        return {
            k: strip_empty(v)
            for k, v in value.items()
            if not (v is None or (isinstance(v, list) and not v) or (k in _MAP_FIELDS and v == {}))
        }
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value


_POINTERS: dict[tuple[str | int, ...], str] = {}


class PatchBuilder:
    """Collects patch operations while building the mutated copy of a document.

    Every method takes the path as a tuple of raw (unescaped) tokens from the root. Mutation
    is copy-on-write: each container on the way to a change is shallow-copied once, so the
    original stays untouched and unchanged subtrees are shared.
    """

    __slots__ = ("_copied", "ops", "root")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.root: dict[str, Any] = dict(doc)
        self.ops: list[JSONPatchOp] = []
        self._copied: set[int] = {id(self.root)}

    @staticmethod
    def pointer(path: tuple[str | int, ...]) -> str:
        """The JSON pointer of ``path``. Parent paths recur on every request: cached."""
        cached = _POINTERS.get(path)
        if cached is None:
            cached = "".join("/" + (str(p) if isinstance(p, int) else escape(p)) for p in path)
            if len(_POINTERS) < 4096:
                _POINTERS[path] = cached
        return cached

    def _writable(self, path: tuple[str | int, ...]) -> Any:
        """Return the container at ``path`` in the mutated copy, copying it first if needed."""
        node: Any = self.root
        for token in path:
            child = node[token]
            if id(child) not in self._copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                node[token] = child
                self._copied.add(id(child))
            node = child
        return node

    def set_key(self, path: tuple[str | int, ...], key: str, value: Any) -> None:
        """``add`` a key to an existing object (replaces the value if present)."""
        self._set(self._writable(path), path, key, value)

    def _set(self, parent: Any, path: tuple[str | int, ...], key: str, value: Any) -> None:
        # The op and the mutated document share ``value``; it is not marked as copied, so a
        # later write below it (e.g. labels into a metadata we created) copies it first and
        # the recorded op keeps the value it was recorded with.
        parent[key] = value
        self.ops.append({"op": "add", "path": self.pointer((*path, key)), "value": value})

    def _own(self, parent: Any, key: str, current: Any) -> Any:
        """``parent[key]`` (``current``) made safe to write: copied once."""
        if id(current) in self._copied:
            return current
        current = dict(current) if isinstance(current, dict) else list(current)
        parent[key] = current
        self._copied.add(id(current))
        return current

    def merge_map(self, path: tuple[str | int, ...], key: str, entries: dict[str, Any]) -> None:
        """Add ``entries`` to the map ``path/key``, creating the map whole if absent or empty."""
        if not entries:
            return
        parent = self._writable(path)
        current = parent.get(key)
        if not current or not isinstance(current, dict):
            self._set(parent, path, key, dict(entries))
            return
        target = self._own(parent, key, current)
        base = self.pointer((*path, key)) + "/"
        ops = self.ops
        for k, v in entries.items():
            target[k] = v
            ops.append({"op": "add", "path": base + escape(k), "value": v})

    def insert_items(self, path: tuple[str | int, ...], key: str, index: int, items: list[Any]) -> None:
        """Insert ``items`` into the list ``path/key`` at ``index`` (``-1``: at the end).

        An absent or empty list is created whole; otherwise each item is added at an explicit,
        non-negative index (json-patch v4 accepts negative ones, but other appliers do not).
        """
        if not items:
            return
        parent = self._writable(path)
        current = parent.get(key)
        if not current or not isinstance(current, list):
            self._set(parent, path, key, list(items))
            return
        target = self._own(parent, key, current)
        at = len(target) if index < 0 else index
        base = self.pointer((*path, key)) + "/"
        ops = self.ops
        for offset, item in enumerate(items):
            target.insert(at + offset, item)
            ops.append({"op": "add", "path": f"{base}{at + offset}", "value": item})


class PatchRecorder:
    """:class:`PatchBuilder`'s operations without the mutated copy, for the webhook.

    The webhook serialises the patch and never looks at the mutated pod, so building it
    (copying each map and list on the way to a change) is wasted work on every request.
    This reads the original document instead. That is exact because :mod:`core.build`
    touches each map or list once: what a later operation reads was not changed by an
    earlier one, except a parent created here (``metadata`` on a pod without it), which
    is tracked. ``root`` is the original document, unchanged.
    """

    __slots__ = ("_created", "ops", "root")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.root = doc
        self.ops: list[JSONPatchOp] = []
        self._created: set[tuple[str | int, ...]] = set()

    pointer = staticmethod(PatchBuilder.pointer)

    def _current(self, path: tuple[str | int, ...], key: str) -> Any:
        if self._created and (path in self._created or (*path, key) in self._created):
            return None  # created empty by this patch
        node: Any = self.root
        for token in path:
            node = node[token]
        return node.get(key)

    def set_key(self, path: tuple[str | int, ...], key: str, value: Any) -> None:
        self._created.add((*path, key))
        self.ops.append({"op": "add", "path": self.pointer((*path, key)), "value": value})

    def merge_map(self, path: tuple[str | int, ...], key: str, entries: dict[str, Any]) -> None:
        if not entries:
            return
        current = self._current(path, key)
        if not current or not isinstance(current, dict):
            self.set_key(path, key, dict(entries))
            return
        base = self.pointer((*path, key)) + "/"
        ops = self.ops
        for k, v in entries.items():
            ops.append({"op": "add", "path": base + escape(k), "value": v})

    def insert_items(self, path: tuple[str | int, ...], key: str, index: int, items: list[Any]) -> None:
        if not items:
            return
        current = self._current(path, key)
        if not current or not isinstance(current, list):
            self.set_key(path, key, list(items))
            return
        at = len(current) if index < 0 else index
        base = self.pointer((*path, key)) + "/"
        ops = self.ops
        for item in items:
            ops.append({"op": "add", "path": f"{base}{at}", "value": item})
            at += 1


class PatchError(ValueError):
    """A patch does not apply (the apiserver would reject the pod with a 500)."""


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid pointer {pointer!r}")
    return [unescape(t) for t in pointer[1:].split("/")]


def apply_patch(doc: Any, ops: list[JSONPatchOp]) -> Any:
    """Apply ``ops`` to a deep copy of ``doc`` with json-patch v4's ``add`` semantics.

    Only ``add`` is supported: the injector emits nothing else. The parent must exist; on a
    list, the index must be within ``0..len``; ``-`` appends.
    """
    import copy

    result = copy.deepcopy(doc)
    for op in ops:
        if op.get("op") != "add":
            raise PatchError(f"unsupported op {op.get('op')!r}")
        tokens = _parse_pointer(op["path"])
        if not tokens:
            result = copy.deepcopy(op["value"])
            continue
        parent: Any = result
        for t in tokens[:-1]:
            if isinstance(parent, dict):
                if t not in parent:
                    raise PatchError(f"add operation does not apply: doc is missing path: {op['path']}")
                parent = parent[t]
            elif isinstance(parent, list):
                if not t.isdigit() or int(t) >= len(parent):
                    raise PatchError(f"add operation does not apply: doc is missing path: {op['path']}")
                parent = parent[int(t)]
            else:
                raise PatchError(f"add operation does not apply: doc is missing path: {op['path']}")
        last = tokens[-1]
        value = copy.deepcopy(op["value"])
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif last.isdigit() and int(last) <= len(parent):
                parent.insert(int(last), value)
            else:
                raise PatchError(f"add operation does not apply: index out of range: {op['path']}")
        else:
            raise PatchError(f"add operation does not apply: doc is missing path: {op['path']}")
    return result
