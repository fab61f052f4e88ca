"""A Jinja2 sandbox with budgets: a config's template cannot stop or exhaust the server.

Jinja2's own sandbox keeps a template away from Python internals, but not from the CPU or
memory: nested ``range(100000)`` loops hang the event loop (and with it ``/healthz`` and
SIGTERM), ``'x' * 10**9`` or ``'x'|center(10**9)`` allocate gigabytes, and ``{{ 7**6000000 }}``
stalls at *load*, in Jinja's constant folding. Rendering runs on the event loop, so the
limits must be enforced inside the render, cheaply, by counting:

- **Steps**: every loop iteration, call, filter, attribute and item lookup counts one step;
  a render may take :data:`MAX_STEPS`. Loops are counted by rewriting each ``{% for %}``'s
  iterable at compile time; recursive loops (which re-enter without that rewrite) are refused.
- **Time**: every 32 steps, the thread's CPU time against :data:`MAX_SECONDS` (CPU time, not
  wall time: a throttled or preempted process must not fail injections).
- **Size**: operators and functions whose result can dwarf their inputs are checked before
  they run (``**`` on big numbers, ``*`` repetition, ``%`` with wide fields, integer
  arguments such as widths and counts beyond :data:`MAX_WIDTH`, ``replace`` and ``join``
  by their result's length); every rendered value is limited to :data:`MAX_OUTPUT` characters.
- ``namespace()`` (state across loop iterations, the way to double a string in a loop) and
  ``lipsum()`` are not offered.

``**``, ``*`` and ``%`` are "intercepted" operators, so Jinja's constant folding leaves them
to run time, where they are checked: ``{{ 2**100000000 }}`` is no longer computed at load.
A template that exceeds a budget raises :class:`BudgetExceeded`, which the caller turns into
this request's injection error (answered per ``--on-error``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Loop iterations, calls, filters and lookups per render.
MAX_STEPS = 10_000
#: CPU time per render, checked every 32 steps.
MAX_SECONDS = 0.1
#: Characters per rendered value (a label value may have 63, an annotation total 256 KiB).
MAX_OUTPUT = 64 * 1024
#: Largest integer argument to a filter or method (a width, a count, a repetition).
MAX_WIDTH = 10_000
#: Largest result of ``**`` on integers, in bits.
MAX_POWER_BITS = 4096

_WIDE_FIELD = re.compile(r"%[-+ #0]*\*|%[-+ #0]*\d{5,}|\{[^{}]*:[^{}]*\d{5,}[^{}]*\}")
_BOUNDED_ITER = "__sidecar_injector_bounded"


class BudgetExceeded(Exception):
    """A template went past one of the budgets above (an injection error for the request)."""


class _Budget:
    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = 0.0

    def start(self) -> None:
        self.steps = 0
        self.deadline = time.thread_time() + MAX_SECONDS

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise BudgetExceeded(f"more than {MAX_STEPS} steps (loop iterations, calls, lookups)")
        # CPU time of this thread, not wall time: a throttled or preempted process must not fail
        # injections. Read every 32 steps (a clock read costs about as much as a step).
        if not self.steps & 31 and time.thread_time() > self.deadline:
            raise BudgetExceeded(f"more than {MAX_SECONDS * 1000:.0f} ms of CPU time")


#: Renders run one at a time (the core is synchronous): one budget, reset per render.
_BUDGET = _Budget()


def _check_size(n: int, what: str) -> None:
    if n > MAX_OUTPUT:
        raise BudgetExceeded(f"{what} would be {n} characters, over the limit of {MAX_OUTPUT}")


def _check_int_args(args: Iterable[Any]) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > MAX_WIDTH:
            raise BudgetExceeded(f"an integer argument of {a} is over the limit of {MAX_WIDTH}")


def _check_text_op(func: Any, obj: Any, args: tuple[Any, ...]) -> None:
    """Size checks for the string operations whose result can dwarf their inputs."""
    name = getattr(func, "__name__", "")
    if name == "replace" and isinstance(obj, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = len(obj) + 1 if old == "" else obj.count(old)
        _check_size(len(obj) + count * max(0, len(new) - len(old)), "replace()'s result")
    elif name == "join" and isinstance(obj, str) and args:
        items = args[0]
        n = len(items) if hasattr(items, "__len__") else 0
        _check_size(n * len(obj) + sum(len(str(i)) for i in items) if n else 0, "join()'s result")
    elif name in ("format", "format_map") and isinstance(obj, str) and _WIDE_FIELD.search(obj):
        raise BudgetExceeded("a format field wider than the limit")


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    budget = _BUDGET
    for item in iterable:
        budget.step()
        yield item


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_STEPS:
        raise BudgetExceeded(f"range of {len(r)} items, over the limit of {MAX_STEPS}")
    return r


def _guard_filter(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` counted as a step, with its integer arguments and its result's size checked,
    and the filters that multiply their input (``replace``, ``join``, ``format``) checked
    before they run."""
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0  # a context comes first
    name = f.__name__.removeprefix("do_")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        _BUDGET.step()
        value, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
        _check_int_args(rest)
        _check_int_args(kwargs.values())
        if name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _check_text_op(str.replace, value, rest)
        elif name == "join" and isinstance(value, (list, tuple)):
            _check_text_op(str.join, str(rest[0]) if rest else "", (value,))
        elif name == "format" and isinstance(value, str):
            _check_text_op(str.format, value, rest)
        result = f(*args, **kwargs)
        if isinstance(result, str):
            _check_size(len(result), f"the {name} filter's result")
        return result

    guarded.__name__ = f.__name__
    if skip:
        guarded.jinja_pass_arg = f.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox above: steps, time and sizes counted in the hooks Jinja's sandbox offers."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        self.globals.pop("namespace", None)
        self.globals.pop("lipsum", None)
        self.globals["range"] = _bounded_range
        self.globals[_BOUNDED_ITER] = _bounded_iter
        self.filters = {name: _guard_filter(f) for name, f in self.filters.items()}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _BUDGET.step()
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_POWER_BITS:
                raise BudgetExceeded(f"{left} ** {right} is over {MAX_POWER_BITS} bits")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    _check_size(len(seq) * n, "a repetition")
        elif operator == "%" and isinstance(left, str) and _WIDE_FIELD.search(left):
            raise BudgetExceeded("a % format field wider than the limit")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _BUDGET.step()
        _check_int_args(args)
        _check_int_args(kwargs.values())
        _check_text_op(__obj, getattr(__obj, "__self__", None), args)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _BUDGET.step()
        if attribute in ("format", "format_map") and isinstance(obj, str) and _WIDE_FIELD.search(obj):
            raise BudgetExceeded("a format field wider than the limit")  # the sandbox wraps str.format
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _BUDGET.step()
        return super().getitem(obj, argument)

    def bound(self, ast: nodes.Template) -> nodes.Template:
        """``ast`` with every loop's iterable counted; raises ``TemplateSyntaxError`` for a
        recursive loop (it re-enters itself without passing through the count)."""
        for loop in ast.find_all(nodes.For):
            if loop.recursive:
                raise jinja2.TemplateSyntaxError("recursive loops are not allowed", loop.lineno)
            loop.iter = nodes.Call(nodes.Name(_BOUNDED_ITER, "load"), [loop.iter], [], None, None)
        return ast


def render(compiled: jinja2.Template, context: dict[str, Any]) -> str:
    """Render within the budgets; raises :class:`BudgetExceeded` (or the template's own error)."""
    _BUDGET.start()
    out: list[str] = []
    size = 0
    for chunk in compiled.root_render_func(compiled.new_context(context)):  # generate() without its wrapper
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise BudgetExceeded(f"the rendered value is over {MAX_OUTPUT} characters")
        out.append(chunk)
    return "".join(out)
