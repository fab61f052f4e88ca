"""A fast partial decoder for AdmissionReviews: only the fields injection reads.

Decoding a whole 5.6 KB review builds, and later frees, every object of the pod
(managedFields, probes, owner references, ...): about 15 µs of the core's 35 µs per request.
Injection reads only the pod's name, labels and annotations, its containers' names, mount
paths and env names, and the names in initContainers, volumes and imagePullSecrets (list
lengths give the patch's indices). msgspec decodes into plain dicts shaped by the
TypedDicts below and skips everything else without building it.

Whatever the skeleton cannot stand for exactly is decoded whole instead, so the answer is
the same either way (a property test compares the two on generated, nested and wrongly
typed reviews):

- a field of another type than :mod:`core.podshape` requires: the TypedDicts declare
  exactly its rules, so a skeleton always passes that check and the full path reports the
  field (HTTP 400);
- invalid JSON, and invalid UTF-8 anywhere (msgspec does not check the strings it skips;
  the full decode does);
- nesting deeper than msgspec's recursion limit (the full decode has its own limit, 1024);
- configs with templates or CEL matchConditions, which may read any field of the pod;
- a pod that declares a container of a sidecar's name (merged field by field with the
  sidecar: every field of the pod's container counts, see :func:`stands_for_pod`).

Numbers outside the range of a double (``1e400``) where nothing reads them are skipped here
unchecked; the full path accepts them too (:func:`core.admission.parse`), so both agree.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

import msgspec


class _Named(TypedDict, total=False):
    name: str | None


class _Mount(TypedDict, total=False):
    mountPath: str | None
    name: str | None


class _Port(TypedDict, total=False):
    hostPort: int | None
    containerPort: int | None
    protocol: str | None
    hostIP: str | None


class _Container(TypedDict, total=False):
    name: str | None
    volumeMounts: list[_Mount] | None
    env: list[_Named] | None
    ports: list[_Port] | None


class _Spec(TypedDict, total=False):
    hostNetwork: Any
    restartPolicy: Any
    containers: list[_Container] | None
    initContainers: list[_Container] | None
    volumes: list[_Named] | None
    imagePullSecrets: list[_Named] | None


class _Meta(TypedDict, total=False):
    name: str | None
    generateName: str | None
    namespace: str | None
    labels: dict[str, str] | None
    annotations: dict[str, str] | None


class _Pod(TypedDict, total=False):
    metadata: _Meta | None
    spec: _Spec | None


class _Request(TypedDict, total=False):
    uid: Any
    kind: Any
    resource: Any
    subResource: Any
    name: Any
    namespace: Any
    operation: Any
    object: _Pod | None


class _Review(TypedDict, total=False):
    apiVersion: Any
    kind: Any
    request: _Request | None


_DECODER = msgspec.json.Decoder(_Review)
_ENCODER = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """A skeleton (or part of one) as JSON: keys in decoding order, so equal reviews give equal bytes."""
    return _ENCODER.encode(value)


def decode(body: bytes) -> dict[str, Any] | None:
    """The review's skeleton as plain dicts, or ``None`` when only a full decode will do."""
    try:
        doc = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):  # DecodeError: also ValidationError, its subclass
        return None
    if not body.isascii():  # about 0.5 µs for 6 KB; only a non-ASCII body pays for the decode
        try:
            body.decode()
        except UnicodeDecodeError:
            return None
    return cast(dict[str, Any], doc)


def stands_for_pod(doc: dict[str, Any], sidecar_names: frozenset[str]) -> bool:
    """Whether the skeleton may stand for the whole pod (one walk: this runs on every request).

    - Its metadata is not empty (every real pod has a name or a generateName). The skeleton
      keeps only the keys injection reads, so an empty skeleton metadata may stand for one
      that is not empty, and the status record would differ.
    - It declares no container or init container named in ``sidecar_names``: such a
      container is merged with the sidecar field by field, so every field counts.
    """
    obj = (doc.get("request") or {}).get("object") or {}
    if not obj.get("metadata"):
        return False
    if sidecar_names:
        spec = obj.get("spec") or {}
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or ():
                if c.get("name") in sidecar_names:
                    return False
    return True
