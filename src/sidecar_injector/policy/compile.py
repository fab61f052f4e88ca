"""A ConfigSet -> one MutatingAdmissionPolicy (JSONPatch, CEL) and its binding.

One policy for the ordered group of configs that compile, because the apiserver runs
policies in no fixed order while the webhook's result depends on config order (init
containers, sidecars, the ``injected`` list, which config's label wins): the CEL computes
each config's place (defaults in load order, then the requested ones in the order the
pod's annotation names them) and builds every list in that order, in one pass, exactly
once (a match condition on the status annotation makes it idempotent under reinvocation).

What the webhook does and CEL in Kubernetes 1.37 cannot is refused per config, in one line
naming the field and the reason (:func:`unsupported`): such configs stay webhook-only.
Pods whose injection the policy cannot reproduce (a pod declaring a container named like a
sidecar, merged field by field by the webhook; a pod arriving with a status annotation,
whose hash chain needs sha256) are not matched by the policy at all: see docs/policy.md.

The status annotation is computed with the core's own ``status_annotation`` at compile time for every
possible ordered set of injected configs (a CEL map from the names to the constant head),
and the pod-dependent ``added`` record is built in CEL.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar_injector.core.build import DEFAULT_CONTAINER_ANNOTATION
from sidecar_injector.core.config import ConfigSet, SidecarConfig, content_digest
from sidecar_injector.core.inject import MIRROR_ANNOTATION
from sidecar_injector.core.record import Record, status_annotation
from sidecar_injector.core.templating import is_template
from sidecar_injector.policy.templates import NotCompilable, cel_string, compile_template

API_VERSION = "admissionregistration.k8s.io/v1"
ENABLE_LABEL_VALUE = "enabled"
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
#: Most ordered selections the status table may hold (defaults subsets x requested permutations).
MAX_SELECTIONS = 2048
_RTC = "['Never', 'OnFailure']"
V = "variables."


@dataclass(frozen=True)
class Unsupported:
    """Why one config cannot be delivered by a policy."""

    config: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.config}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class CompiledSet:
    """The policy and binding for the configs that compile (None when none does)."""

    policy: dict[str, Any] | None
    binding: dict[str, Any] | None
    compiled: tuple[str, ...]
    unsupported: tuple[Unsupported, ...]
    templated: tuple[str, ...] = ()
    """Compiled configs with templates: their status hash cannot be the webhook's (no sha256 in CEL)."""
    sidecar_names: tuple[str, ...] = field(default=())

    def objects(self) -> list[dict[str, Any]]:
        return [o for o in (self.policy, self.binding) if o is not None]


# -- what compiles ---------------------------------------------------------------------------

_TEMPLATE_OK = {"image", "workingDir"}
_TEMPLATE_LIST_OK = {"args", "command"}


def _template_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _template_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _template_paths(v, (*path, i))]
    if isinstance(value, str) and is_template(value):
        return [(path, value)]
    return []


