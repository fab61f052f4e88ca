"""Issue 14, item 5: a config's template cannot stop or exhaust the server.

On the old ``main`` each of these either hung the event loop (nested loops), allocated
gigabytes (repetition, widths), or stalled the *load* in constant folding (``7**6000000``).
Now each is this request's injection error, found within the render's budgets, or a load
error where it can be seen at load.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sidecar_injector.config.configload import load_configs
from sidecar_injector.core import sandbox
from sidecar_injector.core.admission import review
from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.templating import Template

from .helpers import cfg, configs, pod, review_body

CONTEXT = {"pod": {"metadata": {"name": "p"}}, "name": "p", "namespace": "ns",
           "labels": {"app": "web"}, "annotations": {"big": "x" * 50_000}}

HOSTILE = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
    "{% for c in annotations['big'] %}{% for d in annotations['big'] %}{% endfor %}{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{{ ['x'] * 100000000 }}",
    "{{ 'x' | center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x' | indent(1000000000) }}",
    "{{ 7 ** 6000000 }}",
    "{{ 2 ** 100000000 }}",
    "{{ annotations['big'] | replace('', 'yy') }}",
    "{{ annotations['big'] ~ annotations['big'] }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '%s' | format('x') }}{{ '%999999999s' | format('x') }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ (['a'] * 5000) | join('y' * 5000) }}",
]


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_templates_are_injection_errors_found_fast(source: str) -> None:
    started = time.monotonic()
    template = Template(source, "cfg.yaml, document 1 (evil): spec.labels.x")  # loads: nothing runs at load
    assert time.monotonic() - started < 1
    started = time.monotonic()
    with pytest.raises(InjectionError, match=r"\(evil\): spec.labels.x"):
        template.render(CONTEXT)
    assert time.monotonic() - started < 1  # generous: the budget is 100 ms of CPU; this catches hangs


@pytest.mark.parametrize(("source", "why"), [
    ("{% for x in [1] recursive %}{{ loop([]) }}{% endfor %}", "recursive loops are not allowed"),
    ("{{ lipsum(1000000) }}", "undefined variable lipsum"),  # not offered
])
def test_what_can_be_refused_at_load_is(source: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        Template(source, "w")


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ labels['app'] | default('x') }}-{{ namespace }}", "web-ns"),
    ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
    ("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ '%05d' % 42 }} {{ '{}-{}'.format(1, 2) }}", "1024 ababab 00042 1-2"),
    ("{{ 'a-b' | replace('-', '_') | upper }} {{ ['x', 'y'] | join(',') }}", "A_B x,y"),
    ("{{ 'x' | center(5) }}|", "  x  |"),
])
def test_ordinary_templates_render_as_before(source: str, expected: str) -> None:
    assert Template(source, "w").render(CONTEXT) == expected


def test_the_output_of_one_value_is_bounded() -> None:
    many = "{% for i in range(9000) %}" + "0123456789" + "{% endfor %}"
    with pytest.raises(InjectionError, match="over 65536 characters"):
        Template(many, "w").render(CONTEXT)


def test_a_budget_exceeded_is_answered_per_on_error() -> None:
    cs = configs(cfg(injectByDefault=True, labels={
        "x": "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"}))
    body = review_body(pod())
    allowed = review(body, cs, on_error="allow")
    assert allowed.status == 200 and not allowed.patch
    assert review(body, cs, on_error="fail").status == 500


def test_yaml_aliases_are_refused_in_config_files(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    bomb.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="aliases"):
        load_configs(bomb)
    assert time.monotonic() - started < 1


def test_budgets_are_documented_constants() -> None:
    assert sandbox.MAX_STEPS == 10_000 and sandbox.MAX_OUTPUT == 64 * 1024 and sandbox.MAX_SECONDS <= 0.1
