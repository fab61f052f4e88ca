"""The offline commands: ``inject``, ``review`` and ``explain``. No cluster needed.

- ``inject`` is ``istioctl kube-inject`` for any sidecar: YAML streams in, the same documents
  out with every pod and pod template injected, for GitOps pipelines and CI.
- ``review`` answers an AdmissionReview exactly as the webhook does (same code path).
- ``explain`` answers "why wasn't my pod injected?": every config, its decision and reason,
  and the resulting diff.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from sidecar_injector.configload import BUILTIN_EXAMPLE, load_configs
from sidecar_injector.core.admission import review
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import InjectionError, InputError, InvalidReview
from sidecar_injector.core.workloads import PodInjection, check_object, inject_object
from sidecar_injector.schema import DEFAULT_KUBE_VERSION


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", default=None,
        help="SidecarConfig file or directory (default: the built-in example)",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="annotation prefix (default: %(default)s)")
    p.add_argument(
        "--kube-version", default=DEFAULT_KUBE_VERSION,
        help="Kubernetes version whose schemas configs are validated against (default: %(default)s)",
    )


def register(sub: Any) -> None:
    p = sub.add_parser("inject", help="inject sidecars into pods and workloads in YAML files (offline)")
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file, or - for stdin; repeatable")
    _add_config_args(p)
    p.add_argument("--namespace", "-n", default=None, help="namespace for objects that name none (default: default)")
    p.set_defaults(func=run_inject)

    p = sub.add_parser("review", help="answer an AdmissionReview exactly as the webhook would (offline)")
    p.add_argument("-f", "--filename", default="-", help="AdmissionReview JSON file, or - for stdin (default)")
    _add_config_args(p)
    p.add_argument("--on-error", choices=("fail", "allow", "deny"), default="fail")
    p.add_argument("--decode", action="store_true", help="also print the decoded JSON Patch")
    p.set_defaults(func=run_review)

    p = sub.add_parser("explain", help="say which configs a pod gets and why, with the diff (offline)")
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file, or - for stdin; repeatable")
    _add_config_args(p)
    p.add_argument("--namespace", "-n", default=None, help="namespace for objects that name none (default: default)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=run_explain)


def _configs(args: argparse.Namespace) -> ConfigSet:
    return load_configs(args.config or BUILTIN_EXAMPLE, prefix=args.prefix, kube_version=args.kube_version)


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: cannot read: {e}") from None


def _documents(names: list[str]) -> list[tuple[str, Any]]:
    docs: list[tuple[str, Any]] = []
    for name in names:
        label = "stdin" if name == "-" else name
        try:
            loaded = list(yaml.safe_load_all(_read(name)))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise InputError(f"{label}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        for i, doc in enumerate(loaded, start=1):
            if doc is not None:
                docs.append((f"{label}, document {i}", doc))
    return docs


def _inject_all(args: argparse.Namespace) -> tuple[list[tuple[Any, list[PodInjection]]], list[str]]:
    """Every document injected, in order, and the failures.

    A document whose injection fails (a template that does not render for it, a value the
    apiserver would refuse) is passed through unchanged and its error collected: one bad
    workload must not hide what happened to the others. The command exits 1 at the end.
    """
    configs = _configs(args)
    out: list[tuple[Any, list[PodInjection]]] = []
    failures: list[str] = []
    for source, doc in _documents(args.filename):
        obj = check_object(doc, source)
        try:
            out.append(inject_object(obj, configs, namespace=args.namespace, source=source))
        except InjectionError as e:
            failures.append(str(e))
            out.append((obj, []))
    return out, failures


def _report_failures(failures: list[str]) -> int:
    for f in failures:
        print(f"sidecar-injector: error: {f}", file=sys.stderr)
    if failures:
        print(f"sidecar-injector: {len(failures)} document(s) could not be injected (passed through unchanged)",
              file=sys.stderr)
    return 1 if failures else 0


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def run_inject(args: argparse.Namespace) -> int:
    results, failures = _inject_all(args)
    sys.stdout.write("---\n".join(_dump(doc) for doc, _ in results))
    for _, pods in results:
        for p in pods:
            for w in p.result.warnings:
                print(f"warning: {p.kind} {p.name}: {w}", file=sys.stderr)
    return _report_failures(failures)


def run_review(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.filename == "-" else _read_bytes(args.filename)
    try:
        result = review(raw, _configs(args), on_error=args.on_error)
    except InvalidReview as e:
        raise InvalidReview(f"invalid AdmissionReview (the webhook answers HTTP 400): {e}") from None
    sys.stdout.write(result.body.decode() + "\n")
    if args.decode and result.patch:
        sys.stdout.write(orjson.dumps(orjson.loads(result.patch), option=orjson.OPT_INDENT_2).decode() + "\n")
    if result.status != 200:
        print(f"sidecar-injector: the webhook answers HTTP {result.status}: {result.reason}", file=sys.stderr)
        return 1
    return 0


def _read_bytes(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e}") from None


def _explain_record(p: PodInjection) -> dict[str, Any]:
    r = p.result
    return {
        "kind": p.kind,
        "name": p.name,
        "namespace": p.namespace,
        "path": p.where,
        "injected": list(r.injected),
        "skipReason": r.skip_reason or None,
        "decisions": [
            {"config": d.config, "decision": "injected" if d.injected else "skipped", "reason": d.reason,
             "message": d.message, "requested": d.requested, "conflicts": list(d.conflicts)}
            for d in r.decisions
        ],
        "warnings": list(r.warnings),
        "patch": r.patch,
        "diff": _diff(p),
    }


def _diff(p: PodInjection) -> str:
    if not p.result.patch:
        return ""
    before = _dump(p.before).splitlines(keepends=True)
    after = _dump(p.result.pod).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, "before", "after", n=2))


def run_explain(args: argparse.Namespace) -> int:
    results, failures = _inject_all(args)
    records = [_explain_record(p) for _, pods in results for p in pods]
    if args.output == "json":
        sys.stdout.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
        return _report_failures(failures)
    if not records:
        print("no pods or pod templates found")
    for rec in records:
        head = f"{rec['kind']} {rec['name'] or '(no name)'} in namespace {rec['namespace']}"
        if rec["path"] != "(the pod itself)":
            head += f", pod template {rec['path']}"
        print(head)
        if rec["injected"]:
            print(f"  injected: {', '.join(rec['injected'])}")
        else:
            print(f"  nothing injected ({rec['skipReason']})")
        for d in rec["decisions"]:
            mark = "+" if d["decision"] == "injected" else "-"
            how = " (requested)" if d["requested"] else ""
            print(f"  {mark} {d['config']}{how}: {d['reason']}: {d['message']}")
        for w in rec["warnings"]:
            print(f"  warning: {w}")
        if rec["diff"]:
            print("  diff:")
            for line in rec["diff"].splitlines():
                print(f"    {line}")
        print()
    return _report_failures(failures)
