"""The injection rules of issue 2, one behaviour per test."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import pytest

from sidecar_injector.core.errors import InjectionError, InputError
from sidecar_injector.core.inject import inject
from sidecar_injector.core.patch import apply_patch, escape, strip_empty

from .helpers import SIDECAR, cfg, configs, pod


def applied(p: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """Apply as the apiserver does (empty collections absent), with an independent library."""
    out: dict[str, Any] = jsonpatch.apply_patch(strip_empty(p), ops)
    assert out == apply_patch(strip_empty(p), ops)
    return out


def names(items: list[dict[str, Any]] | None) -> list[str]:
    return [i["name"] for i in items or []]


def test_default_config_injects_label_sidecar_volume_and_creates_absent_arrays() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, containers=[SIDECAR],
                     volumes=[{"name": "v", "emptyDir": {}}]))
    p = pod()
    r = inject(p, "ns", cs)
    assert r.injected == ("envoy",)
    paths = [op["path"] for op in r.patch]
    # labels, annotations and volumes were absent: created whole, never appended to
    assert "/metadata/labels" in paths and "/metadata/annotations" in paths and "/spec/volumes" in paths
    assert "/spec/containers/1" in paths and not any(p_.endswith("/-") for p_ in paths)
    out = applied(p, r.patch)
    assert out == strip_empty(r.pod)
    assert out["metadata"]["labels"] == {"foo": "bar"}
    assert names(out["spec"]["containers"]) == ["app", "proxy"]
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "app"
    assert p == pod(), "the input pod must not be modified"


def test_empty_lists_and_maps_are_treated_as_absent() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"a": "b"}, initContainers=[{"name": "i", "image": "i"}],
                     volumes=[{"name": "v", "emptyDir": {}}], volumeMounts=[{"name": "v", "mountPath": "/v"}]))
    p = pod(labels={}, annotations={})
    p["spec"].update(initContainers=[], volumes=[])
    p["spec"]["containers"][0]["volumeMounts"] = []
    r = inject(p, "ns", cs)
    assert {"/metadata/labels", "/spec/initContainers", "/spec/volumes", "/spec/containers/0/volumeMounts"} <= {
        op["path"] for op in r.patch
    }
    applied(p, r.patch)


def test_keys_with_slash_and_tilde_are_escaped() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"example.com/team": "x"}, annotations={"a.b/c": "d"},
                     containers=[SIDECAR]))
    p = pod(labels={"app": "web"}, annotations={"existing": "1"})
    r = inject(p, "ns", cs)
    paths = {op["path"] for op in r.patch}
    assert "/metadata/labels/example.com~1team" in paths
    assert "/metadata/annotations/a.b~1c" in paths
    out = applied(p, r.patch)
    assert out["metadata"]["annotations"]["a.b/c"] == "d"
    # "~" never reaches a patch from a config (such keys are refused at load), but pointers
    # escape it first all the same.
    assert escape("a~1b/c") == "a~01b~1c"


def test_pod_keys_win_over_config_labels_and_annotations() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, annotations={"x": "config"}, containers=[SIDECAR]))
    r = inject(pod(labels={"foo": "mine"}, annotations={"x": "mine"}), "ns", cs)
    assert r.pod["metadata"]["labels"]["foo"] == "mine"
    assert r.pod["metadata"]["annotations"]["x"] == "mine"


def test_idempotent_after_apiserver_defaulting_and_another_webhook() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, containers=[SIDECAR],
                     initContainers=[{"name": "init", "image": "i"}], volumes=[{"name": "v", "emptyDir": {}}],
                     env=[{"name": "E", "value": "1"}]))
    first = inject(pod(), "ns", cs)
    stored = applied(pod(), first.patch)
    for c in stored["spec"]["containers"] + stored["spec"]["initContainers"]:
        c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log",
                 terminationMessagePolicy="File")
    stored["spec"]["containers"].append({"name": "other-webhooks", "image": "x"})
    again = inject(stored, "ns", cs)
    assert again.patch == [] and again.skip_reason == "already-injected"


def test_pod_declaring_the_sidecar_keeps_its_own_and_gets_the_rest() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR, {"name": "second", "image": "s"}],
                     volumes=[{"name": "v", "emptyDir": {}}]))
    p = pod(["app", "proxy"])
    p["spec"]["volumes"] = [{"name": "v", "configMap": {"name": "mine"}}]
    r = inject(p, "ns", cs)
    assert names(r.pod["spec"]["containers"]) == ["app", "proxy", "second"]
    assert r.pod["spec"]["containers"][1]["image"] == "proxy:1"
    assert r.pod["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "mine"}}]
    assert not any("container proxy" in w for w in r.warnings)
    assert any("already has volume v" in w for w in r.warnings)
    assert r.decisions[0].conflicts == ("volume v",)
    assert "merged into the pod's own container proxy" in r.decisions[0].message


def test_a_partial_pod_container_is_merged_over_the_sidecar_the_pods_fields_winning() -> None:
    """Issue 8, item 6: a pod overriding only a sidecar's image used to end up with a container
    that has nothing but a name and an image (the sidecar replaced whole)."""
    sidecar = {"name": "proxy", "image": "envoy:1", "args": ["--a"], "ports": [{"containerPort": 15001}],
               "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "config"}],
               "volumeMounts": [{"name": "v", "mountPath": "/etc/proxy"}], "resources": {"limits": {"cpu": "1"}}}
    cs = configs(cfg(injectByDefault=True, nativeSidecar=True, containers=[sidecar],
                     volumes=[{"name": "v", "emptyDir": {}}]))
    p = pod(["app"])
    p["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy:2", "env": [{"name": "B", "value": "mine"}],
                                    "resources": {"requests": {"cpu": "100m"}}}]
    r = inject(p, "ns", cs)
    merged = r.pod["spec"]["initContainers"][0]
    assert merged["image"] == "envoy:2" and merged["args"] == ["--a"] and merged["restartPolicy"] == "Always"
    assert merged["env"] == [{"name": "B", "value": "mine"}, {"name": "A", "value": "1"}]
    assert merged["ports"] == [{"containerPort": 15001}]
    assert merged["resources"] == {"requests": {"cpu": "100m"}}
    assert names(r.pod["spec"]["initContainers"]) == ["proxy"]
    assert all(op["op"] == "add" for op in r.patch)
    assert applied(p, r.patch) == r.pod


def test_init_and_native_sidecars_go_before_the_pods_own_init_containers_in_config_order() -> None:
    cs = configs(
        cfg("mesh", injectByDefault=True, nativeSidecar=True, initContainers=[{"name": "mesh-init", "image": "i"}],
            containers=[{"name": "mesh-proxy", "image": "p"}]),
        cfg("vault", injectByDefault=True, initContainers=[{"name": "vault-init", "image": "v"}],
            containers=[{"name": "vault-agent", "image": "a"}]),
    )
    p = pod()
    p["spec"]["initContainers"] = [{"name": "migrate", "image": "m"}]
    r = inject(p, "ns", cs)
    out = applied(p, r.patch)
    assert names(out["spec"]["initContainers"]) == ["mesh-init", "mesh-proxy", "vault-init", "migrate"]
    assert out["spec"]["initContainers"][1]["restartPolicy"] == "Always"
    assert names(out["spec"]["containers"]) == ["app", "vault-agent"]


def test_volume_mounts_and_env_go_to_app_containers_lacking_them_only() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR], volumes=[{"name": "v", "emptyDir": {}}],
                     volumeMounts=[{"name": "v", "mountPath": "/shared"}], env=[{"name": "MESH", "value": "on"}]))
    p = pod(["a", "b"])
    p["spec"]["containers"][1]["volumeMounts"] = [{"name": "own", "mountPath": "/shared"}]
    p["spec"]["containers"][1]["env"] = [{"name": "MESH", "value": "off"}, {"name": "X", "value": "1"}]
    p["spec"]["initContainers"] = [{"name": "init", "image": "i"}]
    out = applied(p, inject(p, "ns", cs).patch)
    a, b, proxy = out["spec"]["containers"]
    assert a["volumeMounts"] == [{"name": "v", "mountPath": "/shared"}]
    assert a["env"] == [{"name": "MESH", "value": "on"}]
    assert b["volumeMounts"] == [{"name": "own", "mountPath": "/shared"}]
    assert b["env"] == [{"name": "MESH", "value": "off"}, {"name": "X", "value": "1"}]
    assert "volumeMounts" not in proxy and "env" not in proxy
    assert "volumeMounts" not in out["spec"]["initContainers"][0]


@pytest.mark.parametrize("where", ["annotations", "labels"])
def test_opt_out_by_annotation_or_label(where: str) -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR]))
    r = inject(pod(**{where: {"sidecar-injector.io/inject": " False "}}), "ns", cs)
    assert r.patch == [] and r.skip_reason == "opted-out"
    assert r.decisions[0].reason == "opted-out"


def test_mirror_pods_are_skipped() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR]))
    r = inject(pod(annotations={"kubernetes.io/config.mirror": "abc"}), "ns", cs)
    assert r.patch == [] and r.skip_reason == "mirror-pod"


def test_requested_configs_follow_defaults_in_annotation_order_with_whitespace() -> None:
    cs = configs(
        cfg("a", containers=[{"name": "a", "image": "a"}]),
        cfg("b", containers=[{"name": "b", "image": "b"}]),
        cfg("d", injectByDefault=True, containers=[{"name": "d", "image": "d"}]),
    )
    r = inject(pod(annotations={"sidecar-injector.io/inject": " b , a "}), "ns", cs)
    assert r.injected == ("d", "b", "a")
    assert names(r.pod["spec"]["containers"]) == ["app", "d", "b", "a"]
    status = json.loads(r.pod["metadata"]["annotations"]["sidecar-injector.io/status"])
    assert status["injected"] == ["d", "b", "a"] and status["hash"].startswith("sha256:")


def test_exclude_unknown_selector_and_namespace_are_explained_and_warned() -> None:
    cs = configs(
        cfg("d", injectByDefault=True, containers=[{"name": "d", "image": "d"}]),
        cfg("sel", selector={"matchLabels": {"tier": "web"}}, containers=[{"name": "s", "image": "s"}]),
        cfg("nsonly", namespaces=["prod"], containers=[{"name": "n", "image": "n"}]),
        cfg("quiet", containers=[{"name": "q", "image": "q"}]),
    )
    ann = {"sidecar-injector.io/inject": "sel,nsonly,ghost", "sidecar-injector.io/exclude": "d"}
    r = inject(pod(annotations=ann, labels={"tier": "db"}), "dev", cs)
    reasons = {d.config: d.reason for d in r.decisions}
    assert reasons == {"d": "excluded", "sel": "selector-mismatch", "nsonly": "namespace-not-allowed",
                       "quiet": "not-requested", "ghost": "unknown-config"}
    assert r.patch == [] and r.skip_reason == "nothing-to-inject"
    assert len(r.warnings) == 3
    assert any("'ghost'" in w and "does not exist" in w for w in r.warnings)
    assert any("tier=web" in w for w in r.warnings) and any("'dev'" in w for w in r.warnings)


def test_a_default_config_not_matching_its_selector_is_silent() -> None:
    cs = configs(cfg(injectByDefault=True, selector={"matchExpressions": [{"key": "tier", "operator": "In",
                                                                          "values": ["web"]}]},
                     containers=[SIDECAR]))
    r = inject(pod(labels={"tier": "db"}), "ns", cs)
    assert r.patch == [] and r.warnings == () and r.decisions[0].reason == "selector-mismatch"


def test_templates_render_per_pod_and_failures_are_injection_errors() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[{
        "name": "proxy", "image": "envoy:{{ annotations['envoy.version'] | default('v1') }}",
        "args": ["{{ namespace }}", "{{ labels.app }}", "{{ pod.metadata.generateName }}"]}]))
    r = inject(pod(labels={"app": "web"}, annotations={"envoy.version": "v2"}), "shop", cs)
    sidecar = r.pod["spec"]["containers"][1]
    assert sidecar["image"] == "envoy:v2" and sidecar["args"] == ["shop", "web", "web-"]
    assert inject(pod(labels={"app": "x"}), "ns", cs).pod["spec"]["containers"][1]["image"] == "envoy:v1"
    with pytest.raises(InjectionError, match="failed to render"):
        inject(pod(), "ns", cs)  # labels.app is undefined: StrictUndefined makes that an error


def test_templates_are_sandboxed() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[{
        "name": "p", "image": "{{ pod.__class__.__mro__ }}"}]), validate=False)
    with pytest.raises(InjectionError):
        inject(pod(), "ns", cs)


def test_status_hash_covers_rendered_content() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[{"name": "p", "image": "e:{{ labels.v }}"}]))
    def status(v: str) -> str:
        return str(inject(pod(labels={"v": v}), "ns", cs).pod["metadata"]["annotations"]["sidecar-injector.io/status"])
    assert status("1") == status("1") and status("1") != status("2")


def test_unknown_fields_survive_and_custom_prefix_works() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR]), prefix="mesh.example.com")
    p = pod(annotations={"mesh.example.com/inject": "false"})
    assert inject(p, "ns", cs).patch == []
    p2 = pod()
    p2["spec"]["futureField"] = {"x": 1}
    p2["spec"]["containers"][0]["alphaThing"] = [1, 2]
    out = inject(p2, "ns", cs).pod
    assert out["spec"]["futureField"] == {"x": 1} and out["spec"]["containers"][0]["alphaThing"] == [1, 2]
    assert "mesh.example.com/status" in out["metadata"]["annotations"]


def test_a_pod_without_containers_is_an_input_error() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR]))
    with pytest.raises(InputError):
        inject({"metadata": {}, "spec": {}}, "ns", cs)


def test_every_loaded_config_gets_exactly_one_decision() -> None:
    many = [cfg(f"c{i}", injectByDefault=i % 2 == 0, containers=[{"name": f"c{i}", "image": "x"}],
                selector={"matchLabels": {"never": "matches"}}) for i in range(100)]
    r = inject(pod(), "ns", configs(*many, validate=False))
    assert len(r.decisions) == 100


def test_a_label_added_by_one_config_can_select_the_next_and_stays_idempotent() -> None:
    cs = configs(
        cfg("a", injectByDefault=True, labels={"mesh": "on"}),
        cfg("b", injectByDefault=True, selector={"matchLabels": {"mesh": "on"}}, containers=[SIDECAR]),
    )
    first = inject(pod(), "ns", cs)
    assert first.injected == ("a", "b")
    assert inject(first.pod, "ns", cs).patch == []
