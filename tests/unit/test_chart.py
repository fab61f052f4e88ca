"""The Helm chart (charts/sidecar-injector): generated from the manifests, equal to them, lint-clean, valid.

``helm`` is a test-only tool built from the Go module proxy (tests/e2e/tools.py); without it
these tests skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar_injector.config import configload
from sidecar_injector.install import manifests, monitoring

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sidecar-injector"
EXAMPLE = {"example.yaml": configload.BUILTIN_EXAMPLE.read_text()}
NS = "sidecar-injector"
KUBE_VERSION = "1.37.0"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tools = _load("h13_tools", ROOT / "tests" / "e2e" / "tools.py")
gen_chart = _load("h13_gen_chart", ROOT / "scripts" / "gen_chart.py")


@pytest.fixture(scope="module")
def helm() -> Path:
    return tools.for_tests("helm")


KEEP = {"helm.sh/resource-policy": "keep"}


def helm_template(helm: Path, values: dict[str, Any] | None = None, namespace: str = NS) -> list[dict[str, Any]]:
    """The chart's objects, less the one annotation only the chart adds (``helm.sh/resource-policy:
    keep`` on the CRDs and the Namespace, checked here)."""
    args = [str(helm), "template", "release", str(CHART), "--namespace", namespace]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    objects = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    for obj in objects:
        if obj["kind"] in ("CustomResourceDefinition", "Namespace"):
            assert obj["metadata"].pop("annotations") == KEEP, _key(obj)
    return objects


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _sorted(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=_key)


def manifests_objects(monitoring_on: bool = False, **kw: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"namespace": NS, "image": "sidecar-injector:0.1.0", "config_files": EXAMPLE}
    args.update(kw)
    opts = manifests.ManifestOptions(**args)
    return manifests.render(opts) + (monitoring.render(opts) if monitoring_on else [])


def test_the_templates_are_generated_from_the_manifests() -> None:
    assert gen_chart.main(["--check"]) == 0, "run `.venv/bin/python scripts/gen_chart.py`"


def test_default_values_give_exactly_the_objects_of_manifests_with_default_options(helm: Path) -> None:
    got, want = helm_template(helm), manifests_objects()
    assert [_key(o) for o in _sorted(got)] == [_key(o) for o in _sorted(want)]
    for have, expected in zip(_sorted(got), _sorted(want), strict=True):
        assert have == expected, f"{_key(have)} differs"


@pytest.mark.parametrize("values,options", [
    pytest.param({"certificates": {"mode": "cert-manager"}}, {"cert_manager": True}, id="cert-manager"),
    pytest.param({"failurePolicy": "Fail", "replicas": 3, "name": "platform-injector",
                  "labels": {"team": "platform"}, "priorityClassName": "",
                  "image": "registry.example.com/si@sha256:" + "a" * 64, "certificates": {"schedule": "5 4 * * 1"}},
                 {"failure_policy": "Fail", "replicas": 3, "name": "platform-injector", "labels": {"team": "platform"},
                  "priority_class_name": "", "image": "registry.example.com/si@sha256:" + "a" * 64,
                  "cert_schedule": "5 4 * * 1"}, id="options"),
    pytest.param({"sidecarConfigs": {"a.yaml": EXAMPLE["example.yaml"], "b.yml": EXAMPLE["example.yaml"].replace(
        "hello-sidecar", "other")}}, {"config_files": {"a.yaml": EXAMPLE["example.yaml"], "b.yml": EXAMPLE[
            "example.yaml"].replace("hello-sidecar", "other")}}, id="configs"),
    pytest.param({"monitoring": {"enabled": True}}, {"monitoring_on": True}, id="monitoring"),
])
def test_values_give_the_objects_of_the_matching_manifests_options(helm: Path, values: dict[str, Any],
                                                                    options: dict[str, Any]) -> None:
    namespace = "platform" if "name" in values else NS
    got = helm_template(helm, values, namespace)
    want = manifests_objects(**{"namespace": namespace, **options})
    assert [_key(o) for o in _sorted(got)] == [_key(o) for o in _sorted(want)]
    for have, expected in zip(_sorted(got), _sorted(want), strict=True):
        assert have == expected, f"{_key(have)} differs"


CHART_ONLY = {
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
    "podAnnotations": {"example.com/scrape": "true"},
    "certificates": {"hook": True},
    "monitoring": {"enabled": True},
}


def test_chart_only_values_land_in_the_pod_spec_and_the_job(helm: Path) -> None:
    objects = helm_template(helm, CHART_ONLY)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == CHART_ONLY["podAnnotations"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod["spec"][key] == CHART_ONLY[key]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    [job] = [o for o in objects if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_namespace_and_crds_can_be_left_out(helm: Path) -> None:
    kinds = {o["kind"] for o in helm_template(helm, {"namespace": {"create": False}, "crds": {"install": False}})}
    assert "Namespace" not in kinds and "CustomResourceDefinition" not in kinds and "Deployment" in kinds


@pytest.mark.parametrize("values", [{}, CHART_ONLY, {"certificates": {"mode": "cert-manager"}}],
                         ids=["defaults", "chart-only", "cert-manager"])
def test_helm_template_validates_strictly_against_the_kubernetes_schema(helm: Path, values: dict[str, Any]) -> None:
    checked = 0
    for obj in helm_template(helm, values):
        if obj["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")):
            continue  # not in the Kubernetes schemas; checked by structure in test_manifests / tests/monitoring
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("values", [{}, CHART_ONLY, {"certificates": {"mode": "cert-manager"}}],
                         ids=["defaults", "chart-only", "cert-manager"])
def test_helm_lint_strict(helm: Path, values: dict[str, Any]) -> None:
    args = [str(helm), "lint", "--strict", str(CHART), "--namespace", NS]
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_values_schema_refuses_unknown_and_bad_values(helm: Path) -> None:
    for bad in ({"failurePolicy": "Maybe"}, {"replica": 2}, {"certificates": {"mode": "vault"}}):
        args = [str(helm), "template", "r", str(CHART)]
        for key, value in bad.items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        out = subprocess.run(args, capture_output=True, text=True, check=False)
        assert out.returncode != 0 and "values don't meet the specifications of the schema" in out.stderr, bad


def test_the_chart_version_follows_the_package() -> None:
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["version"] == chart["appVersion"] == version
    assert yaml.safe_load((CHART / "values.yaml").read_text())["image"] == f"sidecar-injector:{version}"
