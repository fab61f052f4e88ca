"""Issue 8: never inject a pod the apiserver refuses, nor where it harms.

Each of the issue's six findings on the old ``main`` is a test here: a config that must be
refused at load names every bad field; a request whose rendered value is bad is an injection
error (answered per ``--on-error``), never a refused pod; hostNetwork and run-to-completion
pods get the safe defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core.admission import review
from sidecar_injector.core.errors import ConfigError, InjectionError
from sidecar_injector.core.inject import inject
from sidecar_injector.core.parse import parse_configs

from .helpers import cfg, configs, pod, review_body


def load_error(*docs: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        configs(*docs)
    return str(e.value).splitlines()


# ---- 1. a template in a non-string field no longer switches validation off


TYPO_CONTAINER = {
    "name": "proxy", "image": "envoy:1", "imagePullPolicyy": "Always",
    "ports": [{"containerPort": "{{ annotations['app-port'] | default('8080') }}"}],
    "resources": {"limitz": {"cpu": "1"}},
}


def test_typos_beside_a_template_in_an_integer_field_are_all_reported() -> None:
    lines = load_error(cfg(injectByDefault=True, containers=[TYPO_CONTAINER]))
    assert any("spec.containers[0].imagePullPolicyy: unknown field" in line for line in lines), lines
    assert any("spec.containers[0].resources.limitz: unknown field" in line for line in lines), lines
    assert not any("containerPort" in line for line in lines), lines
    assert all(line.startswith("test.yaml, document 1 (envoy): ") for line in lines), lines


def test_a_template_in_an_integer_field_renders_to_an_integer() -> None:
    container = {"name": "proxy", "image": "envoy:1",
                 "ports": [{"containerPort": "{{ annotations['app-port'] | default('8080') }}"}],
                 "stdin": "{{ 'true' }}",
                 "readinessProbe": {"httpGet": {"port": "{{ annotations['probe'] | default('http') }}"}}}
    cs = configs(cfg(injectByDefault=True, containers=[container]))
    r = inject(pod(annotations={"probe": "15021"}), "ns", cs)
    proxy = r.pod["spec"]["containers"][1]
    assert proxy["ports"] == [{"containerPort": 8080}]
    assert proxy["stdin"] is True
    assert proxy["readinessProbe"]["httpGet"]["port"] == 15021  # int-or-string: an int when it is one
    r = inject(pod(), "ns", cs)
    assert r.pod["spec"]["containers"][1]["readinessProbe"]["httpGet"]["port"] == "http"


def test_a_rendered_value_that_does_not_convert_is_an_injection_error_not_a_refused_pod() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[
        {"name": "proxy", "image": "envoy:1", "ports": [{"containerPort": "{{ annotations['app-port'] }}"}]}]))
    with pytest.raises(InjectionError, match=r"spec.containers\[0\].ports\[0\].containerPort: the template "
                                             r"rendered 'http', which is not integer"):
        inject(pod(annotations={"app-port": "http"}), "ns", cs)
    body = review_body(pod(annotations={"app-port": "http"}))
    allowed = review(body, cs, on_error="allow")
    assert allowed.status == 200 and not allowed.patch
    answer = orjson.loads(allowed.body)["response"]
    assert answer["allowed"] is True and "patch" not in answer
    denied = orjson.loads(review(body, cs, on_error="deny").body)["response"]
    assert denied["allowed"] is False and "containerPort" in denied["status"]["message"]


@pytest.mark.parametrize(("spec", "expected"), [
    ({"containers": [{"name": "p", "image": "x",
                      "ports": [{"containerPort": "{{ annotations['port'] | default('http') }}"}]}]},
     "spec.containers[0].ports[0].containerPort: the template rendered 'http', which is not integer"),
    ({"labels": {"team": "{{ annotations['team'] | default('platform team') }}"}},
     "spec.labels.team: Invalid value: \"platform team\""),
])
def test_a_default_the_apiserver_would_refuse_fails_at_load(spec: dict[str, Any], expected: str) -> None:
    """Every pod without that annotation would get the default: caught before any pod arrives."""
    lines = load_error(cfg(injectByDefault=True, **spec))
    assert any(expected in line for line in lines), lines


def test_a_template_cannot_stand_for_an_object() -> None:
    lines = load_error(cfg(injectByDefault=True, containers=[
        {"name": "proxy", "image": "envoy:1", "resources": "{{ annotations['res'] }}"}]))
    assert any("spec.containers[0].resources: a template can stand only for a scalar" in line for line in lines)


# ---- 2. what the apiserver validates beyond the OpenAPI schema


@pytest.mark.parametrize(("spec", "field"), [
    ({"labels": {"team": "platform team"}}, "spec.labels.team"),
    ({"labels": {"bad key!": "x"}}, "spec.labels.bad key!"),
    ({"annotations": {"example.com/odd~key": "x"}}, "spec.annotations.example.com/odd~key"),
    ({"containers": [{"name": "Sidecar_1", "image": "x"}]}, "spec.containers[0].name"),
    ({"volumes": [{"name": "Vol_1", "emptyDir": {}}]}, "spec.volumes[0].name"),
    ({"containers": [{"name": "s", "image": "x", "resources": {"limits": {"cpu": "lots"}}}]},
     "spec.containers[0].resources.limits"),
    ({"containers": [{"name": "s", "image": "x", "ports": [{"containerPort": 70000}]}]},
     "spec.containers[0].ports[0].containerPort"),
    ({"initContainers": [{"name": "i", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}}]},
     "spec.initContainers[0].readinessProbe"),
    ({"env": [{"name": "A=B", "value": "x"}]}, "spec.env[0].name"),
])
def test_values_the_apiserver_refuses_fail_at_load(spec: dict[str, Any], field: str) -> None:
    lines = load_error(cfg(injectByDefault=True, **spec))
    assert any(f"(envoy): {field}" in line for line in lines), lines


def test_every_problem_of_every_document_is_reported_at_once() -> None:
    bad = cfg("a", injectByDefault=True, labels={"team": "platform team", "bad key!": "x"},
              containers=[{"name": "Sidecar_1", "image": "x", "imagePullPolicyy": "Always"}],
              volumes=[{"name": "Vol_1", "emptyDir": {}}])
    also_bad = cfg("b", injectByDefault="yes", hostNetwork="sometimes", labels={"x": "{{ anotations['v'] }}"})
    lines = load_error(bad, also_bad)
    text = "\n".join(lines)
    for where in ("(a): spec.labels.team", "(a): spec.labels.bad key!", "(a): spec.containers[0].name",
                  "(a): spec.containers[0].imagePullPolicyy", "(a): spec.volumes[0].name",
                  "(b): spec.injectByDefault", "(b): spec.hostNetwork", "(b): spec.labels.x"):
        assert where in text, (where, text)


def test_restart_policy_always_needs_a_kubernetes_version_with_native_sidecars() -> None:
    doc = cfg(injectByDefault=True, nativeSidecar=True, containers=[{"name": "s", "image": "x"}])
    with pytest.raises(ConfigError, match="native sidecar"):
        parse_configs([("old.yaml, document 1", doc)], schema=pod_schema("1.28"))
    parse_configs([("new.yaml, document 1", doc)], schema=pod_schema("1.29"))


def test_rendered_label_values_the_apiserver_refuses_are_injection_errors() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"team": "{{ annotations['team'] }}"}))
    with pytest.raises(InjectionError, match=r"spec.labels.team"):
        inject(pod(annotations={"team": "platform team"}), "ns", cs)
    assert inject(pod(annotations={"team": "platform"}), "ns", cs).pod["metadata"]["labels"]["team"] == "platform"


def test_a_mount_of_a_volume_neither_config_nor_pod_has_is_an_injection_error() -> None:
    cs = configs(cfg(injectByDefault=True, volumeMounts=[{"name": "app-data", "mountPath": "/data"}]))
    with pytest.raises(InjectionError, match="app-data"):
        inject(pod(), "ns", cs)
    p = pod()
    p["spec"]["volumes"] = [{"name": "app-data", "emptyDir": {}}]
    assert inject(p, "ns", cs).pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "app-data",
                                                                               "mountPath": "/data"}]


# ---- 3. template variables


def test_undeclared_template_variables_fail_at_load() -> None:
    lines = load_error(cfg(injectByDefault=True, labels={"v": "{{ anotations['v'] }}"}))
    assert any("spec.labels.v: template uses undefined variable anotations" in line for line in lines), lines


def test_name_is_the_pods_name_or_its_generate_name() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[
        {"name": "s", "image": "x", "env": [{"name": "POD", "value": "{{ name }}"}]}]))
    assert inject(pod(), "ns", cs).pod["spec"]["containers"][1]["env"][0]["value"] == "web-"
    named = pod(name="web-1")
    assert inject(named, "ns", cs).pod["spec"]["containers"][1]["env"][0]["value"] == "web-1"


def test_inject_goes_on_past_a_failing_document_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(json.dumps(cfg(injectByDefault=True, containers=[
        {"name": "s", "image": "x:{{ annotations['version'] }}"}])))
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "no-version"},
         "spec": {"template": {"metadata": {}, "spec": {"containers": [{"name": "a", "image": "a"}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok", "annotations": {"version": "2"}},
         "spec": {"containers": [{"name": "a", "image": "a"}]}},
    ]
    (tmp_path / "in.yaml").write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    for command in ("inject", "explain"):
        run = subprocess.run(
            [sys.executable, "-m", "sidecar_injector", command, "-f", str(tmp_path / "in.yaml"),
             "-c", str(tmp_path / "c.yaml")], capture_output=True, text=True)
        assert run.returncode == 1, run.stderr
        assert f"{tmp_path / 'in.yaml'}, document 1: Deployment no-version: template" in run.stderr, run.stderr
        if command == "inject":
            assert "no-version" in run.stdout and "x:2" in run.stdout
        else:
            assert "Pod ok" in run.stdout and "injected: envoy" in run.stdout


# ---- 4. hostNetwork pods


def host_pod() -> dict[str, Any]:
    p = pod()
    p["spec"]["hostNetwork"] = True
    return p


def test_host_network_pods_are_skipped_by_default_and_say_why() -> None:
    cs = configs(cfg(injectByDefault=True, initContainers=[
        {"name": "iptables", "image": "x", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]))
    r = inject(host_pod(), "ns", cs)
    assert r.patch == [] and r.skip_reason == "host-network"
    assert r.decisions[0].reason == "host-network" and "hostNetwork" in r.decisions[0].message
    assert any("hostNetwork" in w for w in r.warnings)


def test_a_config_may_opt_in_to_host_network_pods() -> None:
    cs = configs(cfg(injectByDefault=True, hostNetwork="inject", labels={"node-agent": "yes"}))
    assert inject(host_pod(), "ns", cs).injected == ("envoy",)


def test_a_sidecar_port_the_host_network_pod_already_holds_is_an_injection_error() -> None:
    """Found by the e2e corpus: on a hostNetwork pod every port is a host port (the apiserver
    sets hostPort to containerPort), so a sidecar on the app's port got the pod refused."""
    cs = configs(cfg(injectByDefault=True, hostNetwork="inject",
                     containers=[{"name": "s", "image": "x", "ports": [{"containerPort": 9100}]}]))
    p = host_pod()
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 9100}]
    with pytest.raises(InjectionError, match="host port TCP//9100 is already taken"):
        inject(p, "ns", cs)
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 9101}]
    assert inject(p, "ns", cs).injected == ("envoy",)


