"""GitOps-grade offline injection (issue 9), run as a user runs it: faithful YAML, outputs,
inputs, uninject/reinject and stale detection."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path

import jsonpatch
import pytest
import yaml

from sidecar_injector.yamlio.read import load_all

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "01-seed-article" / "config.yaml"
CORPUS_CONFIGS = ROOT / "tests" / "e2e" / "corpus" / "configs"


def cli(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([sys.executable, "-m", "sidecar_injector", *args], input=data, capture_output=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


STREAM = """\
# Copyright The Example Authors. Licensed under the Apache License, Version 2.0.
# A licence header that must survive.
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: scripts   # a trailing comment
data:
  equals: =
  time: 10:30
  when: 2024-01-01T10:00:00Z
  run.sh: |
    #!/bin/sh
    set -eu
    echo "hello"   # kept as written
  'quoted': "double"
  flow: {a: 1, b: [x, y]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      labels:
        app: web   # the app label
    spec:
      containers:
        # the application
        - name: web
          image: "nginx:1.27"
          args: ['--port', "8080"]
          env:
            - name: MODE
              value: >
                folded
                text
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{port: 80}]
"""


def _unified(a: str, b: str) -> list[str]:
    return list(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True), n=0))[2:]


def test_untouched_documents_come_out_byte_for_byte_and_injection_only_adds_lines() -> None:
    r = cli("inject", "-f", "-", "-c", str(SEED), stdin=STREAM)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(STREAM.split("---\napiVersion: apps/v1")[0])  # header, ConfigMap byte for byte
    assert out.endswith("---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
                        "spec:\n  ports: [{port: 80}]\n")
    diff = _unified(STREAM, out)
    assert diff and not [d for d in diff if d.startswith("-")], "only additions"
    added = "".join(d[1:] for d in diff if d.startswith("+"))
    assert "foo: bar" in added and "- name: sidecar" in added
    # The added container follows the list's own indentation (dash under the key + 2).
    assert "\n        - name: sidecar\n" in out
    deployment = [d for d in load_all(out) if d][1]
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]


def test_values_read_as_kubectl_reads_them_pass_through() -> None:
    r = cli("inject", "-f", "-", "-c", str(SEED), "-o", "json", stdin=STREAM)
    assert r.returncode == 0, r.stderr
    lst = json.loads(r.stdout)
    assert lst["kind"] == "List" and len(lst["items"]) == 3
    data = lst["items"][0]["data"]
    assert data["equals"] == "=" and data["time"] == "10:30" and data["when"] == "2024-01-01T10:00:00Z"
    assert data["run.sh"].startswith("#!/bin/sh\nset -eu\n")


def test_json_output_of_one_document_is_the_object() -> None:
    r = cli("inject", "-f", "-", "-c", str(SEED), "-o", "json", stdin="apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
            "spec:\n  containers:\n  - {name: app, image: a}\n")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["kind"] == "Pod" and [c["name"] for c in obj["spec"]["containers"]] == ["app", "sidecar"]


def test_crlf_and_duplicate_keys_are_kept() -> None:
    text = ("apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: p\r\n  name: p\r\n"
            "spec:\r\n  containers:\r\n  - name: app\r\n    image: a\r\n")
    r = subprocess.run([sys.executable, "-m", "sidecar_injector", "inject", "-f", "-", "-c", str(SEED)],
                       input=text.encode(), capture_output=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.count("  name: p\r\n") == 2
    assert "\n" not in out.replace("\r\n", "")  # every line break is still CRLF, the added ones too
    back = subprocess.run([sys.executable, "-m", "sidecar_injector", "uninject", "-f", "-"], input=r.stdout,
                          capture_output=True)
    assert back.stdout.decode() == text


def test_patch_output_turns_each_input_object_into_the_output_one() -> None:
    r = cli("inject", "-f", "-", "-c", str(SEED), "-o", "patch", stdin=STREAM)
    assert r.returncode == 0, r.stderr
    patches = yaml.safe_load(r.stdout)
    assert len(patches) == 1
    (p,) = patches
    assert p["target"] == {"group": "apps", "version": "v1", "kind": "Deployment", "name": "web", "namespace": "shop"}
    before = [d for d in load_all(STREAM) if d][1]  # PyYAML cannot read `equals: =`
    after = json.loads(cli("inject", "-f", "-", "-c", str(SEED), "-o", "json", stdin=STREAM).stdout)["items"][1]
    assert jsonpatch.apply_patch(before, json.loads(p["patch"])) == after


def test_filename_directories_in_name_order_and_recursive(tmp_path: Path) -> None:
    d = tmp_path / "manifests"
    (d / "sub").mkdir(parents=True)
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}}}\nspec:\n  containers:\n  - {{name: app, image: a}}\n"
    (d / "b.yaml").write_text(pod.format(n="b"))
    (d / "a.yml").write_text(pod.format(n="a"))
    (d / "c.json").write_text(json.dumps(yaml.safe_load(pod.format(n="c"))))
    (d / "notes.txt").write_text("not a manifest")
    (d / "sub" / "d.yaml").write_text(pod.format(n="d"))
    r = cli("inject", "-f", str(d), "-c", str(SEED))
    assert r.returncode == 0, r.stderr
    assert [x["metadata"]["name"] for x in yaml.safe_load_all(r.stdout)] == ["a", "b", "c"]
    r = cli("inject", "-R", "-f", str(d), "-c", str(SEED))
    assert [x["metadata"]["name"] for x in yaml.safe_load_all(r.stdout)] == ["a", "b", "c", "d"]
    json_pod = next(x for x in yaml.safe_load_all(r.stdout) if x["metadata"]["name"] == "c")
    assert [c["name"] for c in json_pod["spec"]["containers"]] == ["app", "sidecar"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("inject", "-f", str(empty), "-c", str(SEED))
    assert r.returncode == 1 and "no *.yaml, *.yml, *.json files" in r.stderr


def test_a_template_reading_the_namespace_of_an_object_without_one_warns() -> None:
    pod = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: p}\nspec:\n  containers:\n"
           "  - {name: app, image: a}\n")
    r = cli("inject", "-f", "-", "-c", str(CORPUS_CONFIGS), stdin=pod)
    assert r.returncode == 0, r.stderr
    assert "names no namespace and --namespace was not given" in r.stderr
    r = cli("inject", "-f", "-", "-c", str(CORPUS_CONFIGS), "--namespace", "team", stdin=pod)
    assert "names no namespace" not in r.stderr
    r = cli("inject", "-f", "-", "-c", str(SEED), stdin=pod)  # the seed config reads no namespace
    assert "names no namespace" not in r.stderr


def _config(tmp_path: Path, image: str, extra: str = "") -> Path:
    f = tmp_path / f"cfg-{image.replace(':', '-')}.yaml"
    f.write_text(
        "apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: proxy}\nspec:\n"
        "  injectByDefault: true\n  labels: {mesh: 'on'}\n"
        f"  containers:\n  - name: proxy\n    image: {image}\n    ports: [{{containerPort: 15001}}]\n"
        "  volumes:\n  - {name: certs, emptyDir: {}}\n"
        "  volumeMounts:\n  - {name: certs, mountPath: /certs}\n  env:\n  - {name: PROXY, value: 'yes'}\n" + extra
    )
    return f


WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api   # the API
spec:
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
        env: []
      - name: proxy        # pins the sidecar's image; the rest comes from the config
        image: proxy:pinned
"""


