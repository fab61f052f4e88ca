"""Monitoring as code: the PrometheusRule's alerts under ``promtool test rules``, the ServiceMonitor by structure.

``promtool`` is a test-only tool built from the Go module proxy (tests/e2e/tools.py); without
it the promtool tests skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar_injector.config import configload
from sidecar_injector.install import manifests, monitoring

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
COMPONENT = ROOT / "deploy" / "monitoring"
OPTS = manifests.ManifestOptions(namespace="sidecar-injector", image="sidecar-injector:0.1.0",
                                 config_files={"example.yaml": configload.BUILTIN_EXAMPLE.read_text()})


def _tools() -> Any:
    spec = importlib.util.spec_from_file_location("h13_tools_mon", ROOT / "tests" / "e2e" / "tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def promtool() -> Path:
    return Path(_tools().for_tests("promtool"))


def _component(kind: str) -> dict[str, Any]:
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    found = [doc for r in kustomization["resources"] if (doc := yaml.safe_load((COMPONENT / r).read_text()))["kind"]
             == kind]
    assert len(found) == 1
    return found[0]


def _rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_component("PrometheusRule")["spec"], sort_keys=False))
    shutil.copy(HERE / "rules_test.yaml", tmp_path / "rules_test.yaml")
    return tmp_path


def test_the_component_holds_what_the_module_renders() -> None:
    assert _component("PrometheusRule") == monitoring.prometheus_rule(OPTS)
    assert _component("ServiceMonitor") == monitoring.service_monitor(OPTS)
    assert _component("Service") == monitoring.metrics_service(OPTS)


def test_promtool_check_rules(promtool: Path, tmp_path: Path) -> None:
    d = _rules_dir(tmp_path)
    out = subprocess.run([str(promtool), "check", "rules", str(d / "rules.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(monitoring.ALERTS)} rules found" in out.stdout + out.stderr


def test_promtool_unit_tests_fire_every_alert_and_stay_silent_when_healthy(promtool: Path, tmp_path: Path) -> None:
    d = _rules_dir(tmp_path)
    out = subprocess.run([str(promtool), "test", "rules", "rules_test.yaml"], cwd=d, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    tests = yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
    cases = [case for t in tests for case in t["alert_rule_test"]]
    rules = [r["alert"] for g in _component("PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert sorted(rules) == sorted(monitoring.ALERTS)
    for alert in rules:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} never fires in a test"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} is never shown silent"


def test_every_alert_selects_only_this_install_and_says_what_to_do() -> None:
    for group in _component("PrometheusRule")["spec"]["groups"]:
        for rule in group["rules"]:
            assert 'job="sidecar-injector-metrics", namespace="sidecar-injector"' in rule["expr"], rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_service_monitor_reaches_the_webhook_pods_metrics_port() -> None:
    objects = manifests.render(OPTS)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == OPTS.name]
    service, monitor = _component("Service"), _component("ServiceMonitor")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] == port["targetPort"] == "metrics"
    container_ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert container_ports["metrics"] == port["port"]
    assert {"port": port["port"], "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]
    # The webhook Service stays TLS-only: the metrics port is the metrics Service's alone.
    [webhook_service] = [o for o in objects if o["kind"] == "Service"]
    assert [p["name"] for p in webhook_service["spec"]["ports"]] == ["https"]
