"""A corpus of real-world pod templates, injected by ``sidecar-injector inject`` with realistic
configs, then created in the real kube-apiserver (server-side dry run): the apiserver must
refuse none of them.

Part of "the injector must never emit a pod the apiserver refuses". The corpus
(``tests/e2e/corpus/README.md`` lists every manifest's source, version and licence):

- the project's examples (``examples/*/input.yaml``) and golden cases (``tests/golden/*/``: the
  input ``pod.yaml`` with its request namespace from the ``namespace`` file, and the
  ``expected.pod.yaml``, a pod some other config set already injected);
- public manifests nobody on this project wrote, in ``tests/e2e/corpus/manifests/``: Online
  Boutique (12 Deployments), ingress-nginx (Deployment + two Jobs), kube-prometheus (node-exporter
  DaemonSet with hostNetwork and hostPID, three Deployments), kubernetes/examples' CockroachDB
  StatefulSet, and kubernetes/website's CronJob and Job with a native sidecar of its own.

The configs (``tests/e2e/corpus/configs/``): ``mesh-sidecar`` (an Istio-style iptables init
container with NET_ADMIN/NET_RAW and a native sidecar proxy with a startupProbe, many
templates), ``log-shipper`` (a regular Fluent Bit sidecar, emptyDir and configMap volumes,
mounts and env added to the app containers) and ``vault-agent`` (an init container plus a native
sidecar sharing an in-memory emptyDir). ``vault-agent`` has ``injectByDefault: false``: it is
requested by the pod annotation, so its runs use a copy of the corpus in which every pod
template that has not opted out carries ``sidecar-injector.io/inject: vault-agent`` (appended to
a list already there). A fourth run injects all three configs together into that copy.

Each run calls the CLI once over the whole corpus (``python -m sidecar_injector inject -f ... -c
CONFIG --namespace corpus``), wraps every resulting pod template in a Pod (the template's
metadata plus a name and the namespace, the template's spec) and creates it with
``dry_run="All"`` in namespaces and with ServiceAccounts that really exist. First, every
template is created as written, without injection: the few the apiserver refuses as written
(golden cases that are fine webhook inputs but no valid pods, e.g. a mirror pod without
``nodeName``) are printed with the reason and left out, and may only be golden cases. It then
asserts:

- no refusal by the apiserver (each one listed with manifest, document, workload, config and
  the apiserver's message);
- injection really happened: each config of the run is injected into every template of the
  public manifests (except, for a config with the default ``hostNetwork: skip``, the
  node-exporter DaemonSet on the host network, which it must leave alone; ``log-shipper`` sets
  ``hostNetwork: inject``) and into at least half of the whole corpus, its containers are in the
  pod the apiserver returned, templates that opted out were left alone, and in pods that run to
  completion (Jobs, CronJobs) the sidecars are native ones (``runToCompletion: native``);
- idempotence: injecting the injected output again changes nothing, and neither does injecting
  the pods as the apiserver returned them (defaulted, with the token volume).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client.rest import ApiException

from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
CONFIGS = CORPUS / "configs"
PREFIX = "sidecar-injector.io"
INJECT = f"{PREFIX}/inject"
STATUS = f"{PREFIX}/status"
DEFAULT_NS = "corpus"  # for documents that name no namespace (passed as --namespace)
VAULT = "vault-agent"
RUNS_TO_COMPLETION = ("Never", "OnFailure")

# libyaml when present: the pods the apiserver returns are large, and pure-Python YAML is slow.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

#: Where each kind keeps its pod template (README: "inject and explain ... handle Pods and the
#: pod templates of ..."). Written out here rather than imported, so the test does not trust the
#: code it checks.
POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


# -- the corpus --------------------------------------------------------------------------------


@dataclass
class Source:
    """One YAML stream of the corpus: its documents, and the file the CLI reads them from."""

    label: str  # as reported, relative to the repository
    path: Path  # the original file
    docs: list[Any]
    public: bool  # one of the public manifests (not written by this project)
    modified: bool = False  # docs differ from the file: the CLI gets a copy


@dataclass(frozen=True)
class Template:
    """One pod (template) of a document."""

    source: str
    doc: int  # 1-based, as the CLI counts documents
    workload: str  # "Deployment frontend"
    path: tuple[str | int, ...]
    namespace: str
    public: bool

    @property
    def where(self) -> str:
        return f"{self.source}, document {self.doc}, {self.workload}" + (
            f" ({'.'.join(map(str, self.path))})" if self.path else ""
        )


def _load(path: Path) -> list[Any]:
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader) if d is not None]


def _dump(docs: list[Any]) -> str:
    return str(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False))


def corpus() -> list[Source]:
    sources: list[Source] = []
    for path in sorted(ROOT.glob("examples/*/input.yaml")):
        sources.append(Source(str(path.relative_to(ROOT)), path, _load(path), public=False))
    for case in sorted(p for p in (ROOT / "tests" / "golden").iterdir() if p.is_dir()):
        ns_file = case / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.is_file() else "default"
        for name in ("pod.yaml", "expected.pod.yaml"):
            path = case / name
            if not path.is_file():
                continue
            docs = _load(path)
            modified = False
            for doc in docs:
                # The golden case's request namespace (the apiserver sets it on the pod before
                # webhooks see it); the CLI's --namespace is one for the whole corpus.
                meta = doc.setdefault("metadata", {})
                if not meta.get("namespace"):
                    meta["namespace"] = namespace
                    modified = True
            sources.append(Source(str(path.relative_to(ROOT)), path, docs, public=False, modified=modified))
    for path in sorted((CORPUS / "manifests").glob("*.yaml")):
        sources.append(Source(str(path.relative_to(ROOT)), path, _load(path), public=True))
    return sources


def _get(obj: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def pod_templates(doc: dict[str, Any], default_ns: str) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(path, workload, namespace) of each pod (template) in a document, ``List`` items included."""
    kind = doc.get("kind", "")
    if kind == "List" or (kind.endswith("List") and isinstance(doc.get("items"), list)):
        for i, item in enumerate(doc.get("items") or []):
            for path, workload, ns in pod_templates(item, default_ns):
                yield ("items", i, *path), workload, ns
        return
    if kind not in POD_PATHS:
        return
    meta = doc.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "(no name)"
    yield POD_PATHS[kind], f"{kind} {name}", meta.get("namespace") or default_ns


