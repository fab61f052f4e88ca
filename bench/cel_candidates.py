#!/usr/bin/env python3
"""Measure the CEL implementations on PyPI for SidecarConfig ``spec.matchConditions``.

Not a test: it prints the table recorded in docs/cel.md. For every candidate importable by
this interpreter it measures

- import time, compile time per expression,
- the cost of converting a realistic pod (5 containers, labels, annotations) into the
  library's values ("bind", paid once per pod when the library allows reusing it),
- the cost of one evaluation of each realistic expression against the bound pod,
- Kubernetes-CEL semantics we rely on (has(), map ``in``, exists/all, string functions,
  size(), errors on missing keys, error absorption by ``&&``/``||``, ext strings),
- what compile rejects: syntax errors, undeclared variables, non-bool result types.

Candidates whose module is missing are skipped. Some share the module name ``cel``, so
they cannot live in one environment: ``--venv DIR`` (repeatable) runs this script under
each such virtualenv's Python too and merges the rows into one table.

    python bench/cel_candidates.py [--seconds 0.2] [--venv /tmp/v-cel-python ...] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Looked up on PyPI on 2026-12-01 (the script itself never touches the network).
RELEASES = {
    "cel-expr-python": ("2026-06-25", "Google (github.com/cel-expr/cel-python), cel-cpp binding, first 2026-02"),
    "common-expression-language": ("2026-09-15", "hardbyte, Rust cel-interpreter (PyO3), 16 releases since 2024-04"),
    "cel-python": ("2026-01-31", "S. Lott (cloud-custodian), pure Python (lark), 10 releases since 2021"),
    "cel-bind": ("2025-12-30", "getenter, cel-cpp binding; variables typed by JSON schema/proto only"),
    "celparser": ("2025-04-04", "one author, pure Python, 3 releases on one day"),
    "mimicel": ("2025-06-05", "one author, pure Python (antlr4 + protobuf), 0.0.1"),
    "gresb-cel-python": ("2025-01-06", "GRESB, pure Python (antlr4), 0.0.3"),
}


def make_pod() -> dict[str, Any]:
    """A realistic Deployment pod: 5 containers with env, ports, probes; labels, annotations."""

    def container(i: int, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": f"registry.example.com/team/{name}:v1.{i}.3",
            "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
            "env": [{"name": f"SETTING_{j}", "value": f"value-{j}"} for j in range(8)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}, "periodSeconds": 5},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "imagePullPolicy": "IfNotPresent",
        }

    names = ["web", "worker", "cache", "metrics", "log-shipper"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f8b6c5d-x2x4z",
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {
                "app": "web",
                "app.kubernetes.io/name": "web",
                "app.kubernetes.io/part-of": "shop",
                "pod-template-hash": "7d9f8b6c5d",
                "team": "payments",
                "tier": "frontend",
            },
            "annotations": {
                "x": "1",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "kubectl.kubernetes.io/default-container": "web",
            },
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "uid": "0" * 36,
                 "controller": True, "blockOwnerDeletion": True}
            ],
        },
        "spec": {
            "containers": [container(i, n) for i, n in enumerate(names)],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "serviceAccountName": "web",
            "terminationGracePeriodSeconds": 30,
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "securityContext": {"runAsNonRoot": True},
        },
    }


# The realistic matchConditions: (expression, expected result on make_pod()).
EXPRESSIONS: list[tuple[str, bool]] = [
    ("!has(object.spec.hostNetwork) || !object.spec.hostNetwork", True),
    ("object.spec.containers.exists(c, c.name == 'istio-proxy')", False),
    ("object.metadata.labels['app'] == 'web'", True),
    ("has(object.metadata.annotations) && 'x' in object.metadata.annotations", True),
    ("object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))", True),
]

ERROR = "error"
# Semantics we rely on: (expression, expected: a value, or ERROR for an evaluation error).
SEMANTICS: list[tuple[str, Any]] = [
    ("has(object.spec.hostNetwork)", False),
    ("has(object.metadata.labels)", True),
    ("'app' in object.metadata.labels", True),
    ("'nope' in object.metadata.labels", False),
    ("object.spec.containers.exists(c, c.name == 'cache')", True),
    ("object.spec.containers.all(c, c.name.size() > 2)", True),
    ("object.spec.containers.exists_one(c, c.name == 'web')", True),
    ("object.spec.containers.filter(c, c.name.startsWith('w')).size() == 2", True),
    ("object.spec.containers.map(c, c.name)[4] == 'log-shipper'", True),
    ("object.metadata.name.startsWith('web-')", True),
    ("object.metadata.name.endsWith('x2x4z')", True),
    ("object.metadata.name.contains('7d9f')", True),
    ("object.metadata.name.matches('^web-[a-z0-9]+-[a-z0-9]{5}$')", True),
    ("size(object.spec.containers) == 5", True),
    ("size(object.metadata.labels) == 6", True),
    ("object.spec.terminationGracePeriodSeconds == 30", True),
    ("object.spec.containers[0].ports[0].containerPort > 8000", True),
    ("object.spec.securityContext.runAsNonRoot", True),
    ("object.metadata.labels['missing'] == 'x'", ERROR),
    ("object.spec.nodeName == 'node-1'", ERROR),
    ("false && object.spec.nodeName == 'x'", False),
    ("object.spec.nodeName == 'x' || true", True),
    ("object.spec.containers[9].name == 'x'", ERROR),
    # Kubernetes enables the cel-go ext strings library; nice to have.
    ("'a,b'.split(',').size() == 2", True),
    ("object.metadata.labels.team.upperAscii() == 'PAYMENTS'", True),
]

# What compile should reject: (expression, kind).
COMPILE_REJECTS: list[tuple[str, str]] = [
    ("object.spec.containers.exists(c, ", "syntax"),
    ("request.userInfo.username == 'admin'", "undeclared variable"),
    ("size(object.spec.containers)", "non-bool (int) result"),
    ("object.metadata.name + 1 == 2", "type error (string + int)"),
]
COMPILE_ACCEPTS = ["object.spec.containers.exists(c, c.name == 'x')", "object.metadata.name == 'x'"]


class EvalFailed(Exception):
    """The candidate reported an evaluation error."""


@dataclass
class Candidate:
    """An adapter: compile(src) -> program, bind(pod) -> activation, run(program, activation)."""

    dist: str
    module: str
    setup: Callable[[], tuple[Callable[[str], Any], Callable[[dict[str, Any]], Any], Callable[[Any, Any], Any]]]
    notes: list[str] = field(default_factory=list)


def _celexpr() -> Any:
    from cel_expr_python import cel  # type: ignore[import-not-found]
    from cel_expr_python.ext import ext_strings  # type: ignore[import-not-found]

    env = cel.NewEnv(variables={"object": cel.Type.DYN}, extensions=[ext_strings.ExtStrings()])
    error_type = cel.Type.ERROR

    accepted = (cel.Type.BOOL, cel.Type.DYN)

    def compile_(src: str) -> Any:
        prog = env.compile(src)  # type-checks: undeclared references, no matching overload
        if prog.return_type() not in accepted:  # the checked type, as core/cel.py rejects it
            raise TypeError(f"result type {prog.return_type().name()}")
        return prog

    def bind(pod: dict[str, Any]) -> Any:
        return env.Activation({"object": pod})  # converts lazily, on the first eval

    def run(prog: Any, act: Any) -> Any:
        v = prog.eval(act)
        if v.type() == error_type:
            raise EvalFailed(v.value())
        return v.value()

    return compile_, bind, run


def _hardbyte() -> Any:
    import cel  # type: ignore[import-not-found]

    def bind(pod: dict[str, Any]) -> Any:
        return cel.Context({"object": pod})

    def run(prog: Any, act: Any) -> Any:
        return prog.execute(act)

    return cel.compile, bind, run


def _celpy() -> Any:
    import celpy  # type: ignore[import-not-found]

    env = celpy.Environment()

    def compile_(src: str) -> Any:
        return env.program(env.compile(src))

    def bind(pod: dict[str, Any]) -> Any:
        return {"object": celpy.json_to_cel(pod)}

    def run(prog: Any, act: Any) -> Any:
        v = prog.evaluate(act)
        if isinstance(v, Exception):
            raise EvalFailed(v)
        return v

    return compile_, bind, run


# cel-bind types variables by JSON schema (no dyn, no maps): the fields the checks read.
_S = {"type": "string"}
_POD_SCHEMA = {"type": "object", "properties": {
    "metadata": {"type": "object", "properties": {
        "name": _S, "labels": {"type": "object", "additionalProperties": _S},
        "annotations": {"type": "object", "additionalProperties": _S}}},
    "spec": {"type": "object", "properties": {
        "hostNetwork": {"type": "boolean"}, "nodeName": _S, "terminationGracePeriodSeconds": {"type": "integer"},
        "securityContext": {"type": "object", "properties": {"runAsNonRoot": {"type": "boolean"}}},
        "containers": {"type": "array", "items": {"type": "object", "properties": {
            "name": _S, "image": _S,
            "ports": {"type": "array", "items": {"type": "object", "properties": {
                "containerPort": {"type": "integer"}}}}}}}}}}}


def _celbind() -> Any:
    import cel

    pool = cel.DescriptorPool()
    decls = {"object": pool.add_json_schema("Pod", json.dumps(_POD_SCHEMA))}
    compiler = cel.Compiler(pool, decls, None)
    interp = cel.Interpreter(pool, decls, None)

    def compile_(src: str) -> Any:
        return interp.build_expression_plan(compiler.compile_to_checked_expr(src))

    def bind(pod: dict[str, Any]) -> Any:
        return {"object": pod}  # converted on every evaluate()

    def run(prog: Any, act: Any) -> Any:
        return interp.evaluate(prog, act)

    return compile_, bind, run


def _celparser() -> Any:
    import celparser  # type: ignore[import-not-found]

    def compile_(src: str) -> Any:
        return celparser.compile(src, allow_undeclared_vars=False)

    def bind(pod: dict[str, Any]) -> Any:
        return {"object": pod}

    def run(prog: Any, act: Any) -> Any:
        return prog(act)

    return compile_, bind, run


def _mimicel() -> Any:
    from mimicel.api import CelEnv  # type: ignore[import-not-found]
    from mimicel.cel_values.cel_types import CEL_DYN  # type: ignore[import-not-found]

    env = CelEnv(variables={"object": CEL_DYN})

    def bind(pod: dict[str, Any]) -> Any:
        return {"object": pod}

    def run(prog: Any, act: Any) -> Any:
        v = prog.eval(act)
        return v.value if hasattr(v, "value") else v

    return env.compile, bind, run


def _gresb() -> Any:
    import logging

    from cel_python import Runtime  # type: ignore[import-not-found]

    logging.disable(logging.CRITICAL)  # it configures DEBUG logging of every AST at import

    def bind(pod: dict[str, Any]) -> Any:
        return {"object": pod}

    def run(prog: Any, act: Any) -> Any:
        return prog.evaluate(act)  # re-parses and re-type-checks on every call

    def compile_(src: str) -> Any:
        r = Runtime(src)
        if r.ast is None:
            raise SyntaxError(r.errors)
        return r

    return compile_, bind, run


CANDIDATES = [
    Candidate("cel-expr-python", "cel_expr_python", _celexpr),
    Candidate("common-expression-language", "cel", _hardbyte),
    Candidate("cel-python", "celpy", _celpy),
    Candidate("cel-bind", "cel", _celbind),
    Candidate("celparser", "celparser", _celparser),
    Candidate("mimicel", "mimicel", _mimicel),
    Candidate("gresb-cel-python", "cel_python", _gresb),
]


def per_call_us(fn: Callable[[], Any], seconds: float) -> float:
    """Best of 3 runs of about seconds/3 each, in microseconds per call."""
    n, start = 1, time.perf_counter()
    fn()
    one = time.perf_counter() - start
    n = max(1, int(seconds / 3 / max(one, 1e-7)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def dist_size_kib(name: str, seen: set[str] | None = None) -> tuple[int, int]:
    """Installed size of a distribution alone and with its dependencies (KiB), from RECORD."""
    seen = set() if seen is None else seen
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return 0, 0
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return 0, 0
    own = sum((f.size or 0) for f in (dist.files or [])) // 1024
    total = own
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        dep = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]
        total += dist_size_kib(dep, seen)[1]
    return own, total


def measure(c: Candidate, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"dist": c.dist, "python": sys.version.split()[0]}
    try:
        row["version"] = md.version(c.dist)
    except md.PackageNotFoundError:
        row["skipped"] = "not installed"
        return row
    row["released"], row["about"] = RELEASES.get(c.dist, ("?", ""))
    row["own_kib"], row["with_deps_kib"] = dist_size_kib(c.dist)
    t0 = time.perf_counter()
    try:
        importlib.import_module(c.module)
        compile_, bind, run = c.setup()
    except Exception as e:
        row["skipped"] = f"import/setup failed: {type(e).__name__}: {e}"
        return row
    row["import_ms"] = (time.perf_counter() - t0) * 1e3
    pod = make_pod()

    def result(src: str, act: Any) -> Any:
        try:
            return run(compile_(src), act)
        except Exception as e:
            return (ERROR, f"{type(e).__name__}: {str(e)[:100]}")

    act = bind(pod)
    # Realistic expressions: correctness, compile, eval.
    compile_us, eval_us, wrong = [], [], []
    for src, expected in EXPRESSIONS:
        got = result(src, act)
        if got != expected:
            wrong.append(f"{src} -> {got!r}")
            continue
        compile_us.append(per_call_us(lambda src=src: compile_(src), seconds))
        prog = compile_(src)
        eval_us.append(per_call_us(lambda prog=prog: run(prog, act), seconds))
    row["realistic_ok"] = f"{len(EXPRESSIONS) - len(wrong)}/{len(EXPRESSIONS)}"
    row["realistic_wrong"] = wrong
    if compile_us:
        row["compile_us"] = sum(compile_us) / len(compile_us)
        row["eval_us"] = sum(eval_us) / len(eval_us)
    row["bind_us"] = per_call_us(lambda: bind(pod), seconds)
    if not wrong:
        progs = [compile_(src) for src, _ in EXPRESSIONS]

        def per_pod() -> None:
            a = bind(pod)
            for p in progs:
                run(p, a)

        row["pod_5_exprs_us"] = per_call_us(per_pod, seconds)
        # Some bind lazily (cel-expr-python converts on the first eval): derive the conversion.
        row["conversion_us"] = max(0.0, row["pod_5_exprs_us"] - len(progs) * row["eval_us"])
    # Semantics.
    failed = []
    for src, expected in SEMANTICS:
        got = result(src, act)
        if expected == ERROR:
            ok = isinstance(got, tuple) and got[0] == ERROR
        else:
            ok = got == expected and got is not None
        if not ok:
            failed.append(f"{src} -> {got!r}")
    row["semantics_ok"] = f"{len(SEMANTICS) - len(failed)}/{len(SEMANTICS)}"
    row["semantics_failed"] = failed
    # Compile-time rejection.
    rejects = []
    for src, kind in COMPILE_REJECTS:
        try:
            compile_(src)
        except Exception:
            rejects.append(kind)
    row["compile_rejects"] = rejects
    row["compile_false_rejects"] = []
    for src in COMPILE_ACCEPTS:
        try:
            compile_(src)
        except Exception as e:
            row["compile_false_rejects"].append(f"{src}: {e}")
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, float | int) else "-"

    out = [
        "| candidate | version | latest release | installed MiB (own / with deps) | import ms "
        "| compile µs/expr | eval µs/expr (pod bound) | pod: bind + 5 exprs µs | of which conversion µs "
        "| realistic | semantics "
        "| compile rejects |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r and "version" not in r:
            out.append(f"| {r['dist']} | - | - | - | skipped: {r['skipped']} | | | | | | | |")
            continue
        if "skipped" in r:
            released = r.get("released", "?")
            out.append(f"| {r['dist']} | {r['version']} | {released} | - | {r['skipped']} | | | | | | | |")
            continue
        size = f"{r['own_kib'] / 1024:.1f} / {r['with_deps_kib'] / 1024:.1f}"
        rejects = ", ".join(r["compile_rejects"]) or "none"
        out.append(
            f"| {r['dist']} | {r['version']} | {r['released']} | {size} | {f(r.get('import_ms'), '.0f')} "
            f"| {f(r.get('compile_us'), '.0f')} | {f(r.get('eval_us'), '.1f')} | {f(r.get('pod_5_exprs_us'), '.0f')} "
            f"| {f(r.get('conversion_us'), '.0f')} | {r['realistic_ok']} | {r['semantics_ok']} | {rejects} |"
        )
    details = []
    for r in rows:
        for k in ("realistic_wrong", "semantics_failed", "compile_false_rejects"):
            for line in r.get(k, []):
                details.append(f"- {r['dist']}: {k.replace('_', ' ')}: `{line}`")
    return "\n".join(out + (["", *details] if details else []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.3, help="time per measurement (default 0.3)")
    ap.add_argument("--venv", action="append", default=[], help="also run under this virtualenv (repeatable)")
    ap.add_argument("--only", action="append", default=[], help="measure only these distributions")
    ap.add_argument("--json", action="store_true", help="print rows as JSON (used for --venv)")
    args = ap.parse_args()
    rows: dict[str, dict[str, Any]] = {}
    for c in CANDIDATES:
        if args.only and c.dist not in args.only:
            continue
        try:
            md.version(c.dist)
        except md.PackageNotFoundError:
            rows[c.dist] = {"dist": c.dist, "skipped": "not installed"}
            continue
        rows[c.dist] = measure(c, args.seconds)
    for venv in args.venv:
        cmd = [f"{venv}/bin/python", __file__, "--json", "--seconds", str(args.seconds)]
        cmd += [x for o in args.only for x in ("--only", o)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        for r in json.loads(out):  # a measured row beats a skipped one, an installed one a missing one
            mine = rows.get(r["dist"])
            if mine is None or ("skipped" in mine and ("skipped" not in r or "version" not in mine)):
                rows[r["dist"]] = r
    ordered = [rows[c.dist] for c in CANDIDATES if c.dist in rows]
    if args.json:
        print(json.dumps(ordered))
    else:
        print(table(ordered))


if __name__ == "__main__":
    main()
