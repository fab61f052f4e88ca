"""The policy compiler without an apiserver: templates to CEL, refusals named in one line, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar_injector.configload import load_configs
from sidecar_injector.policy import compile_set
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
