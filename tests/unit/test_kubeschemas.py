"""The pruned Kubernetes schemas (sidecar_injector/kubeschemas) are current and judge exactly as the full ones.

The full schemas are kubernetes-validate's (a test dependency only). Every test config is loaded
twice, once with the pruned schemas and once with the full ones, for several Kubernetes
versions, and must give the same verdict and the same messages; so must broken configs, and the
Pod schema's own error lists on crafted pods.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar_injector import kubeschemas
from sidecar_injector.config import configload, schema
from sidecar_injector.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ["1.37.0", "1.33.0", "1.29.0", "1.25.0"]


def _prune_script() -> Any:
    spec = importlib.util.spec_from_file_location("h13_prune", ROOT / "scripts" / "prune_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prune = _prune_script()

CONFIG_FILES = sorted({
    *ROOT.glob("examples/*/config.yaml"),
    *ROOT.glob("tests/golden/*/config.yaml"),
    *ROOT.glob("tests/e2e/corpus/configs/**/*.yaml"),
    configload.BUILTIN_EXAMPLE,
})

_BROKEN_SPECS = [
    {"containers": [{"name": "x", "image": "i", "imagePullPolicyy": "Always"}]},
    {"containers": [{"name": "x", "image": "i", "ports": [{"containerPort": "http"}]}]},
    {"containers": [{"name": "x", "image": "i", "resources": {"limits": {"cpu": {"a": 1}}}}]},
    {"containers": [{"name": "x", "image": "i", "securityContext": {"capabilities": {"add": "NET_ADMIN"}}}]},
    {"volumes": [{"name": "v", "emptyDir": {"medium": 3}}]},
    {"volumes": [{"name": "v", "hostPathh": {"path": "/"}}]},
    {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPathh": "x"}}}]},
    {"initContainers": [{"name": "x", "image": "i", "restartPolicy": "Always", "startupProbe": {"exec": {
        "command": "true"}}}]},
    {"containers": [{"name": "x", "image": "i", "lifecycle": {"preStop": {"sleep": {"seconds": "3"}}}}]},
    {"imagePullSecrets": [{"nam": "x"}]},
]


def _broken_docs() -> list[str]:
    return [yaml.safe_dump({"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
                            "metadata": {"name": f"broken-{i}"}, "spec": spec})
            for i, spec in enumerate(_BROKEN_SPECS)]


def _verdict(path: Path, version: str) -> str:
    try:
        configs = configload.load_configs(path, kube_version=version)
    except ConfigError as e:
        return f"error: {e}"
    return "ok: " + ",".join(c.name for c in configs.configs)


@pytest.fixture
def full_schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """kubeschemas.load answering with kubernetes-validate's full files."""
    schema.pod_schema.cache_clear()
    monkeypatch.setattr(kubeschemas, "load", lambda version: prune.full(version))
    yield
    schema.pod_schema.cache_clear()


def test_the_checked_in_schemas_are_current() -> None:
    assert prune.main(["--check"]) == 0, "run `.venv/bin/python scripts/prune_schemas.py`"


def test_every_upstream_version_from_the_oldest_supported_is_shipped() -> None:
    assert list(kubeschemas.versions()) == prune.upstream_versions()
    assert schema.DEFAULT_KUBE_VERSION in kubeschemas.versions()


def test_the_pruned_definitions_are_a_closed_subset() -> None:
    for version in kubeschemas.versions():
        pod, defs = kubeschemas.load(version)
        full_pod, full_defs = prune.full(version)
        assert pod == full_pod
        assert defs["$defs"].items() <= full_defs["$defs"].items()
        reached: set[str] = set()
        prune._refs(defs, reached)
        prune._refs(pod, reached)
        assert reached <= set(defs["$defs"]), "a $ref points outside the pruned definitions"
        assert len(defs["$defs"]) < len(full_defs["$defs"]) / 3


def _verdicts(tmp_path: Path) -> dict[tuple[str, str], str]:
    broken = tmp_path / "broken"
    broken.mkdir(exist_ok=True)
    paths = list(CONFIG_FILES)
    for i, doc in enumerate(_broken_docs()):
        p = broken / f"b{i}.yaml"
        p.write_text(doc)
        paths.append(p)
    schema.pod_schema.cache_clear()
    out = {(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p.name), v): _verdict(p, v)
           for p in paths for v in VERSIONS}
    schema.pod_schema.cache_clear()
    return out


def test_pruned_and_full_schemas_give_the_same_verdicts_on_every_test_config(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(CONFIG_FILES) >= 20
    pruned = _verdicts(tmp_path)
    monkeypatch.setattr(kubeschemas, "load", lambda version: prune.full(version))
    full = _verdicts(tmp_path)
    assert pruned == full
    assert sum(v.startswith("error") for v in pruned.values()) >= len(_BROKEN_SPECS) * len(VERSIONS)
    assert sum(v.startswith("ok") for v in pruned.values()) >= 20 * len(VERSIONS)


def test_pruned_and_full_pod_schemas_list_the_same_errors(full_schemas: None) -> None:
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec} for spec in _BROKEN_SPECS]
    full = {v: [schema.pod_schema(v).errors(p) for p in pods] for v in VERSIONS}
    schema.pod_schema.cache_clear()
    pruned_load = kubeschemas._load
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kubeschemas, "load", pruned_load)
        pruned = {v: [schema.pod_schema(v).errors(p) for p in pods] for v in VERSIONS}
    assert pruned == full
    assert all(errors for per_version in full.values() for errors in per_version[:2])