def _fmt(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _template_allowed(path: tuple[Any, ...]) -> bool:
    """Fields whose rendered value the webhook does not check with the apiserver's rules."""
    top = path[0]
    if top == "annotations":
        return len(path) == 2
    if top == "env":
        return len(path) == 3 and path[2] == "value"
    if top in ("containers", "initContainers") and len(path) >= 3:
        rest = path[2:]
        if len(rest) == 1 and rest[0] in _TEMPLATE_OK:
            return True
        if len(rest) == 2 and rest[0] in _TEMPLATE_LIST_OK:
            return True
        if len(rest) == 3 and rest[0] == "env" and rest[2] == "value":
            return True
    return False


def unsupported(cfg: SidecarConfig, configs: ConfigSet) -> list[Unsupported]:
    """Every reason ``cfg`` cannot be a policy (empty: it compiles)."""
    out: list[Unsupported] = []
    parts = _static_parts(cfg)
    if configs.scoped:
        out.append(Unsupported(cfg.name, "metadata.namespace", "namespaced SidecarConfigs (tenancy) shadow configs "
                                                               "per namespace: not compiled"))
    for key, value in parts.items():
        for path, src in _template_paths(value, (key,)):
            where = "spec." + _fmt(path)
            if not _template_allowed(path):
                out.append(Unsupported(cfg.name, where, "a template here renders a value the webhook checks with the "
                                                        "apiserver's rules per pod, which CEL cannot do"))
                continue
            try:
                compile_template(src)
            except NotCompilable as e:
                out.append(Unsupported(cfg.name, where, f"template not compiled to CEL: {e}"))
    own_volumes = {v.get("name") for v in parts["volumes"] if isinstance(v, dict)}
    for key in ("initContainers", "containers"):
        for i, c in enumerate(parts[key]):
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in own_volumes:
                    out.append(Unsupported(cfg.name, f"spec.{key}[{i}].volumeMounts[{j}]",
                                           f"mounts volume {m.get('name')!r}, which the config does not declare: "
                                           "the webhook checks per pod that the pod has it"))
            for j, p in enumerate(c.get("ports") or []):
                if p.get("hostPort") or (cfg.host_network == "inject" and key == "containers"):
                    out.append(Unsupported(cfg.name, f"spec.{key}[{i}].ports[{j}]",
                                           "a host port (or any port of a sidecar on hostNetwork pods): the webhook "
                                           "checks per pod that the pod does not hold it already"))
                    break
    for j, m in enumerate(parts["volumeMounts"]):
        if m.get("name") not in own_volumes:
            out.append(Unsupported(cfg.name, f"spec.volumeMounts[{j}]",
                                   f"mounts volume {m.get('name')!r}, which the config does not declare: the webhook "
                                   "checks per pod that the pod has it"))
    return out


def _static_parts(cfg: SidecarConfig) -> dict[str, Any]:
    return {
        "labels": cfg.labels.static, "annotations": cfg.annotations.static,
        "initContainers": cfg.init_containers.static, "containers": cfg.containers.static,
        "volumes": cfg.volumes.static, "volumeMounts": cfg.volume_mounts.static, "env": cfg.env.static,
        "imagePullSecrets": cfg.image_pull_secrets.static,
    }


# -- CEL building blocks ---------------------------------------------------------------------

def lit(value: Any) -> str:
    """A CEL literal for a JSON value; templates become CEL string expressions. Every map value
    and list element is ``dyn``: Kubernetes checks literals to be of one type."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{cel_string(k)}: dyn({lit(v)})" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(f"dyn({lit(v)})" for v in value) + "]"
    if isinstance(value, str):
        return f"({compile_template(value)})" if is_template(value) else cel_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _json_quote(expr: str) -> str:
    """CEL building the JSON string of a runtime string (quotes and backslashes escaped)."""
    return (f"'\"' + {expr}.replace({cel_string(chr(92))}, {cel_string(chr(92) * 2)})"
            f".replace('\"', {cel_string(chr(92) + chr(34))}) + '\"'")


def _concat(items: list[str]) -> str:
    items = [i for i in items if i != "[]"]
    return " + ".join(items) if items else "[]"


def _patch(op_path: str, value: str) -> str:
    return f"JSONPatch{{op: 'add', path: {cel_string(op_path)}, value: {value}}}"


class _Gen:
    """Generates the policy's variables and mutation for the compiled configs, in load order."""

    def __init__(self, configs: ConfigSet, chosen: list[SidecarConfig]) -> None:
        self.set = configs
        self.cfgs = chosen
        self.n = len(chosen)
        self.vars: list[tuple[str, str]] = []
        self.parts = [_static_parts(c) for c in chosen]

    def var(self, name: str, expr: str) -> str:
        self.vars.append((name, expr))
        return V + name

    # order: position of config i among those chosen for the pod
    def before(self, j: int, i: int) -> str:
        return f"({V}c{j} && {V}r{j} < {V}r{i})"

    def first(self, i: int, others: list[int]) -> str:
        """No config in ``others`` is chosen before config ``i``."""
        others = [j for j in others if j != i]
        if not others or self.n == 1:
            return "true"
        return "!(" + " || ".join(self.before(j, i) for j in others) + ")"

    def in_order(self, per_config: list[str]) -> str:
        """Concatenate per-config lists in the pod's config order (only chosen configs)."""
        present = [(i, e) for i, e in enumerate(per_config) if e != "[]"]
        if not present:
            return "[]"
        if self.n == 1:
            return f"({V}c0 ? {present[0][1]} : [])"
        terms = []
        for p in range(self.n):
            chain = "[]"
            for i, e in reversed(present):
                chain = f"{V}r{i} == {p} ? {e} : {chain}"
            terms.append(f"({chain})")
        return " + ".join(terms)

    def cond_list(self, cond: str, item: str) -> str:
        return f"[{item}]" if cond == "true" else f"({cond} ? [{item}] : [])"

    def build(self) -> tuple[list[dict[str, str]], str]:
        s = self.set
        ann = "object.metadata.?annotations"
        req = self.var("req", f"{ann}[{cel_string(s.inject_key)}].orValue('').split(',').map(x, x.trim())"
                              ".filter(x, x != '' && x.lowerAscii() != 'true')")
        exc = self.var("exc", f"{ann}[{cel_string(s.exclude_key)}].orValue('').split(',').map(x, x.trim())")
        done = self.var("done", f"object.spec.?restartPolicy.orValue('') in {_RTC}")
        host = "object.spec.?hostNetwork.orValue(false) == true"
        # eligibility (inject(): candidates, namespaces, hostNetwork, runToCompletion, matchConditions)
        for i, c in enumerate(self.cfgs):
            name = cel_string(c.name)
            conds = [f"!({name} in {exc})"]
            if not c.inject_by_default:
                conds.insert(0, f"{name} in {req}")
            if c.namespaces:
                conds.append(f"request.namespace in {lit(sorted(c.namespaces))}")
            if c.host_network == "skip":
                conds.append(f"!({host})")
            if c.containers.static and c.run_to_completion == "skip" and not c.native_sidecar:
                conds.append(f"!{done}")
            conds += [f"({mc.expression})" for mc in c.match_conditions]
            self.var(f"e{i}", " && ".join(conds))
        self._selection()
        if self.n > 1:
            for i, c in enumerate(self.cfgs):
                key = str(i) if c.inject_by_default else f"100000 + {req}.indexOf({cel_string(c.name)})"
                self.var(f"o{i}", key)
            for i in range(self.n):
                terms = [f"({V}c{j} && {V}o{j} < {V}o{i} ? 1 : 0)" for j in range(self.n) if j != i]
                self.var(f"r{i}", f"{V}c{i} ? {' + '.join(terms)} : -1")
        any_chosen = " || ".join(f"{V}c{i}" for i in range(self.n))
        mutation = self._mutation(any_chosen, done)
        return [{"name": k, "expression": e} for k, e in self.vars], mutation

    def _selection(self) -> None:
        """The selectors, judged against the labels as injection leaves them (inject._choose):
        unrolled passes, as many as configs add a label some selector reads, plus one."""
        keys = {r.key for c in self.cfgs if c.selector for r in c.selector.requirements}
        adders = [i for i, p in enumerate(self.parts) if keys & set(p["labels"])]
        passes = 1 + len(adders)
        for p in range(passes):
            last = p == passes - 1
            for i, c in enumerate(self.cfgs):
                name = f"c{i}" if last else f"c{i}_{p}"
                prev = None if p == 0 else f"{V}c{i}_{p - 1}"
                match = self._selector(c, p)
                expr = f"{V}e{i}" + ("" if match == "true" else f" && {match}")
                self.var(name, expr if prev is None else f"{prev} || ({expr})")

    def _label(self, key: str, p: int) -> str:
        """The optional value of label ``key`` in selection pass ``p``."""
        base = f"object.metadata.?labels[{cel_string(key)}]"
        if p == 0:
            return base
        alt = "optional.none()"
        for i in reversed(range(self.n)):
            v = self.parts[i]["labels"].get(key)
            if v is not None:
                alt = f"({V}c{i}_{p - 1} ? optional.of({cel_string(v)}) : {alt})"
        return base if alt == "optional.none()" else f"{base}.or({alt})"

    def _selector(self, c: SidecarConfig, p: int) -> str:
        if c.selector is None:
            return "true"
        out = []
        for r in c.selector.requirements:
            lab = self._label(r.key, p)
            if r.operator == "Exists":
                out.append(f"{lab}.hasValue()")
            elif r.operator == "DoesNotExist":
                out.append(f"!{lab}.hasValue()")
            else:
                has = f"({lab}.hasValue() && {lab}.value() in {lit(sorted(r.values))})"
                out.append(has if r.operator == "In" else f"!{has}")
        return " && ".join(out) if out else "true"

    # -- the mutation ------------------------------------------------------------------------

    def _by_name(self, key: str, by: str = "name") -> dict[Any, list[int]]:
        who: dict[Any, list[int]] = {}
        for i, p in enumerate(self.parts):
            for item in p[key]:
                who.setdefault(item[by], []).append(i)
        return who

    def _mutation(self, any_chosen: str, done: str) -> str:
        s = self.set
        spec = "object.spec"
        ctr_names: dict[str, list[int]] = {}
        for i, p in enumerate(self.parts):
            for item in (*p["initContainers"], *p["containers"]):
                ctr_names.setdefault(item["name"], []).append(i)
        # containers: inits (+ native sidecars) before the pod's own; regular ones after the app
        inits, regular = [], []
        for i, (c, p) in enumerate(zip(self.cfgs, self.parts, strict=True)):
            first = {name: self.first(i, ctr_names[name]) for name in ctr_names}
            mine = [self.cond_list(first[x["name"]], lit(x)) for x in p["initContainers"]]
            can_go_native = bool(p["containers"]) and not c.native_sidecar and c.run_to_completion == "native"
            if c.native_sidecar:
                mine += [self.cond_list(first[x["name"]], lit(x)) for x in p["containers"]]
                regular.append("[]")
            elif can_go_native:
                nat = [self.cond_list(first[x["name"]], lit({**x, "restartPolicy": "Always"})) for x in p["containers"]]
                reg = [self.cond_list(first[x["name"]], lit(x)) for x in p["containers"]]
                mine.append(f"({done} ? {_concat(nat)} : [])")
                regular.append(f"({done} ? [] : {_concat(reg)})")
            else:
                regular.append(_concat([self.cond_list(first[x["name"]], lit(x)) for x in p["containers"]]))
            inits.append(_concat(mine))
        v_inits = self.var("inits", self.in_order(inits))
        v_ctrs = self.var("ctrs", self.in_order(regular))
        # volumes and pull secrets: the pod's own (by name) win, then the first config's
        lists = {}
        for key in ("volumes", "imagePullSecrets"):
            who = self._by_name(key)
            per = []
            for i, p in enumerate(self.parts):
                items = []
                for x in p[key]:
                    cond = (f"!{spec}.?{key}.orValue([]).exists(v, v.name == {cel_string(x['name'])})"
                            f" && {self.first(i, who[x['name']])}").removesuffix(" && true")
                    items.append(self.cond_list(cond, lit(x)))
                per.append(_concat(items))
            lists[key] = self.var("vols" if key == "volumes" else "secrets", self.in_order(per))
        # mounts and env for the app containers: one list each, first config wins by mountPath / name
        app: dict[str, str] = {}
        for key, by in (("volumeMounts", "mountPath"), ("env", "name")):
            who = self._by_name(key, by)
            per = [_concat([self.cond_list(self.first(i, who[x[by]]), lit(x)) for x in p[key]])
                   for i, p in enumerate(self.parts)]
            if any(x != "[]" for x in per):
                app[key] = self.var("mounts" if key == "volumeMounts" else "env", self.in_order(per))
        # labels and annotations: the pod's keys win, then the first config's
        own = s.prefix + "/"
        maps: dict[str, tuple[list[str], list[str]]] = {}
        for key in ("labels", "annotations"):
            holders: dict[str, list[int]] = {}
            for i, p in enumerate(self.parts):
                for k in p[key]:
                    if not (key == "annotations" and k.startswith(own)):
                        holders.setdefault(k, []).append(i)
            patches, recorded = [], []
            for i, p in enumerate(self.parts):
                rec = []
                for k, v in p[key].items():
                    if k not in holders:
                        continue
                    cond = f"{V}c{i} && !object.metadata.?{key}[{cel_string(k)}].hasValue()"
                    win = self.first(i, holders[k])
                    if win != "true":
                        cond += f" && {win}"
                    patches.append(f"({cond} ? [{_patch(_pointer('metadata', key, k), lit(v))}] : [])")
                    rec.append(self.cond_list(cond, cel_string(orjson.dumps(k).decode())))
                recorded.append(_concat(rec))
            maps[key] = (patches, recorded)
        dc = DEFAULT_CONTAINER_ANNOTATION
        dc_cond = f"{v_ctrs}.size() > 0 && !object.metadata.?annotations[{cel_string(dc)}].hasValue()"
        ann_keys = self.var("annAdded", _concat([self.in_order(maps["annotations"][1]),
                                                 f"({dc_cond} ? [{cel_string(orjson.dumps(dc).decode())}] : [])"]))
        lab_keys = self.var("labAdded", self.in_order(maps["labels"][1]))
        status = self._status(v_inits, v_ctrs, lists, app, lab_keys, ann_keys)
        ops = []
        label_any = " || ".join(f"{V}c{i}" for i, p in enumerate(self.parts) if p["labels"])
        if label_any:
            ops.append(f"(!has(object.metadata.labels) && ({label_any}) ? "
                       f"[{_patch('/metadata/labels', '{}')}] : [])")
        ops += maps["labels"][0]
        ops.append(f"(!has(object.metadata.annotations) ? [{_patch('/metadata/annotations', '{}')}] : [])")
        ops += maps["annotations"][0]
        ops.append(f"({dc_cond} ? [{_patch(_pointer('metadata', 'annotations', dc), 'object.spec.containers[0].name')}]"
                   " : [])")
        ops.append(f"[{_patch(_pointer('metadata', 'annotations', s.status_key), status)}]")
        for key, (var, by) in (("volumeMounts", (app.get("volumeMounts"), "mountPath")),
                               ("env", (app.get("env"), "name"))):
            if var is None:
                continue
            idx = f"string({spec}.containers.map(x, x.name).indexOf(c.name))"
            # A container without the list gets it whole; one with it gets each item appended
            # (the pod's own items are typed objects, which a patch value cannot carry).
            ops.append(f"{spec}.containers.filter(c, !has(c.{key}) && {var}.size() > 0).map(c, JSONPatch{{op: 'add', "
                       f"path: '/spec/containers/' + {idx} + '/{key}', value: {var}}})")
            total = sum(len(p[key]) for p in self.parts)
            for k in range(total):
                item = f"{var}[{k}]"
                ops.append(f"({var}.size() > {k} ? {spec}.containers.filter(c, has(c.{key}) && "
                           f"!c.{key}.exists(x, x.{by} == {item}.{by})).map(c, JSONPatch{{op: 'add', "
                           f"path: '/spec/containers/' + {idx} + '/{key}/-', value: {item}}}) : [])")
        ops.append(f"({v_inits}.size() == 0 ? [] : !has({spec}.initContainers) ? "
                   f"[{_patch('/spec/initContainers', v_inits)}] : "
                   f"{v_inits}.map(c, JSONPatch{{op: 'add', path: '/spec/initContainers/' + "
                   f"string({v_inits}.map(x, x.name).indexOf(c.name)), value: c}}))")
        ops.append(f"{v_ctrs}.map(c, {_patch('/spec/containers/-', 'c')})")
        for key, var in lists.items():
            ops.append(f"({var}.size() == 0 ? [] : !has({spec}.{key}) ? [{_patch('/spec/' + key, var)}] : "
                       f"{var}.map(x, {_patch('/spec/' + key + '/-', 'x')}))")
        return f"!({any_chosen}) ? [] :\n" + " +\n".join(ops)

    def _status(self, inits: str, ctrs: str, lists: dict[str, str], app: dict[str, str], lab: str, ann: str) -> str:
        """The status annotation: the core's own value for the injected names (hash, digests), with
        the ``added`` record (what this pod got, by name) built in CEL in the core's format."""
        names = self.var("names", self.in_order([f"[{cel_string(c.name)}]" for c in self.cfgs]))
        table = {}
        for names_t in _selections(self.cfgs):
            digests = [(n, _digest(self.by_name(n))) for n in names_t]
            value = status_annotation(list(names_t), digests, None, Record(), None)
            tail = '"added":{}}'
            if not value.endswith(tail):
                raise AssertionError(f"the core's status annotation format changed: {value!r}")
            table[",".join(names_t)] = value[: -len(tail)] + '"added":'
        head = "{" + ", ".join(f"{cel_string(k)}: {cel_string(v)}" for k, v in table.items()) + "}"
        ni = "c.name"
        parts = [
            f"({lab}.size() > 0 ? ['\"labels\":[' + {lab}.join(',') + ']'] : [])",
            f"({ann}.size() > 0 ? ['\"annotations\":[' + {ann}.join(',') + ']'] : [])",
        ]
        for key, var in (("initContainers", inits), ("containers", ctrs), *lists.items()):
            parts.append(f"({var}.size() > 0 ? ['\"{key}\":[' + {var}.map(c, {_json_quote(ni)}).join(',') + ']'] : [])")
        if app:
            pieces = []
            conds = []
            for key, by in (("volumeMounts", "mountPath"), ("env", "name")):
                app_var = app.get(key)
                if app_var is None:
                    continue
                lacking = f"{app_var}.filter(m, !c.?{key}.orValue([]).exists(x, x.{by} == m.{by}))"
                conds.append(f"{lacking}.size() > 0")
                pieces.append(f"({lacking}.size() > 0 ? ['\"{key}\":[' + {lacking}.map(m, {_json_quote('m.' + by)})"
                              ".join(',') + ']'] : [])")
            into = self.var("into", f"object.spec.containers.filter(c, {' || '.join(conds)}).map(c, "
                                    f"{_json_quote('c.name')} + ':{{' + ({' + '.join(pieces)}).join(',') + '}}')")
            parts.append(f"({into}.size() > 0 ? ['\"into\":{{' + {into}.join(',') + '}}'] : [])")
        added = self.var("added", "'{' + (" + " + ".join(parts) + ").join(',') + '}'")
        return f"{head}[{names}.join(',')] + {added} + '}}'"

    def by_name(self, name: str) -> SidecarConfig:
        return next(c for c in self.cfgs if c.name == name)


def _digest(c: SidecarConfig) -> str:
    # Templated configs: the webhook hashes the values rendered for the pod, which CEL cannot;
    # the digest of the unrendered config stands in (documented; `injected` stays exact).
    return c.static_digest or content_digest(_static_parts(c))


def _selections(cfgs: list[SidecarConfig]) -> list[tuple[str, ...]]:
    """Every ordered list of names one pod may get: a subset of the defaults in load order,
    then requested ones in any order."""
    defaults = [c.name for c in cfgs if c.inject_by_default]
    optional = [c.name for c in cfgs if not c.inject_by_default]
    out: list[tuple[str, ...]] = []
    for k in range(len(defaults) + 1):
        for d in itertools.combinations(defaults, k):
            for m in range(len(optional) + 1):
                for o in itertools.permutations(optional, m):
                    if d or o:
                        out.append(d + o)
                        if len(out) > MAX_SELECTIONS:
                            raise OverflowError
    return out


def namespace_selector(prefix: str, own_namespace: str | None = None) -> dict[str, Any]:
    """The webhook's: namespaces labelled ``<prefix>/injection: enabled``, never the system ones."""
    return {"matchExpressions": [
        {"key": f"{prefix}/injection", "operator": "In", "values": [ENABLE_LABEL_VALUE]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": [*SYSTEM_NAMESPACES, *([own_namespace] if own_namespace else [])]},
    ]}


def compile_set(
    configs: ConfigSet,
    *,
    name: str = "sidecar-injector",
    selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    only: Collection[str] | None = None,
) -> CompiledSet:
    """The policy and binding for every config of ``configs`` that compiles (an ordered group);
    ``only``: for those of these names only (the policy part of a hybrid install)."""
    problems: list[Unsupported] = []
    ok: list[SidecarConfig] = []
    for c in configs.configs:
        why = unsupported(c, configs)
        problems += why
        if not why and (only is None or c.name in only):
            ok.append(c)
    if not ok:
        return CompiledSet(None, None, (), tuple(problems))
    try:
        _selections(ok)
    except OverflowError:
        return CompiledSet(None, None, (), (*problems, *(
            Unsupported(c.name, "spec.injectByDefault", f"more than {MAX_SELECTIONS} ordered sets of configs a pod "
                        "may get: the status table would be too large") for c in ok)))
    gen = _Gen(configs, ok)
    variables, expression = gen.build()
    sidecars = sorted({x["name"] for p in gen.parts for k in ("initContainers", "containers") for x in p[k]})
    status_key = cel_string(configs.status_key)
    conditions = [
        {"name": "not-a-mirror-pod",
         "expression": f"!object.metadata.?annotations[{cel_string(MIRROR_ANNOTATION)}].hasValue()"},
        {"name": "not-opted-out",
         "expression": " && ".join(
             f"object.metadata.?{m}[{cel_string(configs.inject_key)}].orValue('').trim().lowerAscii() != 'false'"
             for m in ("annotations", "labels"))},
        # Idempotence, and the case CEL cannot hash (a pod injected before): never twice.
        {"name": "not-injected-yet", "expression": f"!object.metadata.?annotations[{status_key}].hasValue()"},
    ]
    if sidecars:
        names = lit(sidecars)
        conditions.append({
            "name": "declares-no-sidecar",  # the webhook merges such a container field by field
            "expression": f"!object.spec.containers.exists(c, c.name in {names}) && "
                          f"!object.spec.?initContainers.orValue([]).exists(c, c.name in {names})"})
    templated = tuple(c.name for c in ok if c.has_templates)
    policy = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "annotations": {f"{configs.prefix}/configs": ",".join(c.name for c in ok)}},
        "spec": {
            "failurePolicy": failure_policy,
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
            "matchConditions": conditions,
            "variables": variables,
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}],
        },
    }
    binding = {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "matchResources": {
                "namespaceSelector": selector if selector is not None else namespace_selector(configs.prefix),
                "objectSelector": {"matchExpressions": [
                    {"key": configs.inject_key, "operator": "NotIn", "values": ["false"]}]},
            },
        },
    }
    return CompiledSet(policy, binding, tuple(c.name for c in ok), tuple(problems), templated, tuple(sidecars))