def test_uninject_removes_exactly_what_was_added_even_after_the_config_changed(tmp_path: Path) -> None:
    v1 = _config(tmp_path, "proxy:1")
    injected = cli("inject", "-f", "-", "-c", str(v1), stdin=WORKLOAD)
    assert injected.returncode == 0, injected.stderr
    status = json.loads(yaml.safe_load(injected.stdout)["spec"]["template"]["metadata"]["annotations"]
                        ["sidecar-injector.io/status"])
    assert status["added"]["into"]["proxy"]["fields"] == ["ports"]  # merged into the pod's own proxy
    assert status["added"]["into"]["api"]["empty"] == {"env": []}
    v1.unlink()  # the config is gone: removal does not need it
    back = cli("uninject", "-f", "-", stdin=injected.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout == WORKLOAD


def test_reinject_upgrades_to_the_current_configs_and_is_a_no_op_when_unchanged(tmp_path: Path) -> None:
    v1, v2 = _config(tmp_path, "proxy:1"), _config(tmp_path, "proxy:2", "  annotations: {proxy/v: '2'}\n")
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: a}\n"
    once = cli("inject", "-f", "-", "-c", str(v1), stdin=pod).stdout
    assert cli("inject", "-f", "-", "-c", str(v1), stdin=once).stdout == once  # plain inject: nothing to do
    assert cli("inject", "--reinject", "-f", "-", "-c", str(v1), stdin=once).stdout == once
    upgraded = cli("inject", "--reinject", "-f", "-", "-c", str(v2), stdin=once)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout == cli("inject", "-f", "-", "-c", str(v2), stdin=pod).stdout
    assert "proxy:2" in upgraded.stdout and "proxy:1" not in upgraded.stdout


