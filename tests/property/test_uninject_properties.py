"""Properties of offline injection on text: uninject(inject(x)) == x byte for byte, and
``inject --reinject`` with unchanged configs changes nothing.

Checked for every document of the committed corpora (real public manifests, the examples)
with the three corpus configs, and for generated pods written in many YAML styles (block,
flow, JSON, indentations, comments, CRLF, fields absent, empty or null) with configs that add
every kind of thing, including into a pod-declared container of a sidecar's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar_injector.cli.pipeline import inject_sources, uninject_sources
from sidecar_injector.config.configload import load_configs
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.yamlio.read import load_all
from sidecar_injector.yamlio.stream import Source

ROOT = Path(__file__).resolve().parents[2]
CORPUS_CONFIGS = ROOT / "tests" / "e2e" / "corpus" / "configs"
FILES = sorted([
    *(ROOT / "tests" / "e2e" / "corpus" / "manifests").glob("*.yaml"),
    *(ROOT / "tests" / "offline" / "corpus").glob("*.yaml"),
    *(ROOT / "examples").glob("*/input.yaml"),
])

FULL_CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata: {name: full}
spec:
  injectByDefault: true
  labels: {full.example.com/member: "true", app: from-config}
  annotations: {full.example.com/version: "1.0"}
  initContainers:
  - name: full-init
    image: busybox:1.36
    command: [sh, -c, "echo init"]
  containers:
  - name: full-proxy
    image: envoyproxy/envoy:v1.31.0
    args: ["--log-level", "info"]
    ports: [{containerPort: 15001, name: proxy}]
    env: [{name: PROXY_MODE, value: sidecar}]
    volumeMounts: [{name: full-certs, mountPath: /etc/certs}]
  volumes:
  - {name: full-certs, emptyDir: {}}
  volumeMounts:
  - {name: full-certs, mountPath: /etc/full/certs, readOnly: true}
  env:
  - {name: FULL_ENABLED, value: "true"}
  - {name: TZ, value: "10:30"}
  imagePullSecrets:
  - {name: full-registry}
---
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata: {name: native}
spec:
  injectByDefault: true
  nativeSidecar: true
  containers:
  - name: native-agent
    image: agent:2
    startupProbe: {exec: {command: ["true"]}}
"""


@pytest.fixture(scope="module")
def corpus_configs() -> ConfigSet:
    return load_configs(str(CORPUS_CONFIGS))


@pytest.fixture(scope="module")
def full_configs(tmp_path_factory: pytest.TempPathFactory) -> ConfigSet:
    f = tmp_path_factory.mktemp("cfg") / "full.yaml"
    f.write_text(FULL_CONFIG)
    return load_configs(str(f))


def roundtrip(text: str, configs: ConfigSet, namespace: str | None = "ns") -> str:
    """Check the properties on one stream; return the injected text."""
    src = [Source("in", text)]
    run = inject_sources(src, configs, namespace, convert_all=False)
    assert not run.notes, run.notes  # every injected document edited in place
    assert not run.failures, run.failures
    (injected,) = run.texts
    # What the text reads as is what the core injected.
    want = [r.value if r.value is not None else r.doc.value() for r in run.docs]
    got = [d for d in load_all(injected) if d is not None]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    back = uninject_sources([Source("out", injected)], configs.status_key, convert_all=False)
    assert not back.notes and not back.failures, (back.notes, back.failures)
    assert back.texts == [text], "uninject(inject(x)) != x"
    again = inject_sources([Source("again", back.texts[0])], configs, namespace, convert_all=False)
    assert again.texts == [injected], "reinject with unchanged configs is not a no-op"
    plain = inject_sources([Source("twice", injected)], configs, namespace, convert_all=False)
    assert plain.texts == [injected], "inject is not idempotent on its own output"
    return injected


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_corpus_documents_uninject_byte_for_byte(path: Path, corpus_configs: ConfigSet,
                                                 full_configs: ConfigSet) -> None:
    text = path.read_text()
    for configs in (corpus_configs, full_configs):
        roundtrip(text, configs)


