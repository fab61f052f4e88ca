"""The offline CLI, run as a user runs it: a subprocess with files and stdin."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import pod, review_body

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "01-seed-article"


def cli(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([sys.executable, "-m", "sidecar_injector", *args], input=data, capture_output=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_inject_keeps_document_order_and_passes_other_kinds_through(tmp_path: Path) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    lst = {"apiVersion": "v1", "kind": "List", "items": [pod(name="p1"), svc]}
    f = tmp_path / "in.yaml"
    f.write_text(yaml.safe_dump_all([svc, lst]))
    r = cli("inject", "-f", str(f), "-f", "-", "--config", str(SEED / "config.yaml"),
            stdin=yaml.safe_dump(pod(name="p2")))
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    assert [d["kind"] for d in docs] == ["Service", "List", "Pod"]
    assert docs[0] == svc and docs[1]["items"][1] == svc
    for p in (docs[1]["items"][0], docs[2]):
        assert p["metadata"]["labels"]["foo"] == "bar"
        assert [c["name"] for c in p["spec"]["containers"]] == ["app", "sidecar"]


@pytest.mark.parametrize(
    ("kind", "path"),
    [("Deployment", ["spec", "template"]), ("StatefulSet", ["spec", "template"]), ("DaemonSet", ["spec", "template"]),
     ("ReplicaSet", ["spec", "template"]), ("ReplicationController", ["spec", "template"]),
     ("Job", ["spec", "template"]), ("CronJob", ["spec", "jobTemplate", "spec", "template"])],
)
def test_inject_reaches_every_workload_kind(tmp_path: Path, kind: str, path: list[str]) -> None:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "a"}]}}
    obj: dict[str, object] = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}}
    node = obj
    for key in path[:-1]:
        node = node.setdefault(key, {})  # type: ignore[assignment]
    node[path[-1]] = template
    r = cli("inject", "-f", "-", "--config", str(SEED / "config.yaml"), stdin=yaml.safe_dump(obj))
    assert r.returncode == 0, r.stderr
    out = yaml.safe_load(r.stdout)
    for key in path:
        out = out[key]
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "sidecar"]


def test_review_prints_exactly_what_the_webhook_sends_and_decodes() -> None:
    body = review_body(pod(), uid="u-42")
    r = cli("review", "--config", str(SEED / "config.yaml"), "--decode", stdin=body)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    resp = json.loads(first)["response"]
    assert resp["uid"] == "u-42" and resp["patchType"] == "JSONPatch"
    assert json.loads(rest) == json.loads(base64.b64decode(resp["patch"]))


def test_explain_says_why_and_shows_the_diff(tmp_path: Path) -> None:
    ex = ROOT / "examples" / "03-opt-in-and-templates"
    r = cli("explain", "-f", str(ex / "input.yaml"), "--config", str(ex / "config.yaml"))
    assert r.returncode == 0, r.stderr
    assert "Deployment api in namespace analytics" in r.stdout
    assert "selector-mismatch" in r.stdout and "+  - name: log-shipper" in r.stdout
    j = cli("explain", "-f", str(ex / "input.yaml"), "--config", str(ex / "config.yaml"), "-o", "json")
    records = json.loads(j.stdout)
    assert [r_["kind"] for r_ in records] == ["CronJob", "Deployment"]
    assert records[0]["injected"] == ["team-labels", "log-shipper"]
    assert {d["config"]: d["reason"] for d in records[1]["decisions"]}["log-shipper"] == "selector-mismatch"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["inject", "-f", "-"], "a: [", "stdin: not valid YAML"),
        (["inject", "-f", "-"], "- just a list", "stdin, document 1: not a Kubernetes object"),
        (["inject", "-f", "/nonexistent.yaml"], "", "/nonexistent.yaml: cannot read"),
        (["inject", "-f", "-", "--config", "/nonexistent"], "", "/nonexistent: no such file"),
        (["explain", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n",
         "Pod x: the pod has no spec.containers list"),
        (["review"], "{", "invalid AdmissionReview (the webhook answers HTTP 400): request body is not JSON"),
        (["serve", "--memo-entries", "-1"], "", "--memo-entries must be 0 or more, got -1"),
    ],
)
def test_bad_input_is_one_clear_line_and_nonzero_exit(args: list[str], stdin: str, message: str) -> None:
    r = cli(*args, stdin=stdin)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_broken_config_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: a}\n"
                   "spec:\n  containers: [{name: a, image: b, imagePullPolicyy: Always}]\n")
    r = cli("inject", "-f", "-", "--config", str(bad), stdin=yaml.safe_dump(pod()))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{bad}, document 1 (a): spec.containers[0]" in r.stderr and "imagePullPolicyy" in r.stderr


def test_explain_names_the_cluster_config_a_namespaced_one_shadows(tmp_path: Path) -> None:
    def config(kind: str, name: str, image: str, namespace: str | None = None) -> dict[str, object]:
        meta: dict[str, object] = {"name": name, **({"namespace": namespace} if namespace else {})}
        return {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": kind, "metadata": meta,
                "spec": {"injectByDefault": True, "containers": [{"name": name, "image": image}]}}

    (tmp_path / "configs.yaml").write_text(yaml.safe_dump_all([
        config("ClusterSidecarConfig", "envoy", "envoy:cluster"),
        config("SidecarConfig", "envoy", "envoy:team", "team-a"),
    ]))
    cluster = f"{tmp_path / 'configs.yaml'}, document 1"  # where the shadowed config comes from
    for ns, shadows in (("team-a", cluster), ("team-b", None)):
        r = cli("explain", "-f", "-", "-c", str(tmp_path / "configs.yaml"), "-n", ns, "-o", "json",
                stdin=yaml.safe_dump(pod(name="p")))
        assert r.returncode == 0, r.stderr
        (decision,) = json.loads(r.stdout)[0]["decisions"]
        assert decision["shadows"] == shadows
    text = cli("explain", "-f", "-", "-c", str(tmp_path / "configs.yaml"), "-n", "team-a",
               stdin=yaml.safe_dump(pod(name="p"))).stdout
    assert f"+ envoy (this namespace's own, in place of {cluster}): injected" in text
