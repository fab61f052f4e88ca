"""Property-based tests of the injection core (Hypothesis).

Strategies generate realistic pods (labels and annotations whose keys contain ``/`` and ``~``,
absent versus empty lists and maps, unknown fields at several levels) and SidecarConfig sets
(defaults and requested configs, native sidecars, selectors, namespaces, templates, names
that collide with the pod's). The properties are the rules of issue 2 and of the protocol
notes (sections 2.3 and 8):

(a) the patch, applied with apiserver semantics (the independent ``jsonpatch`` library, and our
    ``apply_patch``) to the pod with empty lists/maps absent, gives the mutated pod;
(b) injection is idempotent, also after apiserver defaulting and after another webhook;
(c) nothing of the original pod is lost or reordered, and injected items are where they belong;
(d) skipped pods (opt-out, mirror pods, non-CREATE, non-pods) get no patch;
(e) the mutated pod validates against the Pod schema (strict) when the input did;
(f) every op is an ``add`` whose parent exists when it is applied, with no ``-``, no negative
    index, properly escaped keys, and no overwrite of anything the pod had;
(g) ``review()`` answers any input with a well-formed AdmissionReview or raises InvalidReview.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import kubernetes_validate
import orjson
import pytest
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

from sidecar_injector.core.admission import ReviewResult, review
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InvalidReview
from sidecar_injector.core.inject import (
    DEFAULT_CONTAINER_ANNOTATION,
    INJECTED,
    MIRROR_ANNOTATION,
    MIRROR_POD,
    OPTED_OUT,
    InjectionResult,
    inject,
)
from sidecar_injector.core.parse import parse_configs
from sidecar_injector.core.patch import apply_patch, escape, strip_empty, unescape

KUBE_VERSION = "1.37.0"
PREFIX = "sidecar-injector.io"
INJECT_KEY = f"{PREFIX}/inject"
EXCLUDE_KEY = f"{PREFIX}/exclude"
STATUS_KEY = f"{PREFIX}/status"

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain" phase
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SLOW_SETTINGS = settings(SETTINGS, max_examples=40)
QUICK_SETTINGS = settings(SETTINGS, max_examples=100)

NAMESPACES = ["default", "prod", "team-a"]
# Keys with "/" and "~" (escaped as ~1 and ~0 in patch paths); some shared by selectors,
# the pod's labels and the labels configs add. Configs only add keys the apiserver accepts
# (qualified names: no "~"); pods may carry anything.
SELECTOR_KEYS = ["app", "tier", "example.com/team", "odd.example.com/key"]
POD_LABEL_KEYS = [*SELECTOR_KEYS, "version", "app.kubernetes.io/name", "a/b~c"]
# Label keys configs add. The "independent" variant never overlaps SELECTOR_KEYS, so a
# config's labels cannot change another config's selector decision (the idempotence bugs fixed
# in 6945edd and 6f2faf9 lived there; the general strategy chains such configs on purpose).
CONFIG_LABEL_KEYS = ["injected-by", "tier", "example.com/team", "odd.example.com/key", "app"]
CONFIG_LABEL_KEYS_INDEPENDENT = ["injected-by", "mesh.example.com/member", "sidecar.example.com/x", "x.example/1"]
LABEL_VALUES = ["web", "api", "v1", "v2", "", "true"]
ANNOTATION_KEYS = [
    *POD_LABEL_KEYS, "envoy.version", "prometheus.io/scrape", "ann.example.com/x~y", "~0~1", "/leading",
]
CONFIG_ANNOTATION_KEYS = [
    "proxy.example.com/config", "x.y/z", "envoy.version", f"{PREFIX}/extra", "prometheus.io/scrape",
]

POD_CONTAINER_NAMES = ["app", "web", "worker", "envoy", "log-shipper"]
POD_INIT_NAMES = ["init-db", "migrate", "vault-agent"]
CONFIG_CONTAINER_NAMES = ["envoy", "log-shipper", "vault-agent", "init-net", "metrics", "app", "proxy-init"]
POD_VOLUME_NAMES = ["data", "shared", "envoy-config", "certs"]
CONFIG_VOLUME_NAMES = ["shared", "envoy-config", "vault-secrets", "certs", "sock"]
MOUNT_PATHS = ["/data", "/shared", "/etc/envoy", "/vault/secrets", "/certs", "/var/run/sock"]
ENV_NAMES = ["LOG_LEVEL", "PROXY_PORT", "VAULT_ADDR", "POD_NS"]
CONFIG_NAMES = ["envoy", "log-shipper", "vault", "metrics", "hello.v2"]
SECRET_NAMES = ["regcred", "mirror-cred"]

TEMPLATE_READ_ANNOTATIONS = {"envoy.version", "odd~key", "agent.example.com/tag"}
IMAGES = [
    "busybox:1.36",
    "envoyproxy/envoy:{{ annotations['envoy.version'] | default('v1.31.0') }}",
    "img:{{ labels['app'] | default('x') }}",
    "repo/{{ namespace }}/agent:1",
    "{{ labels['example.com/team'] | default('core') }}/tool:{{ annotations['odd~key'] | default('v') }}",
]
ENV_VALUES = [
    "1", "debug", "{{ namespace }}", "{{ labels['app'] | default('none') }}",
    "{{ pod.metadata.generateName | default('') }}",
]

# Unknown fields (newer Kubernetes versions, alpha fields) that must survive untouched.
UNKNOWN_VALUES = st.one_of(
    st.integers(-5, 5), st.text(max_size=5), st.just({"nested": [1, {"deep": None}], "empty": []}), st.just([])
)


# ---------------------------------------------------------------------------- strategies


def _three_way(draw: st.DrawFn, some: st.SearchStrategy[Any], empty: Any) -> Any:
    """ABSENT (returned as the sentinel ``...``), the empty value, or a drawn value."""
    choice = draw(st.sampled_from(["absent", "empty", "some", "some"]))
    if choice == "absent":
        return ...
    if choice == "empty":
        return copy.deepcopy(empty)
    return draw(some)


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not ...:
        d[key] = value


@st.composite
def containers(draw: st.DrawFn, names: list[str], *, valid: bool, app: bool) -> list[dict[str, Any]]:
    out = []
    for name in names:
        c: dict[str, Any] = {"name": name, "image": draw(st.sampled_from(["nginx:1.27", "app:v1", "alpine"]))}
        if draw(st.booleans()):
            c["ports"] = [{"containerPort": draw(st.integers(1, 65535))}]
        mount_paths = st.lists(st.sampled_from(MOUNT_PATHS), unique=True, max_size=3)
        mounts = _three_way(draw, mount_paths.map(
            lambda ps: [{"name": POD_VOLUME_NAMES[i % len(POD_VOLUME_NAMES)], "mountPath": p} for i, p in enumerate(ps)]
        ), [])
        _put(c, "volumeMounts", mounts)
        env = _three_way(draw, st.lists(st.sampled_from(ENV_NAMES), unique=True, max_size=3).map(
            lambda ns: [{"name": n, "value": f"pod-{n.lower()}"} for n in ns]
        ), [])
        _put(c, "env", env)
        if app and draw(st.booleans()):
            c["args"] = ["--flag"]
        if not valid and draw(st.integers(0, 4)) == 0:
            c["futureContainerField"] = draw(UNKNOWN_VALUES)
        out.append(c)
    return out


@st.composite
def pods(draw: st.DrawFn, *, valid: bool = False, min_containers: int = 0, requests: bool = True) -> dict[str, Any]:
    """A pod as the apiserver would send it at CREATE (plus unknown fields unless ``valid``)."""
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["name"] = "pod-" + draw(st.sampled_from(["a", "b", "x1"]))
    else:
        meta["generateName"] = "web-7d4b9c-"
    if draw(st.booleans()):
        meta["namespace"] = draw(st.sampled_from(NAMESPACES))
    label_maps = st.dictionaries(st.sampled_from(POD_LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=4)
    _put(meta, "labels", _three_way(draw, label_maps, {}))
    annotation_maps = st.dictionaries(
        st.sampled_from(ANNOTATION_KEYS), st.one_of(st.sampled_from(["v1.30.1", "true", ""]), st.text(max_size=12)),
        max_size=4,
    )
    annotations = _three_way(draw, annotation_maps, {})
    if isinstance(annotations, dict):
        # The values templates read end up in images: keep them ones the apiserver accepts there
        # (no leading or trailing whitespace); a bad rendered value is tested in tests/unit.
        for key in TEMPLATE_READ_ANNOTATIONS & set(annotations):
            annotations[key] = annotations[key].strip()
    if requests and draw(st.integers(0, 2)) > 0:
        annotations = {} if annotations is ... else dict(annotations)
        names = draw(st.lists(st.sampled_from([*CONFIG_NAMES, *CONFIG_NAMES, "no-such-config"]), max_size=3))
        annotations[INJECT_KEY] = draw(st.sampled_from([
            ",".join(names), ",".join(names), " , ".join(names) + " ", "true", "",
        ]))
        if draw(st.integers(0, 3)) == 0:
            annotations[EXCLUDE_KEY] = ",".join(draw(st.lists(st.sampled_from([*CONFIG_NAMES, "nope"]), max_size=2)))
    if requests and draw(st.integers(0, 5)) == 0:
        # Already through an injector: a readable status (some configs injected) or garbage.
        annotations = {} if annotations is ... else dict(annotations)
        names = draw(st.lists(st.sampled_from([*CONFIG_NAMES, "retired-config"]), unique=True, max_size=2))
        annotations[STATUS_KEY] = draw(st.sampled_from([
            json.dumps({"injected": names, "hash": "sha256:" + "ab" * 32}, separators=(",", ":")),
            json.dumps({"injected": names}), "not json", '{"injected":"envoy"}', "[]", '{"injected":[1]}', "",
        ]))
    _put(meta, "annotations", annotations)
    if not valid and draw(st.integers(0, 3)) == 0:
        meta["futureMetaField"] = draw(UNKNOWN_VALUES)
    if draw(st.booleans()):
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "u-1"}]

    names = draw(st.lists(st.sampled_from(POD_CONTAINER_NAMES), unique=True, min_size=min_containers, max_size=3))
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["restartPolicy"] = draw(st.sampled_from(["Always", "OnFailure", "Never"]))
    if draw(st.integers(0, 4)) == 0:
        spec["hostNetwork"] = draw(st.booleans())
    init_names = st.lists(st.sampled_from(POD_INIT_NAMES), unique=True, min_size=1, max_size=2)
    inits = _three_way(draw, init_names.flatmap(lambda ns: containers(ns, valid=valid, app=False)), [])
    _put(spec, "initContainers", inits)
    spec["containers"] = draw(containers(names, valid=valid, app=True))
    volume_lists = st.lists(st.sampled_from(POD_VOLUME_NAMES), unique=True, min_size=1, max_size=3).map(
        lambda ns: [{"name": n, "emptyDir": {}} if i % 2 == 0 else {"name": n, "configMap": {"name": "cm-" + n}}
                    for i, n in enumerate(ns)]
    )
    vols = _three_way(draw, volume_lists, [])
    if not valid and vols is not ... and vols and draw(st.booleans()):
        vols[0]["futureVolumeField"] = draw(UNKNOWN_VALUES)
    _put(spec, "volumes", vols)
    secrets = _three_way(draw, st.lists(st.sampled_from(SECRET_NAMES), unique=True, min_size=1).map(
        lambda ns: [{"name": n} for n in ns]), [])
    _put(spec, "imagePullSecrets", secrets)
    if draw(st.booleans()):
        spec["serviceAccountName"] = "sa"
    if not valid and draw(st.integers(0, 3)) == 0:
        spec["futureSpecField"] = draw(UNKNOWN_VALUES)
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if not valid and draw(st.integers(0, 3)) == 0:
        pod["futureTopField"] = draw(UNKNOWN_VALUES)
    if draw(st.booleans()):
        pod["status"] = {}
    return pod


@st.composite
def selectors(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["none", "none", "none", "empty", "labels", "expressions"]))
    if kind == "none":
        return ...
    if kind == "empty":
        return {}
    if kind == "labels":
        return {"matchLabels": draw(st.dictionaries(
            st.sampled_from(SELECTOR_KEYS), st.sampled_from(LABEL_VALUES), min_size=1, max_size=2))}
    exprs = []
    for key in draw(st.lists(st.sampled_from(SELECTOR_KEYS), min_size=1, max_size=2, unique=True)):
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expr: dict[str, Any] = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2, unique=True))
        exprs.append(expr)
    return {"matchExpressions": exprs}


@st.composite
def config_doc(draw: st.DrawFn, name: str, *, independent: bool = False) -> dict[str, Any]:
    """One SidecarConfig document as a user writes it (a YAML-like dict)."""
    spec: dict[str, Any] = {}
    default = draw(st.sampled_from([True, True, False, ...]))
    _put(spec, "injectByDefault", default)
    native = draw(st.booleans())
    if native or draw(st.booleans()):
        spec["nativeSidecar"] = native
    _put(spec, "selector", draw(selectors()))
    if draw(st.integers(0, 3)) == 0:
        spec["hostNetwork"] = draw(st.sampled_from(["skip", "inject"]))
    if draw(st.integers(0, 2)) == 0:
        spec["runToCompletion"] = draw(st.sampled_from(["native", "skip", "inject"]))
    if draw(st.integers(0, 3)) == 0:
        spec["namespaces"] = draw(st.lists(st.sampled_from(NAMESPACES), unique=True, max_size=2))
    label_keys = CONFIG_LABEL_KEYS_INDEPENDENT if independent else CONFIG_LABEL_KEYS
    if draw(st.booleans()):
        spec["labels"] = draw(st.dictionaries(
            st.sampled_from(label_keys),
            st.sampled_from(["true", "web", name, "{{ labels['app'] | default('x') }}", "{{ namespace }}"]),
            max_size=2))
    if draw(st.booleans()):
        spec["annotations"] = draw(st.dictionaries(
            st.sampled_from(CONFIG_ANNOTATION_KEYS),
            st.sampled_from(["on", "{{ annotations['envoy.version'] | default('v1') }}", ""]), max_size=2))
    names = draw(st.lists(st.sampled_from(CONFIG_CONTAINER_NAMES), unique=True, max_size=3))
    split = draw(st.integers(0, len(names)))
    volume_names = draw(st.lists(st.sampled_from(CONFIG_VOLUME_NAMES), unique=True, max_size=2))

    def container(cname: str, init: bool) -> dict[str, Any]:
        c: dict[str, Any] = {"name": cname, "image": draw(st.sampled_from(IMAGES))}
        if draw(st.booleans()):
            c["args"] = ["--name", "{{ pod.metadata.name | default('unnamed') }}"]
        if draw(st.booleans()):
            c["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
        if not init and draw(st.booleans()):
            c["ports"] = [{"containerPort": 15000 + draw(st.integers(0, 99)), "name": "admin"}]
        if volume_names and draw(st.booleans()):
            c["volumeMounts"] = [{"name": volume_names[0], "mountPath": "/sidecar/" + volume_names[0]}]
        if not init and draw(st.booleans()):
            c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 15021}}
        if draw(st.booleans()):
            c["securityContext"] = {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
        return c

    if split:
        spec["initContainers"] = [container(n, True) for n in names[:split]]
    elif draw(st.booleans()):
        spec["initContainers"] = []
    if names[split:]:
        spec["containers"] = [container(n, False) for n in names[split:]]
    if volume_names:
        spec["volumes"] = [{"name": v, "emptyDir": {}} for v in volume_names]
    mounts = draw(st.lists(st.sampled_from(MOUNT_PATHS), unique=True, max_size=2))
    if mounts and volume_names:
        # Mounts name the config's own volumes: a mount of a volume the pod may lack is an
        # injection error (the apiserver would refuse the pod), tested in tests/unit.
        spec["volumeMounts"] = [
            {"name": volume_names[i % len(volume_names)], "mountPath": p} for i, p in enumerate(mounts)
        ]
    env = draw(st.lists(st.sampled_from(ENV_NAMES), unique=True, max_size=2))
    if env:
        spec["env"] = [{"name": e, "value": draw(st.sampled_from(ENV_VALUES))} for e in env]
    if draw(st.integers(0, 3)) == 0:
        spec["imagePullSecrets"] = [{"name": draw(st.sampled_from(SECRET_NAMES))}]
    if not any(spec.get(k) for k in ("labels", "annotations", "initContainers", "containers", "volumes",
                                      "volumeMounts", "env", "imagePullSecrets")):
        spec["labels"] = {"injected-by": name}
    return {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": name}, "spec": spec}


@st.composite
def config_docs(draw: st.DrawFn, *, independent: bool = False) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(CONFIG_NAMES), unique=True, min_size=1, max_size=4))
    docs = [draw(config_doc(n, independent=independent)) for n in names]
    if not independent and len(docs) > 1 and draw(st.booleans()):
        # Chain two configs: one selects on a label the other adds (in either load order).
        a, b = draw(st.lists(st.sampled_from(range(len(docs))), min_size=2, max_size=2, unique=True))
        key = draw(st.sampled_from(SELECTOR_KEYS))
        docs[b]["spec"].setdefault("labels", {})[key] = "true"
        docs[a]["spec"]["selector"] = draw(st.sampled_from([
            {"matchLabels": {key: "true"}},
            {"matchExpressions": [{"key": key, "operator": "Exists"}]},
            {"matchExpressions": [{"key": key, "operator": "In", "values": ["true", "web"]}]},
            {"matchExpressions": [{"key": key, "operator": "DoesNotExist"}]},
        ]))
    return docs


def load(docs: list[dict[str, Any]], validate_pod: Any = None) -> ConfigSet:
    return parse_configs([(f"cfg-{i}.yaml, document 1", d) for i, d in enumerate(docs)], schema=validate_pod)


# ---------------------------------------------------------------------------- helpers


def wire(value: Any) -> Any:
    """A JSON round trip: what goes over the wire, and a deep copy free of aliasing."""
    return json.loads(json.dumps(value))


def apiserver_apply(pod: dict[str, Any], patch: list[Any]) -> Any:
    """Apply with the independent jsonpatch library to the apiserver's view of the pod."""
    return jsonpatch.apply_patch(strip_empty(wire(pod)), wire(patch))


