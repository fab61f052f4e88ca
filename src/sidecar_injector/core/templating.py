"""Jinja2 templates inside config values, compiled once at load, rendered per pod.

Only string values that contain ``{{`` or ``{%`` are templates; everything else is static
and costs one copy per request. Templates run in a bounded Jinja2 sandbox
(:mod:`~sidecar_injector.core.sandbox`: a config author can reach neither Python internals
nor unbounded CPU time or memory) with ``StrictUndefined``, so a typo in a variable name is an error
rather than an empty string; ``| default(...)`` still works for absent keys.

**Typed templates.** A template may stand in any scalar field, not only a string one: the
loader tells each template the JSON types its field accepts (from the Pod schema), and the
rendered text is converted to that type (``"8080"`` becomes ``8080`` in ``containerPort``;
int-or-string fields get an integer when the text is one). Text that does not convert is
this request's injection error, naming the field and the value, never a pod the apiserver
cannot decode.

**Variables are checked at load**: a name outside :data:`VARIABLES` (``anotations``) fails
the config, instead of failing every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jinja2
import jinja2.meta
import orjson

from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.sandbox import BoundedEnvironment, BudgetExceeded
from sidecar_injector.core.sandbox import render as bounded_render

_ENV = BoundedEnvironment()

#: What a template may read. ``name`` is the pod's name, else its ``generateName``: pods made
#: by controllers (Deployments, Jobs...) have only the latter when the webhook sees them.
VARIABLES = ("pod", "name", "namespace", "labels", "annotations")

#: Path from a fragment's root to a template, to the JSON types its field accepts.
Typer = Callable[[tuple[str | int, ...]], frozenset[str]]

_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_STRING_ONLY = frozenset({"string"})


def _convert(text: str, types: frozenset[str], where: str) -> Any:
    """Rendered ``text`` as a value of one of ``types`` (the field's schema types)."""
    if not types or types == _STRING_ONLY:
        return text
    stripped = text.strip()
    if "integer" in types and _INT_RE.match(stripped):
        return int(stripped)
    if "boolean" in types and stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if "number" in types and "string" not in types:
        try:
            return float(stripped) if any(c in stripped for c in ".eE") else int(stripped)
        except ValueError:
            pass
    if "string" in types:
        return text
    want = " or ".join(sorted(types))
    raise InjectionError(f"{where}: the template rendered {text[:100]!r}, which is not {want}")


class Template:
    """One compiled template string, converted after rendering to its field's type."""

    __slots__ = ("_compiled", "source", "types", "where")

    def __init__(self, source: str, where: str, types: frozenset[str] = frozenset()) -> None:
        self.source = source
        self.where = where
        self.types = types
        try:
            ast = _ENV.parse(source)
            unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - set(VARIABLES))
            self._compiled = _ENV.from_string(_ENV.bound(ast))
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{where}: template syntax error: {e.message} in {source!r}") from e
        if unknown:
            raise ConfigError(
                f"{where}: template uses undefined variable{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (available: {', '.join(VARIABLES)})"
            )

    def render(self, context: dict[str, Any]) -> Any:
        try:
            text = bounded_render(self._compiled, context)
        except BudgetExceeded as e:
            raise InjectionError(f"template {self.where} exceeded its budget: {e}") from None
        except Exception as e:  # any failure of a user's template is this request's error
            raise InjectionError(f"template {self.where} failed to render: {type(e).__name__}: {e}") from e
        return _convert(text, self.types, self.where) if self.types else text


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

    def __init__(self, value: Any, where: str, typer: Typer | None = None) -> None:
        self.static = value
        problems: list[str] = []
        tree = _compile(value, where, (), typer, problems)
        if problems:  # every bad template of the fragment at once
            raise ConfigError("\n".join(problems))
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


def _compile(
    value: Any, where: str, path: tuple[str | int, ...], typer: Typer | None, problems: list[str]
) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return Template(value, where, typer(path) if typer else frozenset())
        except ConfigError as e:
            problems.append(str(e))
            return value
    if isinstance(value, dict):
        return {k: _compile(v, f"{where}.{k}", (*path, k), typer, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{where}[{i}]", (*path, i), typer, problems) for i, v in enumerate(value)]
    return value


def template_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Where the template strings are in a raw (uncompiled) value tree."""
    if isinstance(value, str):
        return [path] if is_template(value) else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in template_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in template_paths(v, (*path, i))]
    return []


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