# --- generated pods -----------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
    st.sampled_from(["=", "10:30", "on", "y", "0755", "2024-01-01T10:00:00Z", "- x", "a: b", "#c", "", "null"]),
)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """A pod or workload, with fields present, absent, empty or null."""
    def maybe_empty(v: Any) -> Any:
        return draw(st.sampled_from(["absent", "value", "empty", "null"]))

    containers = []
    for i in range(draw(st.integers(1, 3))):
        c: dict[str, Any] = {"name": f"app{i}", "image": draw(st.sampled_from(["nginx:1.27", "app:1"]))}
        how = maybe_empty(None)
        if how == "value":
            c["env"] = [{"name": draw(st.sampled_from(["A", "TZ", "FULL_ENABLED"])), "value": draw(values)}]
        elif how != "absent":
            c["env"] = [] if how == "empty" else None
        how = maybe_empty(None)
        if how == "value":
            c["volumeMounts"] = [{"name": "data", "mountPath": draw(st.sampled_from(["/data", "/etc/full/certs"]))}]
        elif how != "absent":
            c["volumeMounts"] = [] if how == "empty" else None
        containers.append(c)
    if draw(st.booleans()):  # the pod declares a sidecar of the config's name: merged into
        declared: dict[str, Any] = {"name": "full-proxy", "image": "pinned:1"}
        if draw(st.booleans()):
            declared["env"] = [{"name": "MINE", "value": "1"}]
        if draw(st.booleans()):
            declared["args"] = None
        containers.insert(draw(st.integers(0, len(containers))), declared)
    spec: dict[str, Any] = {"containers": containers}
    for key, item in (("volumes", {"name": "data", "emptyDir": {}}),
                      ("initContainers", {"name": "setup", "image": "b"}),
                      ("imagePullSecrets", {"name": "mine"})):
        how = maybe_empty(None)
        if how == "value" or (key == "volumes" and any("volumeMounts" in c and c["volumeMounts"] for c in containers)):
            spec[key] = [item]
        elif how != "absent":
            spec[key] = [] if how == "empty" else None
    pod: dict[str, Any] = {}
    meta: dict[str, Any] = {"name": draw(names)}
    for key in ("labels", "annotations"):
        how = maybe_empty(None)
        if how == "value":
            meta[key] = {draw(names): draw(values) for _ in range(draw(st.integers(1, 2)))}
        elif how != "absent":
            meta[key] = {} if how == "empty" else None
    metadata_how = draw(st.sampled_from(["value", "value", "absent", "empty"]))
    if metadata_how == "value":
        pod["metadata"] = meta
    elif metadata_how == "empty":
        pod["metadata"] = {}
    pod["spec"] = spec
    kind = draw(st.sampled_from(["Pod", "Deployment", "CronJob"]))
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", **pod}
    if kind == "Deployment":
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": pod}}}}


@st.composite
def streams(draw: st.DrawFn) -> str:
    """One to three documents, each written in a drawn style."""
    docs = []
    for _ in range(draw(st.integers(1, 3))):
        obj = draw(pods())
        style = draw(st.sampled_from(["block", "flow", "mixed", "json", "indented"]))
        if style == "json":
            text = json.dumps(obj, indent=draw(st.sampled_from([None, 2])), ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000,
                                  default_flow_style={"block": False, "flow": True, "mixed": None,
                                                      "indented": False}[style],
                                  indent=4 if style == "indented" else 2)
        if draw(st.booleans()):
            text = "# a comment before the document\n" + text + "# a comment after it\n"
        docs.append(text)
    text = "---\n".join(docs)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=streams())
def test_generated_pods_uninject_byte_for_byte(text: str, full_configs: ConfigSet) -> None:
    roundtrip(text, full_configs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=streams())
def test_generated_pods_with_the_corpus_configs(text: str, corpus_configs: ConfigSet) -> None:
    roundtrip(text, corpus_configs, namespace=None)