def simulate_defaulting(pod: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver adds to every container after admission (a subset)."""
    pod = wire(pod)
    for key in ("initContainers", "containers"):
        for c in pod.get("spec", {}).get(key) or []:
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", "IfNotPresent")
    pod["spec"].setdefault("dnsPolicy", "ClusterFirst")
    pod["spec"].setdefault("schedulerName", "default-scheduler")
    return pod


def other_webhook(pod: dict[str, Any]) -> dict[str, Any]:
    """Another mutating webhook appends its own container and volume after ours."""
    pod = wire(pod)
    spec = pod["spec"]
    spec["containers"] = [*(spec.get("containers") or []), {"name": "other-agent", "image": "other:1"}]
    spec["volumes"] = [*(spec.get("volumes") or []), {"name": "other-vol", "emptyDir": {}}]
    meta = pod.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), "other.example.com/injected": "yes"}
    return pod


def is_subsequence(small: list[Any], big: list[Any]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def check_ops(pod: dict[str, Any], patch: list[Any]) -> None:
    """(f): add only; parent present when applied; no '-', no negative index; escaped keys;
    never overwrites a key the pod already had."""
    doc = strip_empty(wire(pod))
    for op in patch:
        assert op["op"] == "add", op
        assert set(op) == {"op", "path", "value"}, op
        path = op["path"]
        assert path.startswith("/"), op
        raw_tokens = path[1:].split("/")
        for raw in raw_tokens:
            # every "~" is an escape (~0 or ~1); escaping round-trips
            assert raw.replace("~0", "").replace("~1", "").count("~") == 0, path
            assert escape(unescape(raw)) == raw, path
        tokens = [unescape(t) for t in raw_tokens]
        parent: Any = doc
        for t in tokens[:-1]:
            if isinstance(parent, dict):
                assert t in parent, f"{path}: parent missing at {t!r} in the apiserver's view"
                parent = parent[t]
            else:
                assert isinstance(parent, list), path
                assert t.isdigit() and int(t) < len(parent), path
                parent = parent[int(t)]
        last = tokens[-1]
        if isinstance(parent, list):
            assert last != "-", path
            assert last.isdigit(), f"{path}: not a non-negative index"
            assert int(last) <= len(parent), path
        else:
            assert isinstance(parent, dict), f"{path}: parent is not a container"
            # Nothing the pod had is overwritten; the injector's own status annotation is updated.
            if path != "/metadata/annotations/" + escape(STATUS_KEY):
                assert last not in parent, f"{path}: overwrites {parent[last]!r}"
        doc = jsonpatch.apply_patch(doc, [wire(op)])


def check_preserved(orig: dict[str, Any], res: dict[str, Any], result: InjectionResult) -> None:
    """(c): nothing of the original pod lost or reordered; injected items where they belong."""
    assert is_subsequence(list(orig), list(res))
    for k, v in orig.items():
        if k not in ("metadata", "spec"):
            assert res[k] == v, k
    om, rm = orig.get("metadata") or {}, res.get("metadata") or {}
    assert is_subsequence(list(om), list(rm))
    for k, v in om.items():
        if k in ("labels", "annotations") and isinstance(v, dict):
            assert is_subsequence(list(v), list(rm[k])), k
            for kk, vv in v.items():
                if not (k == "annotations" and kk == STATUS_KEY and result.injected):
                    assert rm[k][kk] == vv, (k, kk)
        else:
            assert rm[k] == v, k
    os_, rs = orig["spec"], res["spec"]
    assert is_subsequence(list(os_), list(rs))
    for k, v in os_.items():
        if k not in ("containers", "initContainers", "volumes", "imagePullSecrets"):
            assert rs[k] == v, k
    # The pod's own init containers: last, in order, each keeping every field (a sidecar the
    # pod declares gets the fields it lacks); injected ones before them.
    oi = os_.get("initContainers") or []
    ri = rs.get("initContainers") or []
    for o, r in zip(oi, ri[len(ri) - len(oi):], strict=True):
        for k, v in o.items():
            assert r[k] == v if not isinstance(v, list) else r[k][: len(v)] == v, k
    # The pod's own containers: first, in order; each keeps every field; mounts/env only appended.
    oc, rc = os_["containers"], rs["containers"]
    assert len(rc) >= len(oc)
    for o, r in zip(oc, rc, strict=False):
        assert is_subsequence(list(o), list(r))
        for k, v in o.items():
            if k in ("volumeMounts", "env", "ports") and isinstance(v, list):
                assert r[k][: len(v)] == v, k
            else:
                assert r[k] == v, k
        added_paths = [m["mountPath"] for m in (r.get("volumeMounts") or [])[len(o.get("volumeMounts") or []):]]
        own_paths = [m["mountPath"] for m in o.get("volumeMounts") or []]
        assert not set(added_paths) & set(own_paths)
        assert len(set(added_paths)) == len(added_paths)
        added_env = [e["name"] for e in (r.get("env") or [])[len(o.get("env") or []):]]
        assert not set(added_env) & {e["name"] for e in o.get("env") or []}
        assert len(set(added_env)) == len(added_env)
    for k in ("volumes", "imagePullSecrets"):
        ov = os_.get(k) or []
        assert (rs.get(k) or [])[: len(ov)] == ov, k
    # Names stay unique across containers and init containers, and volumes.
    all_names = [c["name"] for c in ri + rc]
    assert len(all_names) == len(set(all_names)), all_names
    vol_names = [v["name"] for v in rs.get("volumes") or []]
    assert len(vol_names) == len(set(vol_names)), vol_names
    # Injected regular sidecars sit after the pod's containers; the default container is the app.
    if len(rc) > len(oc) and oc and DEFAULT_CONTAINER_ANNOTATION not in (om.get("annotations") or {}):
        assert rm["annotations"][DEFAULT_CONTAINER_ANNOTATION] == oc[0]["name"]
    # The status annotation records what was injected.
    if result.injected:
        status = json.loads(rm["annotations"][STATUS_KEY])
        assert status["injected"][-len(result.injected):] == list(result.injected)
        assert status["hash"].startswith("sha256:")


def check_injected_items(configs: ConfigSet, pod: dict[str, Any], result: InjectionResult) -> None:
    """Every container/volume of an injected config is in the pod (its own or the pod's),
    and native sidecars are init containers with restartPolicy Always."""
    spec = result.pod["spec"]
    inits = {c["name"]: c for c in spec.get("initContainers") or []}
    conts = {c["name"]: c for c in spec.get("containers") or []}
    own = {c["name"] for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]}
    vols = {v["name"] for v in spec.get("volumes") or []}
    taken = set(own)  # names the pod or an earlier config already had
    for name in result.injected:
        cfg = configs.by_name[name]
        for c in cfg.init_containers.static:
            assert c["name"] in inits or c["name"] in conts
            if c["name"] not in taken:
                assert c["name"] in inits and inits[c["name"]].get("restartPolicy") is None
            taken.add(c["name"])
        completes = pod["spec"].get("restartPolicy") in ("Never", "OnFailure")
        for c in cfg.containers.static:
            assert c["name"] in inits or c["name"] in conts
            if c["name"] not in taken:
                if cfg.native_sidecar or (completes and cfg.run_to_completion == "native"):
                    assert c["name"] in inits and inits[c["name"]]["restartPolicy"] == "Always"
                else:
                    assert c["name"] in conts
            taken.add(c["name"])
        for v in cfg.volumes.static:
            assert v["name"] in vols
    # Injected init containers come before the pod's own.
    order = [c["name"] for c in spec.get("initContainers") or []]
    own_inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
    injected_inits = [n for n in order if n not in own_inits]
    assert order == injected_inits + own_inits


# ---------------------------------------------------------------------------- (a) (c) (f)


@SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_patch_applies_with_apiserver_semantics(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    configs = load(docs)
    before = wire(pod)
    result = inject(pod, namespace, configs)
    note(f"patch: {json.dumps(result.patch, indent=1)}")
    assert pod == before, "inject modified its input"
    expected = strip_empty(wire(result.pod))
    assert apiserver_apply(pod, result.patch) == expected
    assert apply_patch(strip_empty(wire(pod)), wire(result.patch)) == expected
    # The patch is JSON-serialisable as the webhook sends it.
    assert orjson.loads(orjson.dumps(result.patch)) == wire(result.patch)
    if not result.patch:
        assert result.pod == pod
        assert not result.injected
    # The webhook's patch-only mode (no mutated copy, values shared) emits the same patch.
    quick = inject(pod, namespace, configs, patch_only=True)
    assert pod == before, "inject(patch_only=True) modified its input"
    assert orjson.dumps(quick.patch) == orjson.dumps(result.patch)
    assert quick[2:] == result[2:]  # decisions, warnings, skip reason, injected


@SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_patch_ops_are_safe_adds(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    result = inject(pod, namespace, load(docs))
    check_ops(pod, result.patch)


@SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_nothing_lost_or_reordered(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    configs = load(docs)
    orig = wire(pod)
    result = inject(pod, namespace, configs)
    check_preserved(orig, wire(result.pod), result)
    check_injected_items(configs, orig, result)
    # The decisions cover every loaded config exactly once.
    decided = [d.config for d in result.decisions if d.config in configs.by_name]
    assert sorted(decided) == sorted(configs.by_name)
    assert {d.config for d in result.decisions if d.reason == INJECTED} == set(result.injected)


@pytest.mark.parametrize("metadata", [..., None])
def test_patch_ops_never_rewrite_what_they_added(metadata: Any) -> None:
    """CORE BUG 3 (fixed in 5490d9c): with metadata absent or null, ``add /metadata`` was recorded with the very
    dict the later label/annotation ops then filled in, so the patch overwrote its own keys."""
    doc = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "a"},
           "spec": {"injectByDefault": True, "labels": {"x": "y"}}}
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "app", "image": "a"}]}}
    _put(pod, "metadata", metadata)
    result = inject(pod, "default", load([doc]))
    assert result.patch[0] == {"op": "add", "path": "/metadata", "value": {}} or len(result.patch) == 1
    check_ops(pod, result.patch)
    assert apiserver_apply(pod, result.patch) == strip_empty(wire(result.pod))


def _containers_in(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every dict and list in ``doc`` with its path."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(doc, (dict, list)):
        out.append((path, doc))
        items = doc.items() if isinstance(doc, dict) else enumerate(doc)
        for k, v in items:
            out.extend(_containers_in(v, (*path, k)))
    return out


@st.composite
def add_ops(draw: st.DrawFn, doc: Any) -> list[dict[str, Any]]:
    """``add`` ops against ``doc``: mostly valid (existing parent, index within 0..len or
    ``-``), some with a missing parent or an index past the end."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        path, parent = draw(st.sampled_from(_containers_in(doc)))
        tokens = [str(t) for t in path]
        if isinstance(parent, list):
            last = draw(st.sampled_from(["-", str(len(parent)), str(len(parent) + 1), "0"]))
        else:
            last = draw(st.sampled_from([*list(parent)[:3], "new", "a/b", "t~x", "~1"]))
        if draw(st.integers(0, 5)) == 0:
            tokens.append("missing")
        ops.append({"op": "add", "path": "".join("/" + escape(t) for t in [*tokens, last]),
                    "value": draw(st.sampled_from([1, "v", {"k": [1]}, [], {}]))})
    return ops


@SETTINGS
@given(data=st.data(), pod=pods())
def test_our_apply_patch_agrees_with_jsonpatch(data: st.DataObject, pod: dict[str, Any]) -> None:
    """Our apiserver-semantics applier (used by explain and tests) and the jsonpatch library
    agree on add ops with canonical indices: same result, or both refuse."""
    from sidecar_injector.core.patch import PatchError

    doc = strip_empty(wire(pod))
    ops = data.draw(add_ops(doc))
    try:
        theirs = jsonpatch.apply_patch(wire(doc), wire(ops))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        theirs = "refused"
    try:
        ours = apply_patch(wire(doc), wire(ops))
    except PatchError:
        ours = "refused"
    assert ours == theirs


def _vandalise(value: Any, seen: set[int]) -> None:
    """Mutate every dict and list reachable from ``value`` in place."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, dict):
        for v in list(value.values()):
            _vandalise(v, seen)
        value["vandalised"] = True
    elif isinstance(value, list):
        for v in list(value):
            _vandalise(v, seen)
        value.append("vandalised")


@QUICK_SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_results_share_nothing_with_the_configs(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    """A caller may modify what inject() returns (the pod and the patch) without changing what
    the next request gets: nothing in a result is the loaded config's own object."""
    configs = load(docs)
    first = inject(wire(pod), namespace, configs)
    reference = (wire(first.patch), wire(first.pod))
    _vandalise(first.pod, set())
    _vandalise(first.patch, set())
    again = inject(wire(pod), namespace, configs)
    assert (wire(again.patch), wire(again.pod)) == reference


# ---------------------------------------------------------------------------- a reference model

_JINJA = None


def _render(value: str, context: dict[str, Any]) -> str:
    global _JINJA
    if "{{" not in value and "{%" not in value:
        return value
    if _JINJA is None:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        _JINJA = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    return _JINJA.from_string(value).render(context)


def _render_tree(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _render(value, context)
    if isinstance(value, dict):
        return {k: _render_tree(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, context) for v in value]
    return value


def _selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": not (key in labels and labels[key] in values),
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _csv(value: Any) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else []


def _model_merge(mine: dict[str, Any], theirs: dict[str, Any], where: str) -> dict[str, Any]:
    """A pod's own container of a sidecar's name, with the sidecar's fields it lacks: the
    pod's win; env, mounts and ports merge item by item; nothing its kind may not have."""
    keys = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}
    out = copy.deepcopy(mine)
    restart = mine.get("restartPolicy", theirs.get("restartPolicy") if where == "initContainers" else None)
    for k, v in theirs.items():
        if k == "restartPolicy" and where == "containers":
            continue
        if k in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle") and where == "initContainers" \
                and restart != "Always":
            continue
        if out.get(k) is None:
            out[k] = v
        elif k in keys and isinstance(out[k], list):
            have = [i.get(keys[k]) for i in out[k]]
            out[k] = out[k] + [i for i in v if i.get(keys[k]) not in have]
    return out


def model_inject(pod: dict[str, Any], namespace: str, docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Issue 2's rules, written out independently and at the level of names: which configs
    apply in which order, and what the pod's lists, labels and annotations become.
    ``None`` when the pod is skipped. (Status annotations are not modelled: the strategies
    never generate one.)"""
    meta = pod.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    if MIRROR_ANNOTATION in annotations:
        return None
    for v in (annotations.get(INJECT_KEY), labels.get(INJECT_KEY)):
        if isinstance(v, str) and v.strip().lower() == "false":
            return None
    by_name = {d["metadata"]["name"]: d["spec"] for d in docs}
    requested = [n for n in dict.fromkeys(_csv(annotations.get(INJECT_KEY))) if n.lower() != "true"]
    excluded = set(_csv(annotations.get(EXCLUDE_KEY)))
    already: list[str] = []
    try:
        status = json.loads(annotations.get(STATUS_KEY, "null"))
        if isinstance(status, dict) and isinstance(status.get("injected"), list):
            if all(isinstance(n, str) for n in status["injected"]):
                already = status["injected"]
    except (ValueError, TypeError):
        pass
    order = [n for n, s in by_name.items() if s.get("injectByDefault")]
    order += [n for n in requested if n in by_name and n not in order]
    order = [n for n in order if n not in excluded and n not in already]
    pod_spec = pod.get("spec") or {}
    # hostNetwork pods: only configs that say inject. Pods that run to completion: configs
    # with regular sidecars go in as native sidecars, are skipped, or go in as they are.
    if pod_spec.get("hostNetwork") is True:
        order = [n for n in order if by_name[n].get("hostNetwork") == "inject"]
    as_native: set[str] = set()
    if pod_spec.get("restartPolicy") in ("Never", "OnFailure"):
        for n in list(order):
            s = by_name[n]
            if s.get("containers") and not s.get("nativeSidecar"):
                mode = s.get("runToCompletion", "native")
                if mode == "skip":
                    order.remove(n)
                elif mode == "native":
                    as_native.add(n)
    name = meta.get("name") or meta.get("generateName") or ""
    context = {"pod": pod, "name": name, "namespace": namespace, "labels": labels, "annotations": annotations}

    # Which configs: those whose selectors match the pod's labels, then, to a fixed point,
    # those that match once the labels of the configs chosen so far are added (a config's
    # labels can make another's selector match, and the next invocation would see them). Each
    # pass judges every config left against the same labels; a config chosen stays chosen.
    selected: set[str] = set()
    while True:
        added: dict[str, str] = {}
        for n in order:  # merged as the injection merges them: the pod's win, then earlier configs'
            if n in selected:
                for k, v in (by_name[n].get("labels") or {}).items():
                    added.setdefault(k, _render(v, context))
        now = {**added, **labels}
        new = [n for n in order if n not in selected
               and (not by_name[n].get("namespaces") or namespace in by_name[n]["namespaces"])
               and _selector_matches(by_name[n].get("selector"), now)]
        if not new:
            break
        selected.update(new)
    applied = [n for n in order if n in selected]
    if not applied:
        return {"injected": [], "changed": False, "requested": requested, "already": already}
    annotations.pop(STATUS_KEY, None)

    spec = pod["spec"]
    own_inits = [c["name"] for c in spec.get("initContainers") or []]
    own_containers = [c["name"] for c in spec["containers"]]
    taken = set(own_inits) | set(own_containers)
    declared = {c["name"]: ("initContainers", c) for c in spec.get("initContainers") or []}
    declared.update({c["name"]: ("containers", c) for c in spec["containers"]})
    merged: set[str] = set()
    vols = [v["name"] for v in spec.get("volumes") or []]
    secrets = [v["name"] for v in spec.get("imagePullSecrets") or []]
    new_inits: list[str] = []
    native: list[str] = []
    new_containers: list[str] = []
    new_labels: dict[str, str] = {}
    new_annotations: dict[str, str] = {}
    mounts: list[tuple[str, str]] = []
    env: list[str] = []
    content: dict[str, Any] = {}  # what each injected container and volume must be, rendered
    for n in applied:
        s = by_name[n]
        for k, v in (s.get("labels") or {}).items():
            if k not in labels and k not in new_labels:
                new_labels[k] = _render(v, context)
        for k, v in (s.get("annotations") or {}).items():
            if k not in annotations and k not in new_annotations and not k.startswith(PREFIX + "/"):
                new_annotations[k] = _render(v, context)
        is_native = bool(s.get("nativeSidecar")) or n in as_native
        for c in s.get("initContainers") or []:
            if c["name"] not in taken:
                taken.add(c["name"])
                new_inits.append(c["name"])
                content["container " + c["name"]] = _render_tree(c, context)
            elif c["name"] in declared and c["name"] not in merged:
                merged.add(c["name"])
                where, mine = declared[c["name"]]
                content["container " + c["name"]] = _model_merge(mine, _render_tree(c, context), where)
        for c in s.get("containers") or []:
            rendered = _render_tree(c, context)
            if is_native:
                rendered = {**rendered, "restartPolicy": rendered.get("restartPolicy", "Always")}
            if c["name"] not in taken:
                taken.add(c["name"])
                (new_inits if is_native else new_containers).append(c["name"])
                if is_native:
                    native.append(c["name"])
                content["container " + c["name"]] = rendered
            elif c["name"] in declared and c["name"] not in merged:
                merged.add(c["name"])
                where, mine = declared[c["name"]]
                content["container " + c["name"]] = _model_merge(mine, rendered, where)
        for v in s.get("volumes") or []:
            if v["name"] not in vols:
                vols.append(v["name"])
                content["volume " + v["name"]] = _render_tree(v, context)
        for v in s.get("imagePullSecrets") or []:
            if v["name"] not in secrets:
                secrets.append(v["name"])
        mounts += [(m["mountPath"], m["name"]) for m in s.get("volumeMounts") or []]
        env += [e["name"] for e in s.get("env") or []]
    if new_containers and DEFAULT_CONTAINER_ANNOTATION not in annotations and own_containers:
        new_annotations[DEFAULT_CONTAINER_ANNOTATION] = own_containers[0]
    per_container = []
    for c in spec["containers"]:
        if c["name"] in merged:  # a sidecar the pod declares: merged, not an app container
            per_container.append((None, None))
            continue
        have_paths = [m["mountPath"] for m in c.get("volumeMounts") or []]
        have_env = [e["name"] for e in c.get("env") or []]
        for path, _ in mounts:
            if path not in have_paths:
                have_paths.append(path)
        for name in env:
            if name not in have_env:
                have_env.append(name)
        per_container.append((have_paths, have_env))
    return {
        "injected": applied,
        "changed": True,
        "content": content,
        "requested": requested,
        "initContainers": new_inits + own_inits,
        "native": native,
        "containers": own_containers + new_containers,
        "volumes": vols,
        "imagePullSecrets": secrets,
        "labels": {**labels, **new_labels},
        "annotations": {**annotations, **new_annotations},
        "per_container": per_container,
        "status": already + applied,
        "already": already,
    }


def check_against_model(
    pod: dict[str, Any], namespace: str, docs: list[dict[str, Any]], result: InjectionResult
) -> None:
    want = model_inject(pod, namespace, docs)
    if want is None:
        assert result.patch == [] and result.injected == ()
        return
    assert list(result.injected) == want["injected"], f"injected {result.injected}, the model says {want['injected']}"
    # A requested config that is not injected (unknown, excluded, ruled out) is a warning.
    for n in want["requested"]:
        if n not in want["injected"] and n not in want["already"]:
            assert any(repr(n) in w for w in result.warnings), (n, result.warnings)
    if not want["changed"]:
        assert result.patch == []
        return
    res = result.pod
    spec = res["spec"]
    assert [c["name"] for c in spec.get("initContainers") or []] == want["initContainers"]
    for c in spec.get("initContainers") or []:
        if c["name"] in want["native"]:
            assert c["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == want["containers"]
    assert [v["name"] for v in spec.get("volumes") or []] == want["volumes"]
    assert [v["name"] for v in spec.get("imagePullSecrets") or []] == want["imagePullSecrets"]
    assert (res["metadata"].get("labels") or {}) == want["labels"]
    items = {"container " + c["name"]: c for c in (spec.get("initContainers") or []) + spec["containers"]}
    items.update({"volume " + v["name"]: v for v in spec.get("volumes") or []})
    for key, rendered in want["content"].items():
        assert items[key] == rendered, key
    got_annotations = dict(res["metadata"]["annotations"])
    status = json.loads(got_annotations.pop(STATUS_KEY))
    assert status["injected"] == want["status"]
    assert got_annotations == want["annotations"]
    for c, (paths, env) in zip(spec["containers"], want["per_container"], strict=False):
        if paths is None:
            continue
        assert [m["mountPath"] for m in c.get("volumeMounts") or []] == paths, c["name"]
        assert [e["name"] for e in c.get("env") or []] == env, c["name"]


@SETTINGS
@given(pod=pods(), docs=config_docs(independent=True), namespace=st.sampled_from(NAMESPACES))
def test_matches_reference_model(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    """The configs chosen, their order and what each list becomes, against the model."""
    check_against_model(pod, namespace, docs, inject(pod, namespace, load(docs)))


@SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_matches_reference_model_with_label_dependencies(
    pod: dict[str, Any], docs: list[Any], namespace: str
) -> None:
    """The same, where configs add labels other configs select on (CORE BUG 1 and 2)."""
    check_against_model(pod, namespace, docs, inject(pod, namespace, load(docs)))


# ---------------------------------------------------------------------------- (b) idempotence


def _assert_idempotent(pod: dict[str, Any], namespace: str, configs: ConfigSet) -> None:
    first = inject(pod, namespace, configs)
    mutated = wire(first.pod)
    for label, again in (
        ("as injected", mutated),
        ("after apiserver defaulting", simulate_defaulting(mutated)),
        ("after another webhook", other_webhook(simulate_defaulting(mutated))),
        ("after the apiserver's omitempty", strip_empty(mutated)),
    ):
        second = inject(again, namespace, configs)
        assert second.patch == [], f"{label}: second injection patched {second.patch} (injected {second.injected})"
        assert second.pod == again


@SETTINGS
@given(pod=pods(), docs=config_docs(independent=True), namespace=st.sampled_from(NAMESPACES))
def test_idempotent_when_configs_are_independent(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    """Idempotence where no config adds a label another config's selector looks at."""
    _assert_idempotent(pod, namespace, load(docs))


@SETTINGS
@given(pod=pods(), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_idempotent(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    """Idempotence in general, including configs that add labels other configs select on
    (CORE BUGS 1 and 2, fixed in 6945edd and 6f2faf9)."""
    _assert_idempotent(pod, namespace, load(docs))


def test_idempotent_when_a_config_adds_a_label_another_selects_on() -> None:
    """CORE BUG 1, minimal: config a adds foo=bar, config b selects foo=bar."""
    a = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "a"},
         "spec": {"injectByDefault": True, "labels": {"foo": "bar"}}}
    b = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "b"},
         "spec": {"injectByDefault": True, "selector": {"matchLabels": {"foo": "bar"}},
                  "containers": [{"name": "s", "image": "s"}]}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "app", "image": "app"}]}}
    _assert_idempotent(pod, "default", load([a, b]))