# -- delivery per install mode (manifests --mode, explain) -----------------------------------

MODES = ("webhook", "policy", "hybrid")


@dataclass(frozen=True)
class Delivery:
    """How one config reaches pods in each install mode."""

    config: str
    compiles: bool
    webhook_only_reason: str
    """Why the compiler refuses it ("" when it compiles)."""
    hybrid: str
    """``policy`` or ``webhook``: its path in a hybrid install."""
    hybrid_reason: str
    """Why it stays in the webhook in a hybrid install ("" when the policy delivers it)."""

    def modes(self) -> dict[str, dict[str, str]]:
        """Mode -> {"delivery": webhook|policy|none, "reason": ...}, for explain."""
        return {
            "webhook": {"delivery": "webhook", "reason": "every config is delivered by the webhook"},
            "policy": ({"delivery": "policy", "reason": "compiles to the MutatingAdmissionPolicy"} if self.compiles
                       else {"delivery": "none", "reason": f"not delivered: webhook-only: {self.webhook_only_reason}"}),
            "hybrid": ({"delivery": "policy", "reason": "compiles, and the split is safe"} if self.hybrid == "policy"
                       else {"delivery": "webhook", "reason": self.hybrid_reason}),
        }


@dataclass(frozen=True)
class DeliveryPlan:
    deliveries: tuple[Delivery, ...]
    split_problem: str = ""
    """Why a hybrid install puts every config in the webhook although some compile ("" if it does not)."""

    @property
    def policy(self) -> tuple[str, ...]:
        return tuple(d.config for d in self.deliveries if d.hybrid == "policy")

    @property
    def webhook(self) -> tuple[str, ...]:
        return tuple(d.config for d in self.deliveries if d.hybrid == "webhook")

    def of(self, name: str) -> Delivery | None:
        return next((d for d in self.deliveries if d.config == name), None)