def test_explain_reports_up_to_date_or_stale_and_gates_ci(tmp_path: Path) -> None:
    v1, v2 = _config(tmp_path, "proxy:1"), _config(tmp_path, "proxy:2")
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: a}\n"
    once = cli("inject", "-f", "-", "-c", str(v1), stdin=pod).stdout
    ok = cli("explain", "--fail-on-stale", "-f", "-", "-c", str(v1), stdin=once)
    assert ok.returncode == 0, ok.stderr
    assert "status: up to date" in ok.stdout
    stale = cli("explain", "--fail-on-stale", "-f", "-", "-c", str(v2), stdin=once)
    assert stale.returncode == 1
    assert "status: stale: injected sha256:" in stale.stdout and "the current configs give sha256:" in stale.stdout
    assert "config proxy changed" in stale.stdout and "--reinject" in stale.stderr
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: other}\n"
                     "spec:\n  injectByDefault: true\n  labels: {other: 'yes'}\n")
    gone = cli("explain", "-o", "json", "-f", "-", "-c", str(other), stdin=once)
    (rec,) = json.loads(gone.stdout)
    assert rec["status"]["state"] == "stale"
    assert rec["status"]["differences"] == ["config other added", "config proxy removed"]
    assert cli("explain", "-f", "-", "-c", str(v2), stdin=once).returncode == 0  # no gate asked
    warn = cli("explain", "--fail-on-warning", "-f", "-", "-c", str(v1), stdin=pod.replace(
        "metadata: {name: p}", "metadata: {name: p, annotations: {sidecar-injector.io/inject: nope}}"))
    assert warn.returncode == 1 and "warning" in warn.stderr


def test_a_pod_injected_before_the_status_recorded_what_was_added_gets_a_clear_message() -> None:
    old = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
           "    sidecar-injector.io/status: '{\"injected\":[\"seed\"],\"hash\":\"sha256:" + "0" * 64 + "\"}'\n"
           "spec:\n  containers:\n  - {name: app, image: a}\n  - {name: sidecar, image: s}\n")
    r = cli("uninject", "-f", "-", stdin=old)
    assert r.returncode == 1
    assert "earlier sidecar-injector" in r.stderr and "old format" in r.stderr
    assert r.stdout == old  # passed through unchanged
    r = cli("inject", "--reinject", "-f", "-", "-c", str(SEED), stdin=old)
    assert r.returncode == 1 and "old format" in r.stderr
    e = cli("explain", "--fail-on-stale", "-f", "-", "-c", str(SEED), stdin=old)
    assert e.returncode == 1 and "status: unknown:" in e.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir()))
def test_examples_uninject_back_to_their_input(name: str) -> None:
    ex = ROOT / "examples" / name
    r = cli("uninject", "-f", str(ex / "expected.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ex / "input.yaml").read_text()
