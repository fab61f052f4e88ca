"""matchConditions in CEL: compile errors at load, evaluation per pod, agreement with Python."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar_injector.core import cel
from sidecar_injector.core.errors import ConfigError, InjectionError

WHERE = "cfg.yaml, document 1 (envoy): spec.matchConditions[0]"


def make_pod() -> dict[str, Any]:
    names = ["web", "worker", "cache", "metrics", "log-shipper"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f8b6c5d-x2x4z",
            "namespace": "shop",
            "labels": {"app": "web", "team": "payments", "pod-template-hash": "7d9f8b6c5d"},
            "annotations": {"x": "1", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "containers": [
                {"name": n, "image": f"registry.example.com/team/{n}:v1", "ports": [{"containerPort": 8080 + i}]}
                for i, n in enumerate(names)
            ],
            "terminationGracePeriodSeconds": 30,
        },
    }


def check(expression: str, pod: dict[str, Any]) -> bool:
    cond = cel.compile_condition("c", expression, WHERE)
    return cel.evaluate([cond], pod) is None


# --- compile errors -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("object.spec.containers.exists(c, ", "Syntax error"),
        ("object.metadata.name ==", "Syntax error"),
        ("request.userInfo.username == 'admin'", "undeclared reference to 'request.userInfo.username'"),
        ("oldObject == null", "undeclared reference to 'oldObject'"),
        ("object.spec.containers.exists(c, d.name == 'x')", "undeclared reference to 'd.name'"),
        ("object.metadata.name.frobnicate()", "undeclared reference to 'frobnicate'"),
        ("quantity('1Gi') == quantity('1Gi')", "undeclared reference to 'quantity'"),
        ("1 + 'a' == 2", "no matching overload"),
    ],
)
def test_compile_errors_name_the_field_and_the_problem(expression: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        cel.compile_condition("c", expression, WHERE)
    msg = str(e.value)
    assert msg.startswith(WHERE + ": ")
    assert problem in msg
    assert repr(expression) in msg
    assert "\n" not in msg  # the CLI prints it as one line


def test_undeclared_reference_says_object_is_the_only_variable() -> None:
    expected = r"column [0-9]+: undeclared reference to 'pod.metadata.name'.*only variable is `object`"
    with pytest.raises(ConfigError, match=expected):
        cel.compile_condition("c", "pod.metadata.name == 'x'", WHERE)


@pytest.mark.parametrize(
    ("expression", "typ"),
    [("size(object.spec.containers)", "int"), ("'web'", "string"), ("object.spec.containers.map(c, c.name)", "list")],
)
def test_non_bool_result_types_are_rejected_at_compile(expression: str, typ: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(WHERE)}: must evaluate to bool, not {typ}"):
        cel.compile_condition("c", expression, WHERE)


@pytest.mark.parametrize("name", ["", "has space", "-x", "x" * 64, 3])
def test_bad_names(name: Any) -> None:
    with pytest.raises(ConfigError, match="condition name"):
        cel.compile_condition(name, "true", WHERE)


@pytest.mark.parametrize("expression", ["", "   ", None])
def test_empty_expression(expression: Any) -> None:
    with pytest.raises(ConfigError, match="non-empty string"):
        cel.compile_condition("c", expression, WHERE)


def test_compile_conditions_checks_the_list_shape() -> None:
    where = "cfg.yaml, document 1 (envoy): spec.matchConditions"
    assert cel.compile_conditions(None, where) == ()
    conds = cel.compile_conditions([{"name": "a", "expression": "true"}, {"name": "b", "expression": "false"}], where)
    assert [c.name for c in conds] == ["a", "b"]
    with pytest.raises(ConfigError, match=r"matchConditions: must be a list"):
        cel.compile_conditions({"name": "a"}, where)
    with pytest.raises(ConfigError, match=r"matchConditions\[1\]: name: duplicate name 'a'"):
        cel.compile_conditions([{"name": "a", "expression": "true"}, {"name": "a", "expression": "true"}], where)
    with pytest.raises(ConfigError, match=r"matchConditions\[0\]: unknown field\(s\) expr"):
        cel.compile_conditions([{"name": "a", "expr": "true"}], where)
    with pytest.raises(ConfigError, match=r"matchConditions\[0\]: expression is required"):
        cel.compile_conditions([{"name": "a"}], where)
    with pytest.raises(ConfigError, match=r"at most 64"):
        cel.compile_conditions([{"name": f"c{i}", "expression": "true"} for i in range(65)], where)
    with pytest.raises(ConfigError, match=r"matchConditions\[0\]: .*undeclared reference"):
        cel.compile_conditions([{"name": "a", "expression": "foo"}], where)


# --- evaluation -----------------------------------------------------------------------------

REALISTIC = [
    ("!has(object.spec.hostNetwork) || !object.spec.hostNetwork", True),
    ("object.spec.containers.exists(c, c.name == 'istio-proxy')", False),
    ("object.spec.containers.exists(c, c.name == 'cache')", True),
    ("object.metadata.labels['app'] == 'web'", True),
    ("object.metadata.labels['app'] == 'api'", False),
    ("has(object.metadata.annotations) && 'x' in object.metadata.annotations", True),
    ("has(object.metadata.annotations) && 'y' in object.metadata.annotations", False),
    ("object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))", True),
    ("object.spec.containers.all(c, c.image.endsWith(':v2'))", False),
    ("object.metadata.name.contains('7d9f') && object.metadata.name.matches('^web-[a-z0-9]+-[a-z0-9]{5}$')", True),
    ("size(object.spec.containers) == 5 && size(object.metadata.labels) == 3", True),
    ("object.spec.containers[0].ports[0].containerPort >= 8080", True),
    ("object.spec.terminationGracePeriodSeconds == 30", True),
    ("object.metadata.labels.team.upperAscii() == 'PAYMENTS'", True),  # ext strings
    ("object.?spec.?hostNetwork.orValue(false) == false", True),  # optional types
    ("false && object.spec.nodeName == 'x'", False),  # && absorbs the error, as in CEL
    ("object.spec.nodeName == 'x' || true", True),
]


@pytest.mark.parametrize(("expression", "expected"), REALISTIC)
def test_realistic_expressions(expression: str, expected: bool) -> None:
    assert check(expression, make_pod()) is expected


def test_host_network_true_is_false() -> None:
    pod = make_pod()
    pod["spec"]["hostNetwork"] = True
    assert check("!has(object.spec.hostNetwork) || !object.spec.hostNetwork", pod) is False


def test_evaluate_returns_the_first_false_condition() -> None:
    conds = cel.compile_conditions(
        [
            {"name": "web", "expression": "object.metadata.labels['app'] == 'web'"},
            {"name": "no-istio", "expression": "!object.spec.containers.exists(c, c.name == 'web')"},
            {"name": "never", "expression": "false"},
        ],
        "spec.matchConditions",
    )
    assert cel.evaluate(conds, make_pod()) is conds[1]
    assert cel.evaluate(conds[:1], make_pod()) is None
    assert cel.evaluate([], make_pod()) is None


def test_evaluation_error_is_an_injection_error_naming_the_condition() -> None:
    cond = cel.compile_condition("needs-node", "object.spec.nodeName == 'node-1'", WHERE)
    with pytest.raises(InjectionError) as e:
        cel.evaluate([cond], make_pod())
    msg = str(e.value)
    assert "matchCondition 'needs-node'" in msg
    assert WHERE in msg
    assert "nodeName" in msg and "has()" in msg


def test_missing_map_key_and_index_out_of_range_are_errors() -> None:
    for expression in ("object.metadata.labels['missing'] == 'x'", "object.spec.containers[9].name == 'x'"):
        with pytest.raises(InjectionError, match="matchCondition 'c'"):
            check(expression, make_pod())


def test_non_bool_result_at_runtime_is_an_injection_error() -> None:
    cond = cel.compile_condition("dyn", "object.metadata.name", WHERE)  # dyn: only known per pod
    expected = r"matchCondition 'dyn' .* evaluated to str 'web-7d9f8b6c5d-x2x4z', not bool"
    with pytest.raises(InjectionError, match=expected):
        cel.evaluate([cond], make_pod())


def test_false_wins_over_an_error_as_in_kube_apiserver() -> None:
    conds = cel.compile_conditions(
        [{"name": "err", "expression": "object.spec.nodeName == 'x'"}, {"name": "no", "expression": "false"}],
        "spec.matchConditions",
    )
    assert cel.evaluate(conds, make_pod()) is conds[1]
    with pytest.raises(InjectionError, match="'err'"):
        cel.evaluate(conds[:1], make_pod())


def test_a_value_cel_cannot_represent_is_an_injection_error() -> None:
    pod = make_pod()
    pod["spec"]["weird"] = {1, 2}
    with pytest.raises(InjectionError, match="matchCondition 'c'"):
        check("size(object.spec.weird) == 2", pod)


def test_one_bound_pod_serves_many_configs() -> None:
    pod = make_pod()
    bound = cel.bind(pod)
    a = cel.compile_conditions([{"name": "a", "expression": "object.metadata.labels.app == 'web'"}], "a")
    b = cel.compile_conditions([{"name": "b", "expression": "object.metadata.namespace == 'kube-system'"}], "b")
    assert bound.evaluate(a) is None
    assert bound.evaluate(b) is b[0]
    assert cel.evaluate(a, bound) is None
    assert pod == make_pod()  # evaluation never changes the pod


# --- property: CEL agrees with the equivalent Python predicate ------------------------------

_names = st.sampled_from(["web", "istio-proxy", "cache", "envoy", "log-shipper"])
_images = st.sampled_from(["registry.example.com/a:v1", "docker.io/library/nginx", "registry.example.com/b", "x"])
_label_keys = st.sampled_from(["app", "team", "tier", "version"])
_label_values = st.sampled_from(["web", "api", "payments", ""])


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": draw(st.sampled_from(["web-1", "api-2", "x"]))}
    labels = draw(st.none() | st.dictionaries(_label_keys, _label_values, max_size=4))
    if labels is not None:
        metadata["labels"] = labels
    annotations = draw(st.none() | st.dictionaries(st.sampled_from(["x", "y", "sidecar/inject"]), st.just("1")))
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {
        "containers": draw(st.lists(st.fixed_dictionaries({"name": _names, "image": _images}), min_size=1, max_size=6))
    }
    host_network = draw(st.none() | st.booleans())
    if host_network is not None:
        spec["hostNetwork"] = host_network
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


PREDICATES = [
    (
        "!has(object.spec.hostNetwork) || !object.spec.hostNetwork",
        lambda p: not p["spec"].get("hostNetwork", False),
    ),
    (
        "object.spec.containers.exists(c, c.name == 'istio-proxy')",
        lambda p: any(c["name"] == "istio-proxy" for c in p["spec"]["containers"]),
    ),
    (
        "has(object.metadata.labels) && 'app' in object.metadata.labels && object.metadata.labels['app'] == 'web'",
        lambda p: p["metadata"].get("labels", {}).get("app") == "web",
    ),
    (
        "has(object.metadata.annotations) && 'x' in object.metadata.annotations",
        lambda p: "x" in p["metadata"].get("annotations", {}),
    ),
    (
        "object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))",
        lambda p: all(c["image"].startswith("registry.example.com/") for c in p["spec"]["containers"]),
    ),
    (
        "size(object.spec.containers) > 2 && object.metadata.name.matches('^web-[0-9]+$')",
        lambda p: len(p["spec"]["containers"]) > 2 and p["metadata"]["name"].startswith("web-"),
    ),
]
_COMPILED = [(cel.compile_condition(f"p{i}", src, f"p{i}"), fn) for i, (src, fn) in enumerate(PREDICATES)]


@settings(max_examples=150, deadline=None)
@given(pods())
def test_cel_agrees_with_python(pod: dict[str, Any]) -> None:
    original = copy.deepcopy(pod)
    bound = cel.bind(pod)
    for cond, predicate in _COMPILED:
        assert (bound.evaluate([cond]) is None) is predicate(pod), cond.expression
    # All at once: the first false one, in order.
    expected = next((c for c, fn in _COMPILED if not fn(pod)), None)
    assert bound.evaluate([c for c, _ in _COMPILED]) is expected
    assert pod == original


def test_missing_labels_without_has_is_an_error_not_false() -> None:
    pod = make_pod()
    del pod["metadata"]["labels"]
    with pytest.raises(InjectionError):
        check("object.metadata.labels['app'] == 'web'", pod)
