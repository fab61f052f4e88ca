"""Type names for the plain dicts the core works on. No logic here.

A pod stays a ``dict``: it is never round-tripped through a typed model, so fields this
project does not know (newer Kubernetes versions, alpha fields) survive untouched.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

JSON = Any
Pod = dict[str, Any]


class _OpBase(TypedDict):
    op: Literal["add"]
    path: str


class JSONPatchOp(_OpBase, total=False):
    value: JSON
