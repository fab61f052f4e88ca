"""Issue 8, properties of validation: a config that loads never yields a pod the apiserver's
rules refuse; a literal the apiserver refuses never loads.

- For generated configs (realistic fragments: sidecars with ports, probes, resources, env,
  mounts; labels, annotations, volumes; some templates) that load, the pod each injects into
  a valid generated pod passes :func:`core.podrules.check_pod` (the project's own model of
  the apiserver's validation, itself differentially tested against the real apiserver), or
  the request is an injection error: never a pod with a problem.
- For each field, a generated invalid literal planted in an otherwise valid config makes
  loading fail, naming that field.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core import podrules
from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.inject import inject
from sidecar_injector.core.parse import parse_configs

SETTINGS = settings(max_examples=120, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCHEMA = pod_schema()

NAMES = ["proxy", "agent", "log-shipper", "init-net"]
QUANTITIES = ["10m", "100m", "1", "64Mi", "1Gi", "0.5"]
LABEL_VALUES = ["on", "v1.2", "", "{{ labels['app'] | default('none') }}", "{{ namespace }}",
                "{{ annotations['team'] | default('core') }}"]
PORTS = [15001, 15090, 9901, "{{ annotations['port'] | default('15000') }}"]


@st.composite
def containers(draw: st.DrawFn, names: list[str], *, init: bool) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(names):
        c: dict[str, Any] = {"name": name, "image": draw(st.sampled_from(["envoy:1", "agent:{{ namespace }}"]))}
        if not init and draw(st.booleans()):
            c["ports"] = [{"name": f"p{i}-admin", "containerPort": draw(st.sampled_from(PORTS))}]
        if draw(st.booleans()):
            cpu, mem = draw(st.sampled_from(QUANTITIES)), draw(st.sampled_from(["64Mi", "128Mi"]))
            c["resources"] = {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": "256Mi"}}
        if not init and draw(st.booleans()):
            c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": draw(st.sampled_from([15021, "http"]))}}
        if draw(st.booleans()):
            c["env"] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "MODE", "value": draw(st.sampled_from(["a", "{{ labels['app'] | default('') }}"]))}]
        if draw(st.booleans()):
            c["volumeMounts"] = [{"name": "shared", "mountPath": f"/shared/{name}"}]
        out.append(c)
    return out


@st.composite
def config_docs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3))
    split = draw(st.integers(0, len(names)))
    spec: dict[str, Any] = {"injectByDefault": True, "nativeSidecar": draw(st.booleans()),
                            "volumes": [{"name": "shared", "emptyDir": {}}]}
    if split:
        spec["initContainers"] = draw(containers(names[:split], init=True))
    if names[split:]:
        spec["containers"] = draw(containers(names[split:], init=False))
    spec["labels"] = {"mesh": draw(st.sampled_from(LABEL_VALUES))}
    if draw(st.booleans()):
        spec["labels"]["example.com/team"] = "{{ annotations['team'] | default('core') }}"
    spec["annotations"] = draw(st.dictionaries(st.sampled_from(["proxy.example.com/config", "note"]),
                                               st.sampled_from(["x", "{{ name }}", "a b c"]), max_size=2))
    if draw(st.booleans()):
        spec["volumeMounts"] = [{"name": "shared", "mountPath": "/shared"}]
    if draw(st.booleans()):
        spec["env"] = [{"name": "MESH", "value": "{{ namespace }}"}]
    return {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
            "metadata": {"name": "gen"}, "spec": spec}


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """Valid pods (they pass check_pod themselves), with annotations templates may read."""
    annotations = {"team": draw(st.sampled_from(["payments", "platform team", "a" * 70])),
                   "port": draw(st.sampled_from(["8080", "http", "99999", "15001"]))}
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app:1"}]}
    if draw(st.booleans()):
        spec["restartPolicy"] = draw(st.sampled_from(["Always", "Never", "OnFailure"]))
    if draw(st.booleans()):
        spec["containers"].append({"name": draw(st.sampled_from(["worker", "proxy"])), "image": "w:1",
                                   "env": [{"name": "MODE", "value": "mine"}]})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": {"app": draw(st.sampled_from(["web", "api"]))},
                         "annotations": annotations},
            "spec": spec}


@SETTINGS
@given(doc=config_docs(), pod=pods())
def test_a_config_that_loads_never_yields_a_pod_with_a_problem(doc: dict[str, Any], pod: dict[str, Any]) -> None:
    try:
        configs = parse_configs([("gen.yaml, document 1", doc)], schema=SCHEMA)
    except ConfigError:
        return  # refused at load: fine (e.g. an annotation value... never; a template port in a probe)
    assert podrules.check_pod(pod) == []
    try:
        result = inject(pod, "default", configs)
    except InjectionError:
        return  # a rendered value the apiserver would refuse: answered per --on-error
    assert podrules.check_pod(result.pod) == [], result.pod


VALID = {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "ok"},
         "spec": {"injectByDefault": True, "labels": {"mesh": "on"}, "annotations": {"note": "x"},
                  "containers": [{"name": "proxy", "image": "envoy:1", "ports": [{"name": "admin", "containerPort": 1}],
                                  "resources": {"limits": {"cpu": "1"}},
                                  "env": [{"name": "A", "value": "1"}],
                                  "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                  "volumes": [{"name": "v", "emptyDir": {}}]}}

#: Where a literal goes, and values the apiserver refuses there.
INVALID: list[tuple[tuple[Any, ...], str, list[Any]]] = [
    (("labels",), "spec.labels.{key}", ["platform team", "-x", "a" * 64, "x!"]),
    (("containers", 0, "name"), "spec.containers[0].name", ["Sidecar_1", "-p", "a" * 64, "p.q"]),
    (("volumes", 0, "name"), "spec.volumes[0].name", ["Vol_1", "v_1", "a" * 64]),
    (("containers", 0, "ports", 0, "containerPort"), "spec.containers[0].ports[0].containerPort", [0, 65536, -1]),
    (("containers", 0, "ports", 0, "name"), "spec.containers[0].ports[0].name",
     ["a" * 16, "UPPER", "has--dash", "123"]),
    (("containers", 0, "resources", "limits", "cpu"), "spec.containers[0].resources.limits", ["lots", "1.2.3", "-1"]),
]


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize(("where", "field", "values"), INVALID, ids=[f for _, f, _ in INVALID])
def test_an_invalid_literal_never_loads(where: tuple[Any, ...], field: str, values: list[Any], data: Any) -> None:
    doc = copy.deepcopy(VALID)
    value = data.draw(st.sampled_from(values))
    if where == ("labels",):
        doc["spec"]["labels"]["team"] = value
        field = field.format(key="team")
    else:
        node: Any = doc["spec"]
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        if where == ("volumes", 0, "name"):
            doc["spec"]["containers"][0]["volumeMounts"][0]["name"] = value
    with pytest.raises(ConfigError) as e:
        parse_configs([("bad.yaml, document 1", doc)], schema=SCHEMA)
    assert f"(ok): {field}" in str(e.value), str(e.value)