# ---- 5. pods that run to completion


def job_pod(policy: str = "OnFailure") -> dict[str, Any]:
    p = pod()
    p["spec"]["restartPolicy"] = policy
    return p


def test_regular_sidecars_go_in_as_native_ones_into_pods_that_run_to_completion() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[{"name": "s", "image": "x"}]))
    r = inject(job_pod(), "ns", cs)
    assert [c["name"] for c in r.pod["spec"]["containers"]] == ["app"]
    assert r.pod["spec"]["initContainers"] == [{"name": "s", "image": "x", "restartPolicy": "Always"}]
    assert "runToCompletion" in r.decisions[0].message
    assert inject(r.pod, "ns", cs).patch == []


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
def test_run_to_completion_skip_and_inject(policy: str) -> None:
    skip = configs(cfg(injectByDefault=True, runToCompletion="skip", containers=[{"name": "s", "image": "x"}]))
    r = inject(job_pod(policy), "ns", skip)
    assert r.patch == [] and r.decisions[0].reason == "run-to-completion"
    assert any("runs to completion" in w for w in r.warnings)
    anyway = configs(cfg(injectByDefault=True, runToCompletion="inject", containers=[{"name": "s", "image": "x"}]))
    assert [c["name"] for c in inject(job_pod(policy), "ns", anyway).pod["spec"]["containers"]] == ["app", "s"]