_POD_READ = re.compile(r"\b(labels|annotations|pod)\b")


def _templates_of(cfg: SidecarConfig) -> list[str]:
    return [src for key, value in _static_parts(cfg).items() for _, src in _template_paths(value, (key,))]


def _split_problem(pol: list[SidecarConfig], hook: list[SidecarConfig]) -> str:
    """Why the policy (first in the admission chain) and the webhook (second, seeing the policy's
    result as the pod's own) would not give the webhook-only install's pod ("" when they do)."""
    pparts = {c.name: _static_parts(c) for c in pol}
    hparts = {c.name: _static_parts(c) for c in hook}
    for h in hook:
        hp = hparts[h.name]
        hnames = {x["name"] for k in ("initContainers", "containers") for x in hp[k]}
        for p in pol:
            pp = pparts[p.name]
            shared = hnames & {x["name"] for k in ("initContainers", "containers") for x in pp[k]}
            if shared:
                return (f"{p.name} (policy) and {h.name} (webhook) both inject a container named "
                        f"{sorted(shared)[0]!r}: the webhook would merge into the policy's")
            if (hp["volumeMounts"] or hp["env"]) and pp["containers"]:
                return (f"{h.name} (webhook) adds volumeMounts/env to the app containers, which would include "
                        f"the sidecars of {p.name} (policy)")
            keys = {r.key for r in p.selector.requirements} if p.selector else set()
            if keys & set(hp["labels"]):
                return (f"the selector of {p.name} (policy) reads label {sorted(keys & set(hp['labels']))[0]!r} "
                        f"that {h.name} (webhook) adds: the policy runs first and cannot see it")
        if h.match_conditions:
            return (f"{h.name} (webhook) has matchConditions, which would see the pod after the policy's "
                    "injection instead of as it came in")
        if any(_POD_READ.search(t) for t in _templates_of(h)):
            return (f"{h.name} (webhook) has templates reading the pod's labels/annotations, which would see "
                    "the policy's additions")
    return ""


