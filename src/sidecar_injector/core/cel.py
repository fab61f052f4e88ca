"""CEL ``spec.matchConditions``: compiled and type-checked at load, evaluated per pod.

A SidecarConfig may carry ``matchConditions``, a list of ``{name, expression}`` with the
shape and meaning of a Kubernetes admission webhook's: each expression is CEL over the
variable ``object`` (the pod, as its JSON dict), and the config is injected only when every
condition is true. As in kube-apiserver: if any condition is false the config is skipped
(even if another failed to evaluate); otherwise, if one failed to evaluate, that is an
injection error for the request; otherwise (all true) the config applies.

The implementation is Google's cel-cpp through ``cel-expr-python`` (see docs/cel.md for the
measurements behind the choice). Expressions are parsed *and type-checked* at load, so these
are ConfigErrors naming the config field: syntax errors, references to anything but
``object`` (``request``, ``oldObject``, ``params``, ``authorizer``... do not exist here),
unknown functions, calls with no matching overload on statically known types, and result
types that cannot be bool (``size(object.spec.containers)`` is an int). ``object`` is
``dyn``, so ``object.metadata.name`` type-checks as ``dyn`` and a non-bool value there is only
found per request.

Per request, :func:`bind` wraps the pod once; the wrapper converts the pod into CEL values
lazily, on its first evaluation (about 100 µs for a 5-container pod), and every further
condition of every config evaluated on it costs a few microseconds. Bind before the pod is
mutated and evaluate all conditions before mutating it.

Dialect: the CEL standard library (``has()``, ``in``, ``exists``/``all``/``exists_one``/
``map``/``filter``, ``size()``, ``startsWith``/``endsWith``/``contains``/``matches`` (RE2),
conversions, timestamps and durations, heterogeneous numeric equality and ordering), the
strings extension Kubernetes also enables (``lowerAscii``, ``upperAscii``, ``split``, ``join``,
``replace``, ``substring``, ``trim``, ``indexOf``, ``lastIndexOf``, ``charAt``, ``format``,
``reverse``...), optional types (``object.?spec.?hostNetwork.orValue(false)``), ``cel.bind``
and ``math.*``. Not available: Kubernetes' own libraries (lists ``isSorted``/``sum``/
``min``/``max``/``indexOf``; regex ``find``/``findAll``; ``url()``, ``quantity()``, ``ip()``,
``cidr()``, ``semver()``, ``sets.*``, ``authorizer``), two-variable comprehensions, and cost
limits; using one is an "undeclared reference" ConfigError at load, never a runtime surprise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cel_expr_python import cel as _cel
from cel_expr_python.ext import ext_bindings, ext_math, ext_optional, ext_strings

from sidecar_injector.core.errors import ConfigError, InjectionError

__all__ = ["MAX_CONDITIONS", "Bound", "Condition", "bind", "compile_condition", "compile_conditions", "evaluate"]

MAX_CONDITIONS = 64  # as for an admission webhook's matchConditions
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # a Kubernetes qualified name (no prefix)

_ENV = _cel.NewEnv(
    variables={"object": _cel.Type.DYN},
    extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional(), ext_bindings.ExtBindings(), ext_math.ExtMath()],
)
_ERROR = _cel.Type.ERROR
_RESULT_TYPES = (_cel.Type.BOOL, _cel.Type.DYN)
_ISSUE = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


def _compile_message(e: Exception) -> str:
    """cel-cpp's multi-line report as one line: 'column 12: undeclared reference to ...'."""
    text = str(e)
    issues = []
    for m in _ISSUE.finditer(text):
        line, col, msg = m.groups()
        msg = re.sub(r" \(in container ''\)$", "", msg.strip())
        issues.append(f"{'' if line == '1' else f'line {line} '}column {col}: {msg}")
    if not issues:
        return re.sub(r"\s+", " ", text.replace("INVALID_ARGUMENT:", "")).strip()
    joined = "; ".join(issues)
    if "undeclared reference" in joined:
        joined += " (the only variable is `object`, the pod)"
    return joined


class Condition:
    """One compiled matchCondition."""

    __slots__ = ("_program", "expression", "name", "where")

    def __init__(self, name: str, expression: str, where: str, program: Any) -> None:
        self.name = name
        self.expression = expression
        self.where = where
        self._program = program

    def __repr__(self) -> str:
        return f"Condition({self.name!r}, {self.expression!r})"


