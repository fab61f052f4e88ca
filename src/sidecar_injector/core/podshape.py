"""The shape of the pod fields injection reads, checked before :func:`core.inject.inject` runs.

Why a separate check: injection reads a few fields of a pod it does not otherwise trust
(labels for selectors, container names, mount paths, env names, the names in volumes and
imagePullSecrets) and hashes or compares them. A pod from kube-apiserver always has them as
its schema says; a request from anyone else may not (``mountPath`` a list, ``env[].name`` an
object, a list as a label value), which used to surface as ``TypeError: unhashable type``
deep in injection and an HTTP 500, or only for some configs. Checked here, up front and
whatever the config, a wrongly typed field is the client's error: :class:`InputError`, which
:func:`core.admission.review` answers with HTTP 400 and this one-line reason.

Rules (``null`` counts as absent everywhere, as Go's decoder treats it):

- ``metadata`` an object; its ``name``, ``generateName``, ``namespace`` strings;
  ``labels`` and ``annotations`` objects whose values are strings;
- ``spec`` an object; ``containers``, ``initContainers``, ``volumes``, ``imagePullSecrets``
  lists of objects whose ``name`` is a string;
- in each of ``spec.containers`` and ``spec.initContainers``: ``volumeMounts`` a list of
  objects whose ``mountPath`` and ``name`` are strings, ``env`` a list of objects whose
  ``name`` is a string, ``ports`` a list of objects (host ports are compared with the
  sidecars').

:mod:`core.skeleton` declares exactly these types to msgspec, so a review its partial
decode accepts always passes this check (a property test holds the two together), and
the check itself costs nothing on that fast path: it runs on fully decoded reviews only.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.core.errors import InputError

__all__ = ["check"]

_KEY_SHOWN = 60


def _what(value: Any) -> str:
    return type(value).__name__


def _key(key: str) -> str:
    """A map key for a message: quoted, clipped (it is the client's text), on one line."""
    shown = key if len(key) <= _KEY_SHOWN else key[:_KEY_SHOWN] + "..."
    return repr(shown)


def _object(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InputError(f"{where} is a {_what(value)}, not an object")


def _list(value: Any, where: str) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise InputError(f"{where} is a {_what(value)}, not a list")


def _string(obj: dict[str, Any], key: str, where: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}.{key} is a {_what(value)}, not a string")


def _items(items: list[Any] | None, where: str, *keys: str) -> None:
    """A list of objects whose ``keys`` (a name, a mount path) are strings."""
    if not items:
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"{where}[{i}] is a {_what(item)}, not an object")
        for key in keys:
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{where}[{i}].{key} is a {_what(value)}, not a string")


def check(pod: dict[str, Any]) -> None:
    """Raise :class:`InputError` naming the first field of ``pod`` injection cannot read."""
    meta = _object(pod.get("metadata"), "metadata")
    if meta:
        for key in ("name", "generateName", "namespace"):
            _string(meta, key, "metadata")
        for key in ("labels", "annotations"):
            values = _object(meta.get(key), f"metadata.{key}")
            if values:
                for k, v in values.items():
                    if not isinstance(v, str):
                        raise InputError(f"metadata.{key}[{_key(k)}] is a {_what(v)}, not a string")
    spec = _object(pod.get("spec"), "spec")
    if not spec:
        return
    containers = spec.get("containers")
    if containers is not None and not isinstance(containers, list):
        raise InputError(f"the pod has no spec.containers list: spec.containers is a {_what(containers)}")
    for key in ("containers", "initContainers"):
        where = f"spec.{key}"
        items = _list(spec.get(key), where)
        _items(items, where, "name")
        if items:
            for i, c in enumerate(items):
                at = f"{where}[{i}]"
                _items(_list(c.get("volumeMounts"), f"{at}.volumeMounts"), f"{at}.volumeMounts", "mountPath", "name")
                _items(_list(c.get("env"), f"{at}.env"), f"{at}.env", "name")
                ports = _list(c.get("ports"), f"{at}.ports")
                _items(ports, f"{at}.ports", "protocol", "hostIP")
                for j, port in enumerate(ports or ()):
                    for key in ("hostPort", "containerPort"):
                        value = port.get(key)
                        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                            raise InputError(f"{at}.ports[{j}].{key} is a {_what(value)}, not an integer")
    for key in ("volumes", "imagePullSecrets"):
        _items(_list(spec.get(key), f"spec.{key}"), f"spec.{key}", "name")