def test_idempotent_when_a_later_config_adds_the_label() -> None:
    """CORE BUG 2, minimal: config a (loaded first) selects foo=bar, config b (later) adds it.
    Run 1 injected b only; run 2 saw foo=bar and injected a (fixed in 6f2faf9)."""
    a = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "a"},
         "spec": {"injectByDefault": True, "selector": {"matchLabels": {"foo": "bar"}},
                  "containers": [{"name": "s", "image": "s"}]}}
    b = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "b"},
         "spec": {"injectByDefault": True, "labels": {"foo": "bar"}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "app", "image": "app"}]}}
    _assert_idempotent(pod, "default", load([a, b]))


# ---------------------------------------------------------------------------- (d) skips


OPT_OUT_VALUES = ["false", " false", "false "]  # "false"; whitespace ignored


@SETTINGS
@given(
    pod=pods(),
    docs=config_docs(),
    namespace=st.sampled_from(NAMESPACES),
    how=st.sampled_from(["annotation", "label", "both", "mirror"]),
    value=st.sampled_from(OPT_OUT_VALUES),
)
def test_skipped_pods_get_no_patch(
    pod: dict[str, Any], docs: list[Any], namespace: str, how: str, value: str
) -> None:
    configs = load(docs)
    meta = pod["metadata"]
    if how in ("annotation", "both"):
        meta["annotations"] = {**(meta.get("annotations") or {}), INJECT_KEY: value}
    if how in ("label", "both"):
        meta["labels"] = {**(meta.get("labels") or {}), INJECT_KEY: value}
    if how == "mirror":
        meta["annotations"] = {**(meta.get("annotations") or {}), MIRROR_ANNOTATION: "abc123"}
    result = inject(pod, namespace, configs)
    assert result.patch == []
    assert result.pod == pod
    assert result.injected == ()
    assert result.skip_reason == (MIRROR_POD if how == "mirror" else OPTED_OUT)
    assert all(d.reason == result.skip_reason for d in result.decisions)
    # The same through review(): allowed, no patch.
    body = review_body(pod, namespace=namespace)
    rr = review(body, configs)
    out = orjson.loads(rr.body)["response"]
    assert out["allowed"] is True and "patch" not in out and "patchType" not in out