def delivery_plan(configs: ConfigSet) -> DeliveryPlan:
    """Per config: does it compile (policy mode), and its path in a hybrid install.

    The hybrid rule: the apiserver runs MutatingAdmissionPolicies before mutating webhooks, so
    the policy's configs come first and the webhook sees their result as the pod's own. That
    gives the webhook-only pod only if, for every pod, every policy config comes before every
    webhook config in the webhook's order (so the policy takes the injectByDefault configs that
    compile and precede, in load order, every webhook-delivered default; a requested config is
    ordered by the pod's annotation, so it stays in the webhook whenever the webhook holds any)
    and nothing the policy adds changes what the webhook decides or adds (:func:`_split_problem`).
    When that fails, every config goes to the webhook.
    """
    why: dict[str, list[Unsupported]] = {c.name: unsupported(c, configs) for c in configs.configs}
    ok = [c for c in configs.configs if not why[c.name]]
    try:
        _selections(ok)
    except OverflowError:
        for c in ok:
            why[c.name] = [Unsupported(c.name, "spec.injectByDefault", f"more than {MAX_SELECTIONS} ordered sets "
                                       "of configs a pod may get: the status table would be too large")]
        ok = []
    reason = {c.name: "; ".join(f"{u.field}: {u.reason}" for u in why[c.name]) for c in configs.configs}
    hybrid_why = {c.name: f"webhook-only: {reason[c.name]}" for c in configs.configs if why[c.name]}
    if hybrid_why:
        order = [c.name for c in configs.configs]
        hook_defaults = [c.name for c in configs.configs if c.name in hybrid_why and c.inject_by_default]
        first = min((order.index(n) for n in hook_defaults), default=len(order))
        webhook_only = next(iter(hybrid_why))
        for c in ok:
            if not c.inject_by_default:
                hybrid_why[c.name] = (f"not injectByDefault: ordered by the pod's annotation, also relative to the "
                                      f"webhook's configs (e.g. {webhook_only}), so kept in the webhook")
            elif order.index(c.name) > first:
                hybrid_why[c.name] = (f"comes after the webhook-only default {order[first]} in load order, "
                                      "and the policy runs before the webhook: kept in the webhook")
    pol = [c for c in ok if c.name not in hybrid_why]
    hook = [c for c in configs.configs if c.name in hybrid_why]
    problem = _split_problem(pol, hook) if pol and hook else ""
    if problem:
        for c in pol:
            hybrid_why[c.name] = f"compiles, but the set cannot be split safely: {problem}"
    return DeliveryPlan(tuple(
        Delivery(c.name, not why[c.name], reason[c.name], "webhook" if c.name in hybrid_why else "policy",
                 hybrid_why.get(c.name, ""))
        for c in configs.configs), problem)


def policy_declines(pod: Any, configs: ConfigSet, sidecars: Collection[str]) -> str:
    """Why the compiled policy leaves this pod alone by design ("" when it does not): see the
    match conditions ``not-injected-yet`` and ``declares-no-sidecar`` of :func:`compile_set`."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(ann, dict) and configs.status_key in ann:
        return ("it arrives with the status annotation (injected before): the policy never touches such a pod "
                "(CEL has no sha256 to chain the hash); the webhook injects what is missing")
    spec = pod.get("spec") if isinstance(pod, dict) else None
    for key in ("initContainers", "containers"):
        for c in (spec.get(key) if isinstance(spec, dict) else None) or []:
            if isinstance(c, dict) and c.get("name") in sidecars:
                return (f"it declares a container named {c['name']!r} like a sidecar: the webhook merges it field "
                        "by field, which CEL cannot; the policy leaves the pod alone")
    return ""
