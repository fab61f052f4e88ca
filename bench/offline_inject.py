"""How long ``sidecar-injector inject`` takes on a 9 MB multi-document stream, now and before.

The stream is assembled from real public manifests, in a fixed order, repeated up to
``--size`` bytes (default 9 MB, the size of the public manifests of issue 9):

- ``tests/e2e/corpus/manifests/*.yaml`` (Online Boutique, ingress-nginx, kube-prometheus,
  kubernetes/examples and website: see that folder's README for sources and licences);
- when the Go module cache holds the Kubernetes sources (the end-to-end suite's build puts
  them there; ``go mod download k8s.io/kubernetes@v1.37.2 k8s.io/apiextensions-apiserver@v0.37.2``
  otherwise), Apache-2.0: ``k8s.io/kubernetes/cluster/addons`` and ``test/e2e/testing-manifests``
  (DaemonSets, Deployments, StatefulSets, RBAC, ConfigMaps) and the CustomResourceDefinitions
  of ``k8s.io/apiextensions-apiserver/test/integration`` (Gateway API's standard install:
  large documents without pods, like the CRDs that make up most of real installs).

Documents that are not Kubernetes objects (kustomization files, templates with ``{{ }}``)
are left out, so both versions read every document. Each version runs ``inject`` with the
three configs of ``tests/e2e/corpus/configs/`` in a fresh process, ``--runs`` times; the
minimum and median wall times are printed. The baseline is another checkout of this
repository (``--baseline DIR``, e.g. ``git worktree add /tmp/old 0a5ead1``), run with the same
interpreter and packages.

    .venv/bin/python bench/offline_inject.py --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GOMOD = Path(os.environ.get("GOMODCACHE", Path.home() / "go" / "pkg" / "mod"))
SOURCES = [
    ROOT / "tests" / "e2e" / "corpus" / "manifests",
    GOMOD / "k8s.io" / "kubernetes@v1.37.2" / "cluster" / "addons",
    GOMOD / "k8s.io" / "kubernetes@v1.37.2" / "test" / "e2e" / "testing-manifests",
    GOMOD / "k8s.io" / "apiextensions-apiserver@v0.37.2" / "test" / "integration",
]


def _usable(text: str) -> bool:
    """Every document a Kubernetes object, readable by both versions."""
    if "{{" in text:
        return False
    try:
        docs = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
    except yaml.YAMLError:
        return False
    return bool(docs) and all(isinstance(d, dict) and "kind" in d and "apiVersion" in d for d in docs)


def corpus(size: int) -> tuple[str, int]:
    texts: list[str] = []
    for src in SOURCES:
        if not src.is_dir():
            print(f"note: {src} not found, left out", file=sys.stderr)
            continue
        for f in sorted(src.rglob("*.yaml")):
            text = f.read_text(encoding="utf-8")
            if _usable(text):
                texts.append(text if text.endswith("\n") else text + "\n")
    unit = "---\n".join(texts)
    out = [unit]
    total = len(unit.encode())
    while total < size:
        out.append(unit)
        total += len(unit.encode())
    stream = "---\n".join(out)
    return stream, sum(1 for d in yaml.compose_all(stream, Loader=yaml.CSafeLoader) if d is not None)


def configs(out: Path) -> Path:
    """The three corpus configs, without what the baseline predates (the ``hostNetwork`` and
    ``runToCompletion`` fields, the ``name`` template variable: replaced by a label read, which
    costs the same), so that both versions read the same configs."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted((ROOT / "tests" / "e2e" / "corpus" / "configs").glob("*.yaml")):
        lines = [ln for ln in f.read_text().splitlines(keepends=True)
                 if not ln.lstrip().startswith(("hostNetwork:", "runToCompletion:"))]
        (out / f.name).write_text("".join(lines).replace("{{ name }}", "{{ labels['app'] | default('pod') }}"))
    return out


def time_inject(checkout: Path, stream: Path, cfg: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system of the child) seconds of each run."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"))
    cmd = [sys.executable, "-m", "sidecar_injector", "inject", "-f", str(stream), "-c", str(cfg),
           "--namespace", "bench"]
    wall, cpu = [], []
    for _ in range(runs):
        before = os.times()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall.append(time.perf_counter() - t0)
        after = os.times()
        cpu.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        if proc.returncode != 0:
            sys.exit(f"{checkout}: inject failed: {proc.stderr.decode()[-2000:]}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout to compare with (its src/ is used)")
    ap.add_argument("--size", type=int, default=9 * 1024 * 1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sidecar-injector-bench-corpus.yaml"))
    args = ap.parse_args()
    stream, ndocs = corpus(args.size)
    args.out.write_text(stream, encoding="utf-8")
    print(f"corpus: {len(stream.encode()) / 1e6:.1f} MB, {ndocs} documents ({args.out})")
    cfg = configs(args.out.parent / "sidecar-injector-bench-configs")
    results = {}
    for name, checkout in (("this checkout", ROOT), ("baseline", args.baseline)):
        if checkout is None:
            continue
        wall, cpu = time_inject(checkout, args.out, cfg, args.runs)
        results[name] = (wall, cpu)
        print(f"{name:14} wall min {min(wall):6.2f} s  median {statistics.median(wall):6.2f} s   "
              f"cpu min {min(cpu):6.2f} s  median {statistics.median(cpu):6.2f} s  ({args.runs} runs)")
    if len(results) == 2:
        for i, what in ((0, "wall"), (1, "cpu")):
            ratio = min(results["baseline"][i]) / min(results["this checkout"][i])
            print(f"speed-up ({what}, min/min): {ratio:.1f}x")


if __name__ == "__main__":
    main()
