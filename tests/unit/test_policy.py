"""The policy compiler without an apiserver: templates to CEL, refusals named in one line, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar_injector.config.configload import load_configs
from sidecar_injector.policy import compile_set, delivery_plan
from sidecar_injector.policy.templates import NotCompilable, compile_template

ROOT = Path(__file__).resolve().parents[2]


def test_template_forms() -> None:
    assert compile_template("x:{{ namespace }}") == '"x:" + (request.namespace)'
    cel = compile_template("{{ labels['app'] | default(annotations['a'] | default('u')) }}")
    assert cel == ('(object.metadata.?labels["app"].orValue('
                   'object.metadata.?annotations["a"].orValue("u")))')
    with pytest.raises(NotCompilable):
        compile_template("{{ pod.spec.nodeName }}")
    with pytest.raises(NotCompilable):
        compile_template("{{ labels['a'] | upper }}")


def test_refusals_name_field_and_reason() -> None:
    compiled = compile_set(load_configs(ROOT / "tests/golden/volume-mounts-and-env/config.yaml"))
    assert compiled.policy is None
    assert [str(u) for u in compiled.unsupported] == [
        "vault: spec.volumeMounts[1]: mounts volume 'vault-ca', which the config does not declare: "
        "the webhook checks per pod that the pod has it"]


def test_policy_shape() -> None:
    compiled = compile_set(load_configs(ROOT / "tests/golden/two-configs-order/config.yaml"))
    assert compiled.compiled == ("envoy", "logger", "debug")
    spec = compiled.policy["spec"] if compiled.policy else {}
    assert spec["reinvocationPolicy"] == "IfNeeded"
    assert any(c["name"] == "not-injected-yet" for c in spec["matchConditions"])
    assert compiled.binding and compiled.binding["spec"]["policyName"] == "sidecar-injector"


def test_cli_exit_status() -> None:
    run = [sys.executable, "-m", "sidecar_injector", "policy", "-c"]
    ok = subprocess.run([*run, str(ROOT / "examples/01-seed-article/config.yaml")], capture_output=True, text=True)
    assert ok.returncode == 0 and [d["kind"] for d in yaml.safe_load_all(ok.stdout)] == [
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
    bad = subprocess.run([*run, str(ROOT / "tests/e2e/corpus/configs")], capture_output=True, text=True)
    assert bad.returncode == 1 and "webhook-only: mesh-sidecar: spec.labels." in bad.stderr
    assert "kind: MutatingAdmissionPolicy" in bad.stdout  # vault-agent compiles
    partial = subprocess.run([*run, str(ROOT / "tests/e2e/corpus/configs"), "--allow-partial"],
                             capture_output=True, text=True)
    assert partial.returncode == 0


# -- manifests --mode, the delivery plan --------------------------------------------------------

HYBRID = ROOT / "tests/e2e/data/hybrid.yaml"
_WEBHOOK_KINDS = {"Deployment", "Service", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                  "Secret", "Job", "CronJob", "Certificate", "Issuer", "ConfigMap", "Namespace",
                  "CustomResourceDefinition"}


def _manifests(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar_injector", "manifests", "--image", "reg.example/si:1",
                           *args], capture_output=True, text=True)


def _kinds(text: str) -> list[str]:
    return [d["kind"] for d in yaml.safe_load_all(text) if d]


def test_mode_webhook_is_the_default_and_unchanged() -> None:
    default, explicit = _manifests(), _manifests("--mode", "webhook")
    assert default.returncode == 0 and default.stdout == explicit.stdout
    kinds = _kinds(default.stdout)
    assert "MutatingWebhookConfiguration" in kinds and "MutatingAdmissionPolicy" not in kinds
    [hook] = [d for d in yaml.safe_load_all(default.stdout) if d and d["kind"] == "MutatingWebhookConfiguration"]
    assert hook["webhooks"][0]["failurePolicy"] == "Ignore"


def test_mode_policy_installs_only_the_policy_and_binding() -> None:
    out = _manifests("--mode", "policy", "-c", str(ROOT / "tests/golden/two-configs-order/config.yaml"))
    assert out.returncode == 0, out.stderr
    assert _kinds(out.stdout) == ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
    assert "kubectl label namespace NS sidecar-injector.io/injection=enabled" in out.stdout
    policy, binding = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["metadata"]["annotations"]["sidecar-injector.io/configs"] == "envoy,logger,debug"
    sel = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert sel[0] == {"key": "sidecar-injector.io/injection", "operator": "In", "values": ["enabled"]}
    assert "kube-system" in sel[1]["values"]
    ignore = _manifests("--mode", "policy", "--failure-policy", "Ignore", "-c",
                        str(ROOT / "examples/01-seed-article/config.yaml"))
    assert next(yaml.safe_load_all(ignore.stdout))["spec"]["failurePolicy"] == "Ignore"
    # A config that does not compile: refused, named (hybrid is the way).
    bad = _manifests("--mode", "policy", "-c", str(HYBRID))
    assert bad.returncode != 0 and "node-agent: spec.containers[0].ports[0]" in bad.stderr and not bad.stdout
    assert _manifests("--mode", "policy", "--monitoring").returncode != 0


def test_mode_policy_kustomize(tmp_path: Path) -> None:
    out = _manifests("--mode", "policy", "--kustomize", str(tmp_path / "k"))
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert files == ["kustomization.yaml", "mutatingadmissionpolicy-sidecar-injector.yaml",
                     "mutatingadmissionpolicybinding-sidecar-injector.yaml"]


def test_mode_hybrid_splits_policy_and_webhook() -> None:
    out = _manifests("--mode", "hybrid", "-c", str(HYBRID), "-n", "inj")
    assert out.returncode == 0, out.stderr
    assert "hybrid: node-agent by the webhook: webhook-only: spec.containers[0].ports[0]" in out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert {"Deployment", "Service", "MutatingWebhookConfiguration"} <= set(kinds)
    assert kinds[-2:] == ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    held = [c["metadata"]["name"] for text in cm["data"].values() for c in yaml.safe_load_all(text) if c]
    assert held == ["node-agent"]  # the webhook does not inject what the policy delivers
    policy, binding = docs[-2:]
    assert policy["metadata"]["annotations"]["sidecar-injector.io/configs"] == "hello-sidecar"
    assert "inj" in binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][1]["values"]
    [hook] = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    assert hook["webhooks"][0]["failurePolicy"] == "Ignore" and policy["spec"]["failurePolicy"] == "Fail"
    # Everything compiles: the policy install; nothing does: the webhook install.
    all_ok = _manifests("--mode", "hybrid", "-c", str(ROOT / "examples/01-seed-article/config.yaml"))
    assert _kinds(all_ok.stdout) == ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
    none_ok = _manifests("--mode", "hybrid", "-c", str(ROOT / "tests/golden/volume-mounts-and-env/config.yaml"))
    assert none_ok.stdout == _manifests("-c", str(ROOT / "tests/golden/volume-mounts-and-env/config.yaml")).stdout


def test_webhook_files_keep_whole_files_verbatim() -> None:
    from sidecar_injector.cli.manifests import webhook_files
    one = "# c\napiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: a}\nspec: {}\n"
    two = one + "---\n" + one.replace("name: a", "name: b")
    assert webhook_files({"1.yaml": one, "2.yaml": two}, {"a"}) == {
        "1.yaml": one, "2.yaml": webhook_files({"2.yaml": two}, {"a"})["2.yaml"]}
    assert webhook_files({"2.yaml": two}, {"a", "b"}) == {"2.yaml": two}
    assert webhook_files({"1.yaml": one}, {"b"}) == {}


def _cfg(tmp_path: Path, text: str) -> Any:
    (tmp_path / "c.yaml").write_text(text)
    return load_configs(tmp_path / "c.yaml")


_HDR = "apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\n"
_HOSTPORT = ("  containers:\n  - name: {n}\n    image: x\n    ports: [{{containerPort: 1, hostPort: 1}}]\n")


def test_hybrid_rule_order_and_interactions(tmp_path: Path) -> None:
    def doc(name: str, body: str, default: bool = True) -> str:
        return f"{_HDR}metadata: {{name: {name}}}\nspec:\n  injectByDefault: {str(default).lower()}\n{body}"
    ok = "  containers:\n  - {name: ok, image: x}\n"
    # A compilable default after a webhook-only default stays in the webhook (order).
    plan = delivery_plan(_cfg(tmp_path, doc("w", _HOSTPORT.format(n="w")) + "---\n" + doc("p", ok)))
    assert plan.policy == () and "after the webhook-only default w" in (plan.of("p") or _none()).hybrid_reason
    # A requested (not injectByDefault) config: ordered by the annotation, kept in the webhook.
    plan = delivery_plan(_cfg(tmp_path, doc("p", ok, default=False) + "---\n" + doc("w", _HOSTPORT.format(n="w"))))
    assert plan.policy == () and "not injectByDefault" in (plan.of("p") or _none()).hybrid_reason
    # The split itself: p first, w after.
    plan = delivery_plan(_cfg(tmp_path, doc("p", ok) + "---\n" + doc("w", _HOSTPORT.format(n="w"))))
    assert (plan.policy, plan.webhook, plan.split_problem) == (("p",), ("w",), "")
    assert plan.deliveries[1].modes()["policy"]["delivery"] == "none"
    # Interactions put everything in the webhook, with the reason.
    cases = {
        "both inject a container named": _HOSTPORT.format(n="ok"),
        "adds volumeMounts/env to the app containers": _HOSTPORT.format(n="w") + "  env: [{name: A, value: b}]\n",
        "has matchConditions": _HOSTPORT.format(n="w") + "  matchConditions: [{name: m, expression: 'true'}]\n",
        "templates reading the pod's labels": _HOSTPORT.format(n="w").replace("image: x",
                                                                            "image: \"x:{{ labels['v'] }}\""),
    }
    for why, w in cases.items():
        plan = delivery_plan(_cfg(tmp_path, doc("p", ok) + "---\n" + doc("w", w)))
        assert plan.policy == () and why in plan.split_problem, (why, plan)
        assert why in (plan.of("p") or _none()).hybrid_reason
    sel = doc("p", ok + "  selector: {matchLabels: {team: a}}\n")
    plan = delivery_plan(_cfg(tmp_path, sel + "---\n" + doc("w", _HOSTPORT.format(n="w") + "  labels: {team: a}\n")))
    assert "reads label 'team'" in plan.split_problem


def _none() -> Any:
    raise AssertionError("no such config")


def test_explain_says_the_delivery_per_mode() -> None:
    import json
    pods = ("apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec: {containers: [{name: a, image: a}]}\n---\n"
            "apiVersion: v1\nkind: Pod\nmetadata: {name: own}\nspec: {containers: [{name: hello-sidecar, image: a}]}\n")
    run = [sys.executable, "-m", "sidecar_injector", "explain", "-f", "-", "-c", str(HYBRID)]
    text = subprocess.run(run, input=pods, capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    assert "delivery by install mode (manifests --mode webhook | policy | hybrid):" in text.stdout
    assert "  hello-sidecar: webhook: webhook; policy: policy; hybrid: policy\n" in text.stdout
    assert "  node-agent: webhook: webhook; policy: none; hybrid: webhook\n" in text.stdout
    assert "    policy: not delivered: webhook-only: spec.containers[0].ports[0]: a host port" in text.stdout
    assert "leaves this pod alone: it declares a container named 'hello-sidecar'" in text.stdout
    records = json.loads(subprocess.run([*run, "-o", "json"], input=pods, capture_output=True, text=True).stdout)
    plain, own = records
    assert plain["policyDeclines"] is None and "hello-sidecar" in own["policyDeclines"]
    d = {x["config"]: x["delivery"] for x in plain["decisions"]}
    assert d["hello-sidecar"]["hybrid"] == {"delivery": "policy", "reason": "compiles, and the split is safe"}
    assert d["node-agent"]["policy"]["delivery"] == "none"
    assert d["node-agent"]["hybrid"]["reason"].startswith("webhook-only: spec.containers[0].ports[0]")