def compile_condition(name: str, expression: str, where: str) -> Condition:
    """Compile and type-check one condition; ConfigError names ``where`` and the problem."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 63:
        raise ConfigError(
            f"{where}: the condition name {name!r} is not valid (up to 63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric)"
        )
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError(f"{where}: the expression must be a non-empty string (CEL over `object`, the pod)")
    try:
        program = _ENV.compile(expression)
    except Exception as e:  # cel-cpp reports every compile problem as RuntimeError
        raise ConfigError(f"{where}: {_compile_message(e)} in {expression!r}") from e
    result = program.return_type()
    if result not in _RESULT_TYPES:
        raise ConfigError(f"{where}: must evaluate to bool, not {result.name().lower()}, in {expression!r}")
    return Condition(name, expression, where, program)


def compile_conditions(value: Any, where: str) -> tuple[Condition, ...]:
    """Compile a ``matchConditions`` list (``where`` names it, e.g. '...: spec.matchConditions').

    Checks the shape as the apiserver does for webhooks: a list of at most 64 mappings with
    exactly ``name`` and ``expression``, names unique.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of {{name, expression}}, not {type(value).__name__}")
    if len(value) > MAX_CONDITIONS:
        raise ConfigError(f"{where}: at most {MAX_CONDITIONS} conditions, not {len(value)}")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{here}: must be a mapping with name and expression")
        extra = sorted(set(item) - {"name", "expression"})
        if extra:
            raise ConfigError(f"{here}: unknown field(s) {', '.join(map(str, extra))} (only name and expression)")
        for key in ("name", "expression"):
            if key not in item:
                raise ConfigError(f"{here}: {key} is required")
        name = item["name"]
        if name in seen:
            raise ConfigError(f"{here}: name: duplicate name {name!r}")
        cond = compile_condition(name, item["expression"], here)
        seen.add(name)
        out.append(cond)
    return tuple(out)


class Bound:
    """One pod made ready for evaluation: build it once per request, evaluate many lists on it."""

    __slots__ = ("_activation",)

    def __init__(self, pod: Mapping[str, Any]) -> None:
        self._activation = _ENV.Activation({"object": pod})  # converted on the first evaluation

    def evaluate(self, conditions: Sequence[Condition]) -> Condition | None:
        """The first false condition; None when all are true. InjectionError on an evaluation error.

        As kube-apiserver: a false condition wins over an error in another one.
        """
        failed: tuple[Condition, str] | None = None
        for cond in conditions:
            try:
                v = cond._program.eval(self._activation)
                value = v.value() if v.type() != _ERROR else None
                problem = v.value() if v.type() == _ERROR else None
            except Exception as e:  # a value CEL cannot represent, a binding bug: this request's error
                value, problem = None, f"{type(e).__name__}: {e}"
            if problem is None and type(value) is not bool:
                problem = f"evaluated to {type(value).__name__} {value!r}, not bool"
            if problem is not None:
                if failed is None:
                    failed = (cond, str(problem))
                continue
            if not value:
                return cond
        if failed is not None:
            cond, problem = failed
            raise InjectionError(
                f"matchCondition {cond.name!r} ({cond.where}) failed: {_runtime_message(problem)}"
                f" in {cond.expression!r}"
            )
        return None


def _runtime_message(problem: str) -> str:
    text = re.sub(r"^(?:[A-Z_]+: )", "", problem.strip())
    if text.startswith("Key not found in map"):
        text += " (use has() or `in` for optional fields)"
    return text


def bind(pod: Mapping[str, Any]) -> Bound:
    """Wrap ``pod`` once per request; its conversion is paid once, by the first evaluation."""
    return Bound(pod)


def evaluate(conditions: Sequence[Condition], pod: Mapping[str, Any] | Bound) -> Condition | None:
    """The first false condition, or None when all are true (or there are none).

    ``pod`` is a pod dict or, to share its conversion between configs, a :func:`bind` result.
    Raises InjectionError naming the condition on an evaluation error or a non-bool result.
    """
    if not conditions:
        return None
    bound = pod if isinstance(pod, Bound) else Bound(pod)
    return bound.evaluate(conditions)