def test_without_native_sidecars_run_to_completion_pods_are_skipped_with_a_warning() -> None:
    doc = cfg(injectByDefault=True, containers=[{"name": "s", "image": "x"}])
    cs = parse_configs([("c.yaml, document 1", doc)], schema=pod_schema("1.28"))
    r = inject(job_pod(), "ns", cs)
    assert r.patch == [] and "no native sidecars" in r.decisions[0].message
    assert r.warnings


# ---- 6. clashes on app containers are warnings


def test_mount_path_and_env_name_clashes_are_warned_about() -> None:
    cs = configs(cfg(injectByDefault=True, volumes=[{"name": "v", "emptyDir": {}}],
                     volumeMounts=[{"name": "v", "mountPath": "/data"}], env=[{"name": "MODE", "value": "a"}]))
    p = pod()
    p["spec"]["volumes"] = [{"name": "mine", "emptyDir": {}}]
    p["spec"]["containers"][0].update(volumeMounts=[{"name": "mine", "mountPath": "/data"}],
                                      env=[{"name": "MODE", "value": "b"}])
    r = inject(p, "ns", cs)
    assert r.pod["spec"]["containers"][0]["volumeMounts"] == [{"name": "mine", "mountPath": "/data"}]
    assert any("already mounts '/data'" in w for w in r.warnings), r.warnings
    assert any("already sets env MODE" in w for w in r.warnings), r.warnings


# ---- matchConditions


def test_match_conditions_decide_per_pod() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"x": "y"}, matchConditions=[
        {"name": "not-istio", "expression": "!object.spec.containers.exists(c, c.name == 'istio-proxy')"}]))
    assert inject(pod(), "ns", cs).injected == ("envoy",)
    r = inject(pod(["app", "istio-proxy"]), "ns", cs)
    assert r.patch == [] and r.decisions[0].reason == "match-condition"
    assert "not-istio" in r.decisions[0].message


def test_match_condition_errors_are_caught_at_load_and_per_request() -> None:
    lines = load_error(cfg(injectByDefault=True, labels={"x": "y"},
                           matchConditions=[{"name": "broken", "expression": "object.spec.("}]))
    assert any("spec.matchConditions[0].expression" in line for line in lines), lines
    cs = configs(cfg(injectByDefault=True, labels={"x": "y"},
                     matchConditions=[{"name": "label", "expression": "object.metadata.labels['app'] == 'web'"}]))
    with pytest.raises(InjectionError, match="label"):
        inject(pod(), "ns", cs)