def templates(sources: list[Source]) -> list[Template]:
    out = []
    for src in sources:
        for i, doc in enumerate(src.docs, start=1):
            for path, workload, ns in pod_templates(doc, DEFAULT_NS):
                out.append(Template(src.label, i, workload, path, ns, src.public))
    return out


def opted_out(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    return (meta.get("annotations") or {}).get(INJECT) == "false" or (meta.get("labels") or {}).get(INJECT) == "false"


def request_vault(sources: list[Source]) -> list[Source]:
    """A copy of the corpus whose pod templates ask for ``vault-agent`` (unless they opted out)."""
    out = []
    for src in sources:
        docs = copy.deepcopy(src.docs)
        for doc in docs:
            for path, _, _ in pod_templates(doc, DEFAULT_NS):
                pod = _get(doc, path)
                if opted_out(pod):
                    continue
                annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
                current = str(annotations.get(INJECT, "")).strip()
                annotations[INJECT] = VAULT if current in ("", "true") else f"{current},{VAULT}"
        out.append(Source(src.label, src.path, docs, src.public, modified=True))
    return out


# -- the CLI -----------------------------------------------------------------------------------


def cli_inject(files: list[Path], config: Path) -> tuple[list[Any], list[str]]:
    """``sidecar-injector inject`` over ``files`` at once: the output documents and warnings."""
    args = [sys.executable, "-m", "sidecar_injector", "inject", "--namespace", DEFAULT_NS, "-c", str(config)]
    for f in files:
        args += ["-f", str(f)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{' '.join(args)}\nexit {proc.returncode}\n{proc.stderr}"
    return [d for d in yaml.load_all(proc.stdout, Loader=_Loader) if d is not None], proc.stderr.splitlines()


def stream_files(sources: list[Source], workdir: Path) -> list[Path]:
    """The files to give the CLI: the originals, or a copy of the documents when they changed."""
    files = []
    for n, src in enumerate(sources):
        if src.modified:
            path = workdir / f"{n:03d}-{src.path.parent.name}-{src.path.name}"
            path.write_text(_dump(src.docs), encoding="utf-8")
            files.append(path)
        else:
            files.append(src.path)
    return files


@dataclass(frozen=True)
class Config:
    """What the test needs to know of one SidecarConfig (read from its YAML, not from the code)."""

    containers: frozenset[str]  # every container it injects (init containers and sidecars)
    sidecars: frozenset[str]  # spec.containers
    native: bool  # spec.nativeSidecar
    host_network: str  # spec.hostNetwork: skip (default) or inject
    run_to_completion: str  # spec.runToCompletion: native (default), skip or inject


def read_configs(config: Path) -> dict[str, Config]:
    files = sorted(config.glob("*.yaml")) if config.is_dir() else [config]
    out: dict[str, Config] = {}
    for f in files:
        for doc in _load(f):
            spec = doc.get("spec") or {}
            sidecars = frozenset(c["name"] for c in spec.get("containers") or [])
            out[doc["metadata"]["name"]] = Config(
                containers=sidecars | {c["name"] for c in spec.get("initContainers") or []},
                sidecars=sidecars,
                native=bool(spec.get("nativeSidecar")),
                host_network=spec.get("hostNetwork", "skip"),
                run_to_completion=spec.get("runToCompletion", "native"),
            )
    return out


def injected_by(pod: dict[str, Any]) -> list[str]:
    status = ((pod.get("metadata") or {}).get("annotations") or {}).get(STATUS)
    if not status:
        return []
    value = json.loads(status)
    return list(value.get("injected") or [])


def container_names(pod: dict[str, Any]) -> set[str]:
    spec = pod.get("spec") or {}
    return {c.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}


# -- the apiserver -----------------------------------------------------------------------------


def ensure_namespace(control_plane: ControlPlane, core: Any, name: str) -> None:
    try:
        core.read_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise
        try:
            control_plane.create_namespace(name)
        except ApiException as e2:
            if e2.status != 409:
                raise
    control_plane.wait_for_service_account(name)


def ensure_service_account(core: Any, namespace: str, body: dict[str, Any]) -> None:
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    try:
        core.create_namespaced_service_account(namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise


_NAME_RE = re.compile(r"[^a-z0-9-]+")


def pod_name(n: int, workload: str) -> str:
    slug = _NAME_RE.sub("-", workload.lower()).strip("-")
    return f"c{n}-{slug}"[:63].rstrip("-")


def as_pod(template: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    meta = copy.deepcopy(template.get("metadata") or {})
    meta["name"] = name
    meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}


def apiserver_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body).get("message"))
    except (TypeError, ValueError, AttributeError):
        return f"HTTP {e.status}: {e.reason} {e.body}"


def dry_run(
    core: Any, api: Any, pool: ThreadPoolExecutor, pods: list[tuple[Template, dict[str, Any]]]
) -> list[dict[str, Any] | str]:
    """Create each pod with ``dry_run="All"``: the pod the apiserver returned, or its refusal."""

    def create(item: tuple[Template, dict[str, Any]]) -> dict[str, Any] | str:
        t, body = item
        try:
            pod = core.create_namespaced_pod(t.namespace, body, dry_run="All")
        except ApiException as e:
            return apiserver_message(e)
        created: dict[str, Any] = api.sanitize_for_serialization(pod)
        # Server-side apply's bookkeeping: large, and of no interest to the injector.
        created["metadata"].pop("managedFields", None)
        return created

    return list(pool.map(create, pods))


# -- the test ----------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    config: Path
    sources: list[Source]
    templates: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    public_templates: int = 0
    public_injected: Counter[str] = field(default_factory=Counter)
    created: int = 0
    refusals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # injection missing, not idempotent...
    warnings: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def test_corpus(control_plane: ControlPlane, api: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    plain = corpus()
    requesting = request_vault(plain)
    all_templates = templates(plain)
    assert len(all_templates) >= 50, f"the corpus shrank: {len(all_templates)} pod templates"
    kinds = Counter(t.workload.split()[0] for t in all_templates)
    assert {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod"} <= set(kinds), kinds

    core = kubernetes.client.CoreV1Api(api)

    # Namespaces and ServiceAccounts the corpus needs, as real objects: the ServiceAccounts the
    # manifests declare, then any other one a pod names.
    t0 = time.monotonic()
    namespaces = sorted({t.namespace for t in all_templates})
    for ns in namespaces:
        ensure_namespace(control_plane, core, ns)
    accounts = 0
    for src in plain:
        for doc in src.docs:
            if doc.get("kind") == "ServiceAccount" and doc.get("apiVersion") == "v1":
                ensure_service_account(core, doc["metadata"].get("namespace") or DEFAULT_NS, doc)
                accounts += 1
    for src in plain:
        for doc in src.docs:
            for path, _, ns in pod_templates(doc, DEFAULT_NS):
                spec = _get(doc, path).get("spec") or {}
                sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
                if sa:
                    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}
                    ensure_service_account(core, ns, body)
                    control_plane.wait_for_service_account(ns, sa)
    setup_s = time.monotonic() - t0

    counter = iter(range(1, 1_000_000))
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Baseline: every template as its authors wrote it, not injected. A refusal here is the
        # input's own fault (a golden case can be a fine webhook input and no valid pod); such
        # templates are listed, and their injected versions are not created.
        t0 = time.monotonic()
        docs = {(src.label, i): doc for src in plain for i, doc in enumerate(src.docs, start=1)}
        originals = [
            (t, as_pod(_get(docs[(t.source, t.doc)], t.path), pod_name(next(counter), t.workload), t.namespace))
            for t in all_templates
        ]
        invalid = {
            t: result
            for (t, _), result in zip(originals, dry_run(core, api, pool, originals), strict=True)
            if isinstance(result, str)
        }
        baseline_s = time.monotonic() - t0

        runs = [
            Run("mesh-sidecar", CONFIGS / "mesh.yaml", plain),
            Run("log-shipper", CONFIGS / "log-shipper.yaml", plain),
            Run("vault-agent", CONFIGS / "vault-agent.yaml", requesting),
            Run("all three", CONFIGS, requesting),
        ]
        for run in runs:
            check_run(run, tmp_path / run.name.replace(" ", "-"), core, api, pool, counter, invalid)

    total_s = time.monotonic() - started
    refusals = [r for run in runs for r in run.refusals]
    problems = [p for run in runs for p in run.problems]
    with capsys.disabled():
        print(
            f"\n[e2e corpus] {len(plain)} YAML streams, {sum(len(s.docs) for s in plain)} documents, "
            f"{len(all_templates)} pod templates ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
            f"{len(namespaces)} namespaces, {accounts} ServiceAccounts from the manifests; setup {setup_s:.1f}s"
        )
        print(
            f"[e2e corpus] baseline (not injected): {len(originals) - len(invalid)} of {len(originals)} "
            f"created, {len(invalid)} refused as written, so left out of the runs; {baseline_s:.1f}s"
        )
        for t, message in invalid.items():
            print(f"[e2e corpus]   {t.where}: {message}")
        for run in runs:
            per = ", ".join(f"{name} {n}/{run.templates}" for name, n in run.injected.items())
            pub = ", ".join(f"{name} {n}/{run.public_templates}" for name, n in run.public_injected.items())
            times = ", ".join(f"{k} {v:.1f}s" for k, v in run.seconds.items())
            print(
                f"[e2e corpus] {run.name}: injected {per} (public manifests: {pub}); "
                f"{run.created} pods dry-run created, {len(run.refusals)} refused, {run.warnings} CLI warnings; {times}"
            )
        print(f"[e2e corpus] total {total_s:.1f}s")
    # The inputs the apiserver refuses as written are golden cases only, and few: the public
    # manifests and the examples are all valid pods.
    assert all(t.source.startswith("tests/golden/") for t in invalid), sorted(t.where for t in invalid)
    assert len(invalid) <= 6, sorted(t.where for t in invalid)
    assert not refusals, f"{len(refusals)} pods refused by the apiserver:\n" + "\n".join(refusals)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def check_run(
    run: Run,
    workdir: Path,
    core: Any,
    api: Any,
    pool: ThreadPoolExecutor,
    counter: Iterator[int],
    invalid: dict[Template, str],
) -> None:
    workdir.mkdir()
    wanted = read_configs(run.config)
    files = stream_files(run.sources, workdir)

    t0 = time.monotonic()
    out_docs, warnings = cli_inject(files, run.config)
    run.seconds["inject"] = time.monotonic() - t0
    run.warnings = len(warnings)
    in_docs = [(src, i, doc) for src in run.sources for i, doc in enumerate(src.docs, start=1)]
    assert len(out_docs) == len(in_docs), f"{run.name}: {len(in_docs)} documents in, {len(out_docs)} out"

    # Pair every template before and after, check what was injected, build the pods.
    pods: list[tuple[Template, dict[str, Any]]] = []
    expected: list[set[str]] = []
    for (src, i, before_doc), after_doc in zip(in_docs, out_docs, strict=True):
        if before_doc.get("kind") != after_doc.get("kind"):
            run.problems.append(f"{run.name}: {src.label}, document {i}: kind changed to {after_doc.get('kind')}")
            continue
        for path, workload, ns in pod_templates(before_doc, DEFAULT_NS):
            t = Template(src.label, i, workload, path, ns, src.public)
            before, after = _get(before_doc, path), _get(after_doc, path)
            new = [c for c in injected_by(after) if c not in injected_by(before)]
            run.templates += 1
            run.public_templates += t.public
            spec = before.get("spec") or {}
            host_network = spec.get("hostNetwork") is True
            completes = spec.get("restartPolicy") in RUNS_TO_COMPLETION
            for name, cfg in wanted.items():
                run.injected[name] += name in new
                run.public_injected[name] += t.public and name in new
                skip = host_network and cfg.host_network == "skip"
                if name in new:
                    missing = cfg.containers - container_names(after)
                    if missing:
                        run.problems.append(f"{run.name}: {t.where}: {name} injected without {sorted(missing)}")
                    if skip:
                        run.problems.append(f"{run.name}: {t.where}: {name} injected into a hostNetwork pod")
                    if completes and cfg.run_to_completion == "native":
                        # A Job's pod must still complete: the sidecars are native ones.
                        regular = {c.get("name") for c in (after.get("spec") or {}).get("containers") or []}
                        stuck = (cfg.sidecars & regular) - container_names(before)
                        if stuck:
                            run.problems.append(
                                f"{run.name}: {t.where}: restartPolicy {spec.get('restartPolicy')}, but "
                                f"{sorted(stuck)} injected as regular containers: the pod would never complete"
                            )
                elif t.public and not skip:
                    run.problems.append(f"{run.name}: {t.where}: {name} was not injected")
            if opted_out(before) and after != before:
                run.problems.append(f"{run.name}: {t.where}: opted out, but changed")
            if t not in invalid:
                pods.append((t, as_pod(after, pod_name(next(counter), workload), ns)))
                expected.append(set().union(*(wanted[c].containers for c in new)) if new else set())
    for name, n in run.injected.items():
        if n < run.templates / 2:
            run.problems.append(f"{run.name}: {name} injected into only {n} of {run.templates} pod templates")

    # Dry-run create every pod; the sidecars must be in the pod the apiserver returns.
    t0 = time.monotonic()
    created: list[dict[str, Any]] = []
    for (t, _), result, expect in zip(pods, dry_run(core, api, pool, pods), expected, strict=True):
        if isinstance(result, str):
            run.refusals.append(f"{run.name}: {t.where} in namespace {t.namespace}: {result}")
            continue
        run.created += 1
        created.append(result)
        missing = expect - container_names(result)
        if missing:
            run.problems.append(f"{run.name}: {t.where}: the apiserver's pod lacks {sorted(missing)}")
    run.seconds["dry-run create"] = time.monotonic() - t0

    # Idempotence, in one CLI call: the injected output, injected again, is unchanged, and so are
    # the pods as the apiserver returned them (defaulted, with the ServiceAccount token volume).
    t0 = time.monotonic()
    injected_file = workdir / "injected.yaml"
    injected_file.write_text(_dump(out_docs), encoding="utf-8")
    created_file = workdir / "created.yaml"
    created_file.write_text(_dump(created), encoding="utf-8")
    again, _ = cli_inject([injected_file, created_file], run.config)
    assert len(again) == len(out_docs) + len(created), f"{run.name}: documents lost on the second pass"
    for (src, i, _), first, second in zip(in_docs, out_docs, again[: len(out_docs)], strict=True):
        if first != second:
            run.problems.append(f"{run.name}: {src.label}, document {i}: injecting the output again changed it")
    for pod, pod_again in zip(created, again[len(out_docs) :], strict=True):
        if pod != pod_again:
            name = pod["metadata"]["name"]
            run.problems.append(f"{run.name}: pod {name} as the apiserver returned it: injecting it again changed it")
    run.seconds["idempotence"] = time.monotonic() - t0


def test_host_port_conflict_on_host_network(control_plane: ControlPlane, api: Any, tmp_path: Path) -> None:
    """``log-shipper`` (``hostNetwork: inject``) with its metrics port moved to 9100, the port
    node-exporter's kube-rbac-proxy holds on the node: inject must not emit a pod the apiserver
    refuses (it may fail with a clear error instead)."""
    config = tmp_path / "log-shipper.yaml"
    text = (CONFIGS / "log-shipper.yaml").read_text(encoding="utf-8")
    assert "containerPort: 2020}" in text
    config.write_text(text.replace("containerPort: 2020}", "containerPort: 9100}"), encoding="utf-8")
    manifest = CORPUS / "manifests" / "kube-prometheus-nodeExporter-daemonset.yaml"
    args = [sys.executable, "-m", "sidecar_injector", "inject", "-c", str(config), "-f", str(manifest)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if proc.returncode != 0:
        assert "9100" in proc.stderr, proc.stderr  # refused offline, naming the port: fine
        return
    (daemonset,) = [d for d in yaml.load_all(proc.stdout, Loader=_Loader) if d is not None]
    template = daemonset["spec"]["template"]
    assert "log-shipper" in container_names(template)
    core = kubernetes.client.CoreV1Api(api)
    ensure_namespace(control_plane, core, "monitoring")
    ensure_service_account(
        core, "monitoring", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "node-exporter"}}
    )
    pod = as_pod(template, "host-port-conflict", "monitoring")
    try:
        core.create_namespaced_pod("monitoring", pod, dry_run="All")
    except ApiException as e:
        pytest.fail(f"the apiserver refused the injected node-exporter pod: {apiserver_message(e)}")
