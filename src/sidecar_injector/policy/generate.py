"""The CEL of the policy: its variables (which configs a pod gets, in which order) and its mutation.

For the ordered group of configs that compile, in load order: each config's eligibility (the
pod's annotations, namespace, hostNetwork, restartPolicy, matchConditions), its selector judged
against the labels as injection leaves them, its place among the chosen ones (defaults in load
order, then the requested ones in the order the pod's annotation names them), and one JSONPatch
expression building every list in that order, the status annotation last. Separate from the
entry point (:mod:`sidecar_injector.policy.compile`), which wraps this in the policy object and
its match conditions, because this is the part that mirrors the core's injection rule by rule.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar_injector.core.build import DEFAULT_CONTAINER_ANNOTATION
from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.policy.celtext import concat, json_quote, lit, patch, pointer
from sidecar_injector.policy.refusals import static_parts
from sidecar_injector.policy.status import status_heads
from sidecar_injector.policy.templates import cel_string

_RTC = "['Never', 'OnFailure']"
V = "variables."


class Generator:
    """Generates the policy's variables and mutation for the compiled configs, in load order."""

    def __init__(self, configs: ConfigSet, chosen: list[SidecarConfig]) -> None:
        self.set = configs
        self.cfgs = chosen
        self.n = len(chosen)
        self.vars: list[tuple[str, str]] = []
        self.parts = [static_parts(c) for c in chosen]

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
                mine.append(f"({done} ? {concat(nat)} : [])")
                regular.append(f"({done} ? [] : {concat(reg)})")
            else:
                regular.append(concat([self.cond_list(first[x["name"]], lit(x)) for x in p["containers"]]))
            inits.append(concat(mine))
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
                per.append(concat(items))
            lists[key] = self.var("vols" if key == "volumes" else "secrets", self.in_order(per))
        # mounts and env for the app containers: one list each, first config wins by mountPath / name
        app: dict[str, str] = {}
        for key, by in (("volumeMounts", "mountPath"), ("env", "name")):
            who = self._by_name(key, by)
            per = [concat([self.cond_list(self.first(i, who[x[by]]), lit(x)) for x in p[key]])
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
                    patches.append(f"({cond} ? [{patch(pointer('metadata', key, k), lit(v))}] : [])")
                    rec.append(self.cond_list(cond, cel_string(orjson.dumps(k).decode())))
                recorded.append(concat(rec))
            maps[key] = (patches, recorded)
        dc = DEFAULT_CONTAINER_ANNOTATION
        dc_cond = f"{v_ctrs}.size() > 0 && !object.metadata.?annotations[{cel_string(dc)}].hasValue()"
        ann_keys = self.var("annAdded", concat([self.in_order(maps["annotations"][1]),
                                                 f"({dc_cond} ? [{cel_string(orjson.dumps(dc).decode())}] : [])"]))
        lab_keys = self.var("labAdded", self.in_order(maps["labels"][1]))
        status = self._status(v_inits, v_ctrs, lists, app, lab_keys, ann_keys)
        ops = []
        label_any = " || ".join(f"{V}c{i}" for i, p in enumerate(self.parts) if p["labels"])
        if label_any:
            ops.append(f"(!has(object.metadata.labels) && ({label_any}) ? "
                       f"[{patch('/metadata/labels', '{}')}] : [])")
        ops += maps["labels"][0]
        ops.append(f"(!has(object.metadata.annotations) ? [{patch('/metadata/annotations', '{}')}] : [])")
        ops += maps["annotations"][0]
        ops.append(f"({dc_cond} ? [{patch(pointer('metadata', 'annotations', dc), 'object.spec.containers[0].name')}]"
                   " : [])")
        ops.append(f"[{patch(pointer('metadata', 'annotations', s.status_key), status)}]")
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
                   f"[{patch('/spec/initContainers', v_inits)}] : "
                   f"{v_inits}.map(c, JSONPatch{{op: 'add', path: '/spec/initContainers/' + "
                   f"string({v_inits}.map(x, x.name).indexOf(c.name)), value: c}}))")
        ops.append(f"{v_ctrs}.map(c, {patch('/spec/containers/-', 'c')})")
        for key, var in lists.items():
            ops.append(f"({var}.size() == 0 ? [] : !has({spec}.{key}) ? [{patch('/spec/' + key, var)}] : "
                       f"{var}.map(x, {patch('/spec/' + key + '/-', 'x')}))")
        return f"!({any_chosen}) ? [] :\n" + " +\n".join(ops)

    def _status(self, inits: str, ctrs: str, lists: dict[str, str], app: dict[str, str], lab: str, ann: str) -> str:
        """The status annotation: the core's own value for the injected names (hash, digests; looked
        up in the table of :func:`status_heads`), with the ``added`` record (what this pod got, by
        name) built in CEL in the core's format."""
        names = self.var("names", self.in_order([f"[{cel_string(c.name)}]" for c in self.cfgs]))
        table = status_heads(self.cfgs)
        head = "{" + ", ".join(f"{cel_string(k)}: {cel_string(v)}" for k, v in table.items()) + "}"
        ni = "c.name"
        parts = [
            f"({lab}.size() > 0 ? ['\"labels\":[' + {lab}.join(',') + ']'] : [])",
            f"({ann}.size() > 0 ? ['\"annotations\":[' + {ann}.join(',') + ']'] : [])",
        ]
        for key, var in (("initContainers", inits), ("containers", ctrs), *lists.items()):
            parts.append(f"({var}.size() > 0 ? ['\"{key}\":[' + {var}.map(c, {json_quote(ni)}).join(',') + ']'] : [])")
        if app:
            pieces = []
            conds = []
            for key, by in (("volumeMounts", "mountPath"), ("env", "name")):
                app_var = app.get(key)
                if app_var is None:
                    continue
                lacking = f"{app_var}.filter(m, !c.?{key}.orValue([]).exists(x, x.{by} == m.{by}))"
                conds.append(f"{lacking}.size() > 0")
                pieces.append(f"({lacking}.size() > 0 ? ['\"{key}\":[' + {lacking}.map(m, {json_quote('m.' + by)})"
                              ".join(',') + ']'] : [])")
            into = self.var("into", f"object.spec.containers.filter(c, {' || '.join(conds)}).map(c, "
                                    f"{json_quote('c.name')} + ':{{' + ({' + '.join(pieces)}).join(',') + '}}')")
            parts.append(f"({into}.size() > 0 ? ['\"into\":{{' + {into}.join(',') + '}}'] : [])")
        added = self.var("added", "'{' + (" + " + ".join(parts) + ").join(',') + '}'")
        return f"{head}[{names}.join(',')] + {added} + '}}'"
