"""Config loading and validation: every error names the file, the document and the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar_injector.config.configload import fingerprint, load_configs
from sidecar_injector.core.errors import ConfigError

GOOD = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata: {name: %s}
spec:
  containers: [{name: %s, image: busybox}]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_configs(path)
    return str(e.value)


def test_loads_a_file_with_several_documents(tmp_path: Path) -> None:
    p = write(tmp_path, "c.yaml", GOOD % ("a", "a") + "---\n" + GOOD % ("b", "b"))
    cs = load_configs(p)
    assert [c.name for c in cs.configs] == ["a", "b"]
    assert cs.configs[1].source == f"{p}, document 2"


def test_directory_reads_visible_yaml_in_name_order_never_hidden_copies(tmp_path: Path) -> None:
    # The layout kubelet gives a mounted ConfigMap: ..data -> ..2026_timestamp/, keys as symlinks.
    real = tmp_path / "..2026_11_26_05_00_00.123"
    real.mkdir()
    (real / "b.yaml").write_text(GOOD % ("b", "b"))
    (real / "a.yml").write_text(GOOD % ("a", "a"))
    (real / "notes.txt").write_text("not a config")
    os.symlink(real.name, tmp_path / "..data")
    for f in ("b.yaml", "a.yml", "notes.txt"):
        os.symlink(f"..data/{f}", tmp_path / f)
    cs = load_configs(tmp_path)
    assert [c.name for c in cs.configs] == ["a", "b"]


def test_fingerprint_changes_on_configmap_symlink_swap(tmp_path: Path) -> None:
    v1 = tmp_path / "..v1"
    v1.mkdir()
    (v1 / "c.yaml").write_text(GOOD % ("a", "a"))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/c.yaml", tmp_path / "c.yaml")
    before = fingerprint(tmp_path)
    v2 = tmp_path / "..v2"
    v2.mkdir()
    (v2 / "c.yaml").write_text(GOOD % ("b", "b"))
    os.symlink("..v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert fingerprint(tmp_path) != before
    assert [c.name for c in load_configs(tmp_path).configs] == ["b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "not valid YAML (line 1, column 5)"),
        ("- 1\n", "document 1: a SidecarConfig must be a mapping"),
        (GOOD.replace("sidecar-injector.io/v1alpha1", "v1") % ("a", "a"), "document 1 (a): apiVersion"),
        (GOOD.replace("metadata: {name: %s}", "metadata: {}") % "a", "document 1: metadata.name: required"),
        (GOOD % ("Bad_Name", "a"), "metadata.name: 'Bad_Name'"),
        (GOOD % ("a", "a") + "  extra: 1\n", "(a): spec.extra: unknown field"),
        (GOOD.replace(", image: busybox", "") % ("a", "a"), "spec.containers[0].image: required"),
        (GOOD.replace("[{name: %s, image: busybox}]", "[{name: x, image: b}, {name: x, image: c}]") % "a",
         "spec.containers[1].name: duplicate name 'x'"),
        (GOOD.replace("image: busybox", "image: busybox, restartPolicyy: Always") % ("a", "a"),
         "(a): spec.containers[0].restartPolicyy: unknown field"),
        (GOOD % ("a", "a") + "  env: [{name: X, valueFrom: {secretKeyRef: {nam: s, key: k}}}]\n",
         "spec.env[0].valueFrom.secretKeyRef.nam: unknown field"),
        (GOOD % ("a", "a") + "  volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\n",
         "spec.volumes[1].name: duplicate name 'v'"),
        (GOOD % ("a", "a") + "  volumeMounts: [{name: v}]\n", "spec.volumeMounts[0].mountPath: required"),
        (GOOD % ("a", "a") + "  labels: {port: 8080}\n", "spec.labels.port: keys and values must be strings"),
        (GOOD % ("a", "a") + "  injectByDefault: yes please\n", "spec.injectByDefault: must be true or false"),
        (GOOD % ("a", "a") + "  selector: {matchExpressions: [{key: k, operator: Has}]}\n",
         "spec.selector.matchExpressions[0].operator"),
        (GOOD.replace("image: busybox", "image: '{{ oops'") % ("a", "a"),
         "spec.containers[0].image: template syntax"),
    ],
)
def test_malformed_configs_name_file_document_and_field(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, "bad.yaml", text)
    message = error_of(p)
    assert str(p) in message
    assert expected in message


def test_native_sidecar_typo_is_reported_at_the_config_field(tmp_path: Path) -> None:
    text = GOOD.replace("image: busybox", "image: busybox, startupProbee: {}") % ("a", "a")
    text += "  nativeSidecar: true\n"
    message = error_of(write(tmp_path, "n.yaml", text))
    assert "(a): spec.containers[0].startupProbee: unknown field" in message


def test_duplicate_names_across_files_name_both(tmp_path: Path) -> None:
    write(tmp_path, "1.yaml", GOOD % ("same", "a"))
    write(tmp_path, "2.yaml", GOOD % ("same", "b"))
    message = error_of(tmp_path)
    assert "2.yaml, document 1" in message and "1.yaml, document 1" in message and "'same'" in message


def test_empty_directory_and_missing_path(tmp_path: Path) -> None:
    assert "no *.yaml" in error_of(tmp_path)
    assert "no such file" in error_of(tmp_path / "nope.yaml")


def test_unknown_kube_version_is_a_clear_error(tmp_path: Path) -> None:
    p = write(tmp_path, "c.yaml", GOOD % ("a", "a"))
    with pytest.raises(ConfigError, match=r"--kube-version 0\.1\.0: no schemas"):
        load_configs(p, kube_version="0.1.0")


def test_templates_are_exempt_from_format_checks_but_not_structure(tmp_path: Path) -> None:
    text = GOOD.replace("image: busybox", "image: busybox, ports: [{containerPort: 80, protocol: \"{{ 'TCP' }}\"}]")
    assert load_configs(write(tmp_path, "t.yaml", text % ("a", "a"))).configs[0].has_templates