def review_body(
    obj: Any, *, namespace: Any = "default", operation: Any = "CREATE", uid: Any = "u-123",
    api_version: str = "admission.k8s.io/v1", kind: Any = None, resource: Any = None, sub: Any = None,
) -> bytes:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": kind if kind is not None else {"group": "", "version": "v1", "kind": "Pod"},
        "resource": resource if resource is not None else {"group": "", "version": "v1", "resource": "pods"},
        "operation": operation,
        "namespace": namespace,
        "object": obj,
    }
    if sub is not None:
        request["subResource"] = sub
    return orjson.dumps({"apiVersion": api_version, "kind": "AdmissionReview", "request": request})


def _gvk(group: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": "v1", "kind": kind}


def _gvr(group: str, resource: str) -> dict[str, str]:
    return {"group": group, "version": "v1", "resource": resource}


NOT_PODS = [
    (_gvk("apps", "Deployment"), _gvr("apps", "deployments"), None),
    (_gvk("", "Pod"), _gvr("", "pods"), "status"),
    (_gvk("", "Pod"), _gvr("", "pods"), "ephemeralcontainers"),
    (_gvk("", "ConfigMap"), _gvr("", "configmaps"), None),
    (_gvk("example.com", "Pod"), _gvr("example.com", "pods"), None),
]


@QUICK_SETTINGS
@given(
    pod=pods(min_containers=1),
    docs=config_docs(),
    operation=st.sampled_from(["UPDATE", "DELETE", "CONNECT", "", "create"]),
    api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
)
def test_non_create_reviews_get_no_patch(
    pod: dict[str, Any], docs: list[Any], operation: str, api_version: str
) -> None:
    rr = review(review_body(pod, operation=operation, api_version=api_version), load(docs))
    out = orjson.loads(rr.body)
    assert out["apiVersion"] == api_version
    assert out["response"] == {"uid": "u-123", "allowed": True}
    assert rr.patch == b"" and rr.outcome == "skipped"


@QUICK_SETTINGS
@given(pod=pods(min_containers=1), docs=config_docs(), which=st.sampled_from(NOT_PODS))
def test_non_pods_get_no_patch(pod: dict[str, Any], docs: list[Any], which: Any) -> None:
    kind, resource, sub = which
    rr = review(review_body(pod, kind=kind, resource=resource, sub=sub), load(docs))
    assert orjson.loads(rr.body)["response"] == {"uid": "u-123", "allowed": True}
    assert rr.patch == b"" and rr.outcome == "skipped"


# ---------------------------------------------------------------------------- (e) schema


def validate(pod: dict[str, Any]) -> None:
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)


