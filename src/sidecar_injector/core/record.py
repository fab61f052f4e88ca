"""The status annotation a pod gets when configs are injected: what, in which versions, and
exactly what was added (so ``uninject``, ``status`` and ``explain`` need no configs).

Separate from :mod:`core.build`, which fills a :class:`Record` while it builds the patch and
calls :func:`status_annotation` once at the end; the policy compiler calls it too, at compile
time, so both ways of injecting write the same annotation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

#: List fields of a container merged item by item (by this key) when the pod declares a sidecar.
MERGE_KEYS = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}


class Record:
    """What one injection added to a pod, by name, for the status annotation's ``added``.

    Removal (``uninject``) reads only this, never the configs, so it works after a config
    changed or was deleted. See :func:`status_annotation` for the format.
    """

    __slots__ = ("annotations", "empty", "into", "labels", "lists")

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.annotations: list[str] = []
        self.lists: dict[str, list[str]] = {}
        self.into: dict[str, dict[str, Any]] = {}
        self.empty: dict[str, Any] = {}

    def _container(self, c: dict[str, Any]) -> dict[str, Any]:
        return self.into.setdefault(str(c.get("name")), {})

    def into_lists(self, c: dict[str, Any], key: str, added: list[Any]) -> None:
        if not added:
            return
        entry = self._container(c)
        entry.setdefault(key, []).extend(added)
        if key in c and not c[key]:
            entry.setdefault("empty", {})[key] = c[key]

    def merged(self, c: dict[str, Any], plan: list[tuple[str, Any]]) -> None:
        for key, value in plan:
            if key not in c or c[key] is None:
                self._container(c).setdefault("fields", []).append(key)
                if key in c:
                    self._container(c).setdefault("empty", {})[key] = None
            else:
                self.into_lists(c, key, [i.get(MERGE_KEYS[key]) for i in value])

    def signature(self) -> bytes:
        """The record's content as bytes (a key for :func:`status_annotation`'s memo; one C call)."""
        return orjson.dumps((self.labels, self.annotations, self.lists, self.into, self.empty))

    def as_dict(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        """The record, merged after a previous injection's (the pod's status before)."""
        out: dict[str, Any] = {}
        prev = previous or {}
        for key, mine in (("labels", self.labels), ("annotations", self.annotations), *self.lists.items()):
            merged = [*(prev.get(key) or []), *mine]
            if merged:
                out[key] = merged
        for key in ("initContainers", "containers", "volumes", "imagePullSecrets"):
            if key in prev and key not in out:
                out[key] = prev[key]
        into: dict[str, Any] = {k: dict(v) for k, v in (prev.get("into") or {}).items()}
        for name, entry in self.into.items():
            have = into.setdefault(name, {})
            for k, v in entry.items():
                if isinstance(v, dict):
                    have[k] = {**v, **(have.get(k) or {})}
                else:
                    have[k] = [*(have.get(k) or []), *v]
        if into:
            out["into"] = into
        empty = {**self.empty, **(prev.get("empty") or {})}
        if empty:
            out["empty"] = empty
        return out


def status_annotation(
    names: list[str],
    digests: list[tuple[str, str]],
    previous_hash: str | None,
    record: Record,
    previous_raw: Any,
) -> str:
    """The status annotation: the configs injected, a hash, and what was added.

    ``{"injected": [names], "hash": "sha256:…", "digests": {name: 16 hex}, "added": {…}}``

    - ``hash`` covers each injected config's rendered content (see ``content_digest``), in
      order, so a reader that re-renders the same configs for the pod can tell whether its
      sidecars are current. When earlier configs were injected before, their hash is chained in.
    - ``digests``: the first 16 hex digits of each config's own content digest, so ``explain``
      can say which config changed.
    - ``added``: what the injector added, by name, so ``uninject`` removes exactly that without
      the configs: ``labels``/``annotations`` (keys, the default-container annotation when it
      set it), ``initContainers``/``containers``/``volumes``/``imagePullSecrets`` (names),
      ``into`` (per container name of the pod's own containers: ``env`` names,
      ``volumeMounts`` paths, ``ports`` numbers appended, ``fields`` set on a pod-declared
      sidecar), ``empty`` (fields that were present but empty or null before, with that value:
      ``"spec.volumes": []``, or inside an ``into`` entry). Empty entries are left out.
    - ``unrecorded``: configs injected before this format (no ``added``): they cannot be
      removed exactly.

    For static configs the same few annotations recur on every pod: they are memoised.
    """
    if not (isinstance(previous_raw, str) and previous_raw):
        # A pod's first injection (the common case): the annotation depends only on what
        # the record holds, so it is looked up before anything is built.
        fresh_key = (tuple(names), tuple(digests), previous_hash, record.signature())
        cached = _FRESH_CACHE.get(fresh_key)
        if cached is None:
            cached = _status_of(names, digests, previous_hash, record, None)
            if len(_FRESH_CACHE) >= 1024:  # templated configs give a new key per pod: stay small
                _FRESH_CACHE.clear()
            _FRESH_CACHE[fresh_key] = cached
        return cached
    previous: dict[str, Any] | None = None
    try:
        loaded = orjson.loads(previous_raw)
    except orjson.JSONDecodeError:
        loaded = None
    previous = loaded if isinstance(loaded, dict) else None
    return _status_of(names, digests, previous_hash, record, previous)


def _status_of(
    names: list[str],
    digests: list[tuple[str, str]],
    previous_hash: str | None,
    record: Record,
    previous: dict[str, Any] | None,
) -> str:
    added = record.as_dict(previous.get("added") if previous and isinstance(previous.get("added"), dict) else None)
    short = dict((previous or {}).get("digests") or {}) if isinstance((previous or {}).get("digests"), dict) else {}
    short.update((n, d[:16]) for n, d in digests)
    unrecorded: list[str] = []
    if previous is not None:
        prev_names: Any = previous.get("injected") if isinstance(previous.get("injected"), list) else []
        if "added" not in previous:
            unrecorded = [n for n in prev_names if isinstance(n, str)]
        elif isinstance(previous.get("unrecorded"), list):
            unrecorded = list(previous["unrecorded"])
    extra = orjson.dumps({"digests": short, "added": added, **({"unrecorded": unrecorded} if unrecorded else {})})
    key = (tuple(names), tuple(digests), previous_hash, extra)
    cached = _STATUS_CACHE.get(key)
    if cached is None:
        payload = orjson.dumps([previous_hash, digests] if previous_hash else digests)
        digest = hashlib.sha256(payload).hexdigest()
        head = orjson.dumps({"injected": names, "hash": f"sha256:{digest}"})
        cached = (head[:-1] + b"," + extra[1:]).decode()
        if len(_STATUS_CACHE) >= 1024:  # templated configs give a new key per pod: stay small
            _STATUS_CACHE.clear()
        _STATUS_CACHE[key] = cached
    return cached


_STATUS_CACHE: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...], str | None, bytes], str] = {}
_FRESH_CACHE: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...], str | None, bytes], str] = {}
