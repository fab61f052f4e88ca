"""Jinja2 templates inside config values, compiled once at load, rendered per pod.

Only string values that contain ``{{`` or ``{%`` are templates; everything else is static
and costs one copy per request. Templates run in Jinja2's sandbox (a config author cannot
reach Python internals) with ``StrictUndefined``, so a typo in a variable name is an error
rather than an empty string; ``| default(...)`` still works for absent keys.
"""

from __future__ import annotations

from typing import Any

import jinja2
import orjson
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sidecar_injector.core.errors import ConfigError, InjectionError

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


class Template:
    """One compiled template string."""

    __slots__ = ("_compiled", "source", "where")

    def __init__(self, source: str, where: str) -> None:
        self.source = source
        self.where = where
        try:
            self._compiled = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{where}: template syntax error: {e.message} in {source!r}") from e

    def render(self, context: dict[str, Any]) -> str:
        try:
            return self._compiled.render(context)
        except Exception as e:  # any failure of a user's template is this request's error
            raise InjectionError(f"template {self.where} failed to render: {type(e).__name__}: {e}") from e


class _Static:
    """A subtree without templates, kept as JSON bytes: decoding them is the fastest copy."""

    __slots__ = ("data",)

    def __init__(self, value: Any) -> None:
        self.data = orjson.dumps(value)

    def copy(self) -> Any:
        return orjson.loads(self.data)


class Fragment:
    """A config value tree with its template strings compiled.

    ``render`` returns a fresh JSON-like tree (never shared with the config or other pods).
    """

    __slots__ = ("_tree", "has_templates", "static")

    def __init__(self, value: Any, where: str) -> None:
        self.static = value
        tree = _compile(value, where)
        self.has_templates = _contains_template(tree)
        self._tree = _freeze(tree)

    def render(self, context: dict[str, Any] | None, *, copy: bool = True) -> Any:
        """The value for one pod. ``copy=False`` may return the config's own static value:
        only for callers that read it and never hand it out (labels merged key by key)."""
        if self.has_templates:
            if context is None:
                raise ValueError(f"{self.static!r} has templates: rendering it needs the pod's context")
            return _render(self._tree, context)
        if not copy:
            return self.static
        if not self.static:  # an empty list or map: no need to decode anything
            return type(self.static)()
        # A template-free dict or list is frozen to pre-encoded JSON (see _freeze).
        assert isinstance(self._tree, _Static)
        return self._tree.copy()


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def _compile(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return Template(value, where) if is_template(value) else value
    if isinstance(value, dict):
        return {k: _compile(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _contains_template(tree: Any) -> bool:
    if isinstance(tree, Template):
        return True
    if isinstance(tree, dict):
        return any(_contains_template(v) for v in tree.values())
    if isinstance(tree, list):
        return any(_contains_template(v) for v in tree)
    return False


def _freeze(tree: Any) -> Any:
    """Replace every template-free dict or list subtree by a :class:`_Static`."""
    if not _contains_template(tree):
        return _Static(tree) if isinstance(tree, (dict, list)) else tree
    if isinstance(tree, dict):
        return {k: _freeze(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_freeze(v) for v in tree]
    return tree


def _render(tree: Any, context: dict[str, Any]) -> Any:
    if isinstance(tree, _Static):
        return tree.copy()
    if isinstance(tree, Template):
        return tree.render(context)
    if isinstance(tree, dict):
        return {k: _render(v, context) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_render(v, context) for v in tree]
    return tree