def is_valid(pod: dict[str, Any]) -> bool:
    try:
        validate(pod)
    except kubernetes_validate.ValidationError:
        return False
    return True


@SLOW_SETTINGS
@given(pod=pods(valid=True, min_containers=1), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_result_validates_against_pod_schema(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    assume(is_valid(pod))  # the strategy makes valid pods; this only guards the premise
    result = inject(pod, namespace, load(docs))
    validate(wire(result.pod))
    validate(strip_empty(wire(result.pod)))


_VALIDATOR: list[Any] = []


def real_validator() -> Any:
    if not _VALIDATOR:
        from sidecar_injector.config.schema import pod_schema

        _VALIDATOR.append(pod_schema())
    return _VALIDATOR[0]


@settings(SETTINGS, max_examples=25)
@given(pod=pods(valid=True, min_containers=1), docs=config_docs(), namespace=st.sampled_from(NAMESPACES))
def test_with_real_validator(pod: dict[str, Any], docs: list[Any], namespace: str) -> None:
    """Generated configs pass the real strict validation at load, and the whole chain holds."""
    configs = load(docs, validate_pod=real_validator())
    result = inject(pod, namespace, configs)
    validate(wire(result.pod))
    assert apiserver_apply(pod, result.patch) == strip_empty(wire(result.pod))
    check_ops(pod, result.patch)


def test_strategies_make_valid_pods() -> None:
    """The premise of the schema property: valid=True pods validate (checked over a sample)."""

    @settings(max_examples=30, deadline=None, database=None)
    @given(pods(valid=True, min_containers=1))
    def check(pod: dict[str, Any]) -> None:
        validate(pod)

    check()


# ---------------------------------------------------------------------------- (g) review()


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Places in a realistic pod where a malformed request could put garbage.
JUNK_PLACES = [
    ("metadata",), ("metadata", "labels"), ("metadata", "annotations"), ("spec",), ("spec", "containers"),
    ("spec", "containers", 0), ("spec", "containers", 0, "name"), ("spec", "containers", 0, "volumeMounts"),
    ("spec", "containers", 0, "env"), ("spec", "initContainers"), ("spec", "volumes"), ("spec", "imagePullSecrets"),
    ("metadata", "annotations", STATUS_KEY), ("metadata", "annotations", INJECT_KEY),
]


@st.composite
def objects(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["junk-in-pod", "junk-in-pod", "json", "absent"]))
    if kind == "absent":
        return ...
    if kind == "json":
        return draw(JSON_VALUES)
    pod = draw(pods())
    if kind == "junk-in-pod":
        place = draw(st.sampled_from(JUNK_PLACES))
        node: Any = pod
        for t in place[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(t, {}) if t in ("metadata", "spec", "annotations", "labels") else node.get(t)
            elif isinstance(node, list) and isinstance(t, int) and t < len(node):
                node = node[t]
            else:
                node = None
        last = place[-1]
        junk = draw(JSON_VALUES)
        if isinstance(node, dict):
            node[last] = junk
        elif isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = junk
    return pod


REVIEW_FIELDS = ["apiVersion", "kind", "request", "uid", "rkind", "resource", "subResource", "operation",
                 "namespace", "object", "extra"]


@st.composite
def review_docs(draw: st.DrawFn) -> Any:
    """A valid CREATE review of a pod, with none, one or two of its fields corrupted."""
    bad = draw(st.one_of(st.just(set()), st.sets(st.sampled_from(REVIEW_FIELDS), min_size=1, max_size=2)))

    def pick(field: str, good: Any, wrong: list[Any]) -> Any:
        return draw(st.sampled_from(wrong)) if field in bad else good

    doc: dict[str, Any] = {}
    version = draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
    _put(doc, "apiVersion", pick("apiVersion", version, ["admission.k8s.io/v2", "v1", ..., 1, None]))
    _put(doc, "kind", pick("kind", "AdmissionReview", ["Pod", ..., None, "admissionreview"]))
    if "request" in bad:
        _put(doc, "request", draw(st.one_of(st.just(...), JSON_VALUES)))
        return doc
    request: dict[str, Any] = {}
    _put(request, "uid", pick("uid", draw(st.sampled_from(["705ab4f5-6393-11e8-b7cc-42010a800002", "u"])),
                              ["", None, 7, ..., ["u"]]))
    _put(request, "kind", pick("rkind", {"group": "", "version": "v1", "kind": "Pod"}, [
        {"kind": "Pod"}, _gvk("apps", "Deployment"), "Pod", None, ..., {"group": 1, "kind": "Pod"},
    ]))
    _put(request, "resource", pick("resource", {"group": "", "version": "v1", "resource": "pods"}, [
        "pods", {"resource": "deployments"}, ..., {"resource": None}, [],
    ]))
    _put(request, "subResource", pick("subResource", ..., ["", "status", None, "binding", 0]))
    _put(request, "operation", pick("operation", "CREATE", ["UPDATE", "DELETE", "CONNECT", "", None, 3, ...]))
    _put(request, "namespace", pick("namespace", draw(st.sampled_from(NAMESPACES)), ["", None, 5, ..., {}]))
    _put(request, "object", draw(objects()) if "object" in bad else draw(pods()))
    if draw(st.booleans()):
        request["name"] = ""
        request["oldObject"] = None
        request["dryRun"] = draw(st.booleans())
        request["userInfo"] = {"username": "system:serviceaccount:kube-system:replicaset-controller"}
    if "extra" in bad:
        request[draw(st.text(max_size=6))] = draw(JSON_VALUES)
    doc["request"] = request
    return doc


def check_review_answer(body: bytes, rr: ReviewResult, on_error: str) -> None:
    request_doc = orjson.loads(body)
    request = request_doc["request"]
    if rr.status == 500:
        # on_error=fail: an HTTP error whose body is a Status; the failurePolicy decides.
        assert on_error == "fail"
        status = orjson.loads(rr.body)
        assert status["kind"] == "Status" and status["code"] == 500
        assert rr.outcome == "error"
        return
    assert rr.status == 200
    out = orjson.loads(rr.body)
    assert set(out) == {"apiVersion", "kind", "response"}
    assert out["apiVersion"] == request_doc["apiVersion"]
    assert out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == request["uid"]
    assert isinstance(resp["allowed"], bool)
    assert ("patch" in resp) == ("patchType" in resp)
    if not resp["allowed"]:
        assert on_error == "deny" and rr.outcome == "error"
        assert resp["status"]["code"] == 500
    for w in resp.get("warnings", []):
        assert isinstance(w, str) and len(w) <= 256
    if "patch" in resp:
        assert resp["patchType"] == "JSONPatch"
        patch = orjson.loads(base64.b64decode(resp["patch"], validate=True))
        assert isinstance(patch, list) and patch
        assert patch == orjson.loads(rr.patch)
        assert request.get("operation") == "CREATE"
        obj = request["object"]
        # (jsonpatch inserts the op's value object itself: give it a copy of the patch)
        patched = jsonpatch.apply_patch(strip_empty(wire(obj)), wire(patch))
        assert patched == strip_empty(apply_patch(strip_empty(wire(obj)), wire(patch)))
        check_ops(obj, patch)
    else:
        assert rr.patch == b""


ON_ERROR = st.sampled_from(["fail", "allow", "deny"])


def _run_review(body: bytes, configs: ConfigSet, on_error: Any) -> None:
    try:
        rr = review(body, configs, on_error=on_error)
    except InvalidReview as e:
        assert str(e) and "\n" not in str(e)
        return
    check_review_answer(body, rr, on_error)


@QUICK_SETTINGS
@given(data=st.binary(max_size=200), docs=config_docs(), on_error=ON_ERROR)
def test_review_random_bytes(data: bytes, docs: list[Any], on_error: Any) -> None:
    _run_review(data, load(docs), on_error)


@QUICK_SETTINGS
@given(value=JSON_VALUES, docs=config_docs(), on_error=ON_ERROR)
def test_review_random_json(value: Any, docs: list[Any], on_error: Any) -> None:
    _run_review(orjson.dumps(value), load(docs), on_error)


@settings(SETTINGS, max_examples=200)
@given(doc=review_docs(), docs=config_docs(), on_error=ON_ERROR)
def test_review_admission_review_shaped(doc: Any, docs: list[Any], on_error: Any) -> None:
    _run_review(orjson.dumps(doc), load(docs), on_error)


@SETTINGS
@given(pod=pods(min_containers=1), docs=config_docs(), namespace=st.sampled_from(NAMESPACES),
       api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
def test_review_matches_inject(pod: dict[str, Any], docs: list[Any], namespace: str, api_version: str) -> None:
    """On a well-formed CREATE review, review() sends exactly inject()'s patch."""
    configs = load(docs)
    body = review_body(pod, namespace=namespace, api_version=api_version)
    rr = review(body, configs)
    result = inject(pod, namespace, configs)
    assert rr.status == 200
    assert (orjson.loads(rr.patch) if rr.patch else []) == wire(result.patch)
    assert rr.injected == result.injected
    check_review_answer(body, rr, "fail")


STRICT_CONFIG = {
    "apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "strict"},
    "spec": {"injectByDefault": True,
             "containers": [{"name": "strict-agent", "image": "agent:{{ annotations['agent.example.com/tag'] }}"}]},
}


@QUICK_SETTINGS
@given(pod=pods(min_containers=1, requests=False), docs=config_docs(), on_error=ON_ERROR,
       tagged=st.booleans(), api_version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
def test_review_template_failure(
    pod: dict[str, Any], docs: list[Any], on_error: Any, tagged: bool, api_version: str
) -> None:
    """A template that cannot render for this pod is our error, answered per on_error; never a
    partial patch, never an exception."""
    pod["spec"].pop("hostNetwork", None)  # hostNetwork pods are skipped by default: not this test's subject
    if tagged:
        pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), "agent.example.com/tag": "v2"}
    configs = load([*docs, STRICT_CONFIG]) if "strict" not in {d["metadata"]["name"] for d in docs} else load(docs)
    body = review_body(pod, api_version=api_version)
    rr = review(body, configs, on_error=on_error)
    check_review_answer(body, rr, on_error)
    if tagged:
        assert rr.outcome == "injected" and "strict" in rr.injected
        return
    assert rr.outcome == "error" and "strict" in rr.reason and rr.patch == b""
    if on_error == "fail":
        assert rr.status == 500
    else:
        resp = orjson.loads(rr.body)["response"]
        assert resp["allowed"] is (on_error == "allow") and "patch" not in resp
        if on_error == "allow":
            assert resp["warnings"]


@QUICK_SETTINGS
@given(pod=pods(min_containers=1, requests=False), namespace=st.sampled_from(NAMESPACES),
       versions=st.lists(st.sampled_from(["v1.30.1", "v1.31.0", "v1.32.2"]), min_size=2, max_size=2, unique=True))
def test_status_hash_tracks_rendered_content(pod: dict[str, Any], namespace: str, versions: list[str]) -> None:
    """The status hash is deterministic and changes when the rendered sidecar changes."""
    doc = {"apiVersion": f"{PREFIX}/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "envoy"},
           "spec": {"injectByDefault": True, "containers": [
               {"name": "envoy-proxy",
                "image": "envoyproxy/envoy:{{ annotations['envoy.version'] | default('v1.31.0') }}"}
           ]}}
    configs = load([doc])
    hashes = []
    pod["spec"].pop("hostNetwork", None)  # skipped by default: not this test's subject
    for v in versions:
        p = wire(pod)
        p["metadata"]["annotations"] = {**(p["metadata"].get("annotations") or {}), "envoy.version": v}
        p["metadata"]["annotations"].pop(INJECT_KEY, None)
        a = inject(p, namespace, configs)
        b = inject(wire(p), namespace, configs)
        status = json.loads(a.pod["metadata"]["annotations"][STATUS_KEY])
        assert status == json.loads(b.pod["metadata"]["annotations"][STATUS_KEY])
        assert status["injected"] == ["envoy"]
        hashes.append(status["hash"])
    assert hashes[0] != hashes[1]


@QUICK_SETTINGS
@given(pod=pods(), docs=config_docs(), kind=st.sampled_from(
    ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"]),
    namespace=st.sampled_from([None, *NAMESPACES]))
def test_workload_templates_inject_like_pods(
    pod: dict[str, Any], docs: list[Any], kind: str, namespace: str | None
) -> None:
    """A pod template inside a workload gets exactly what the pod would; the rest is unchanged."""
    from sidecar_injector.core.workloads import POD_PATHS, inject_object

    configs = load(docs)
    meta = {k: v for k, v in pod["metadata"].items() if k not in ("name", "generateName", "namespace")}
    template = {"metadata": meta, "spec": pod["spec"]}
    path = POD_PATHS[kind]
    doc: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}, "spec": {"replicas": 2}}
    if namespace:
        doc["metadata"]["namespace"] = namespace
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = template
    before = wire(doc)
    new_doc, found = inject_object(doc, configs, namespace="cli-ns", source="test")
    assert doc == before
    expected = inject(wire(template), namespace or "cli-ns", configs)
    assert len(found) == 1 and found[0].path == path
    got: Any = new_doc
    for key in path:
        got = got[key]
    assert wire(got) == wire(expected.pod)
    rest_new, rest_old = wire(new_doc), wire(before)
    node_new, node_old = rest_new, rest_old
    for key in path[:-1]:
        node_new, node_old = node_new[key], node_old[key]
    node_new.pop(path[-1])
    node_old.pop(path[-1])
    assert rest_new == rest_old


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
