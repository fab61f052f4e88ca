"""The fast path of `review()` (core/skeleton.py: a partial decode of only the fields
injection reads) must answer exactly as the full decode does, for any input."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from test_inject_properties import (
    JSON_VALUES,
    QUICK_SETTINGS,
    SETTINGS,
    config_docs,
    load,
    pods,
    review_body,
    review_docs,
)

from sidecar_injector.core import podshape, skeleton
from sidecar_injector.core.admission import ReviewResult, review
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InputError, InvalidReview


def answer(body: bytes, configs: ConfigSet, memo: int = 256) -> ReviewResult | str:
    try:
        return review(body, configs, memo=memo)
    except InvalidReview as e:
        return f"400: {e}"


def check_same(body: bytes, configs: ConfigSet) -> None:
    # has_templates forces the full decode (templates may read any field of the pod).
    # Under the interpreter's default recursion limit, as the server runs (Hypothesis raises
    # it): the partial decode then gives up on nesting before orjson's 1024 levels.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        full = answer(body, dataclasses.replace(configs, has_templates=True))
        fast_set = dataclasses.replace(configs, has_templates=False)
        fast = answer(body, fast_set)
        again = answer(body, fast_set)  # answered from the memo when the first was remembered
        unremembered = answer(body, fast_set, memo=0)
    finally:
        sys.setrecursionlimit(limit)
    assert fast == full
    assert again == full
    assert unremembered == full


@SETTINGS
@given(pods_=st.lists(pods(), min_size=2, max_size=6), docs=config_docs(), data=st.data())
def test_the_memo_never_answers_one_pod_for_another(
    pods_: list[dict[str, Any]], docs: list[Any], data: st.DataObject
) -> None:
    """Reviews of many pods, repeated and renamed, through one config set's memo: each answer
    is the one a fresh set gives (a key that confused two pods would show here)."""
    configs = load(docs)
    remembered = dataclasses.replace(configs)
    for _ in range(12):
        pod = data.draw(st.sampled_from(pods_))
        meta = pod.get("metadata")
        if isinstance(meta, dict) and data.draw(st.booleans()):
            pod = {**pod, "metadata": {**meta, "name": data.draw(st.sampled_from(["a", "b-0", "web-1"]))}}
        namespace = data.draw(st.sampled_from(["default", "team-a"]))
        body = review_body(pod, namespace=namespace)
        assert answer(body, remembered) == answer(body, dataclasses.replace(configs), memo=0)


@SETTINGS
@given(pod=pods(), docs=config_docs(), operation=st.sampled_from(["CREATE", "CREATE", "UPDATE"]))
def test_fast_path_answers_as_the_full_decode(pod: dict[str, Any], docs: list[Any], operation: str) -> None:
    configs = load(docs)
    body = review_body(pod, operation=operation)
    assert skeleton.decode(body) is not None, "the fast path must take well-formed reviews"
    check_same(body, configs)


@QUICK_SETTINGS
@given(doc=review_docs(), docs=config_docs())
def test_fast_path_on_broken_reviews(doc: Any, docs: list[Any]) -> None:
    check_same(orjson.dumps(doc), load(docs))


@QUICK_SETTINGS
@given(value=JSON_VALUES, data=st.binary(max_size=100), docs=config_docs())
def test_fast_path_on_garbage(value: Any, data: bytes, docs: list[Any]) -> None:
    configs = load(docs)
    check_same(orjson.dumps(value), configs)
    check_same(data, configs)


# Wrongly typed, nested and odd documents (issue 14): a request that is not a usable pod is
# a 400 whatever the config, and the partial decode must agree with the full one on it.

# Every field core/podshape.py rules on, as a path from the pod; "*" is the first item.
SHAPED_PATHS = [
    ("metadata",), ("metadata", "name"), ("metadata", "generateName"), ("metadata", "namespace"),
    ("metadata", "labels"), ("metadata", "labels", "app"), ("metadata", "annotations"),
    ("metadata", "annotations", "sidecar-injector.io/inject"),
    ("spec",), ("spec", "containers"), ("spec", "containers", "*"), ("spec", "containers", "*", "name"),
    ("spec", "containers", "*", "volumeMounts"), ("spec", "containers", "*", "volumeMounts", "*"),
    ("spec", "containers", "*", "volumeMounts", "*", "mountPath"),
    ("spec", "containers", "*", "volumeMounts", "*", "name"), ("spec", "containers", "*", "ports"),
    ("spec", "containers", "*", "ports", "*"), ("spec", "containers", "*", "ports", "*", "hostPort"),
    ("spec", "containers", "*", "env"), ("spec", "containers", "*", "env", "*"),
    ("spec", "containers", "*", "env", "*", "name"),
    ("spec", "initContainers"), ("spec", "initContainers", "*"), ("spec", "initContainers", "*", "name"),
    ("spec", "initContainers", "*", "env", "*", "name"),
    ("spec", "volumes"), ("spec", "volumes", "*"), ("spec", "volumes", "*", "name"),
    ("spec", "imagePullSecrets"), ("spec", "imagePullSecrets", "*", "name"),
]

WRONG_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from([["a"], {"k": "v"}, 5, 1.5, True, None, "", [], {}, [["x"]], {"name": ["x"]}]),
)


def _set_path(doc: Any, path: tuple[str, ...], value: Any) -> None:
    """Put ``value`` at ``path``, creating objects (and one-item lists for "*") on the way."""
    parent = doc
    for i, key in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = [{}] if not last and path[i + 1] == "*" else {}
        if key == "*":
            if not isinstance(parent, list) or not parent:
                return
            if last:
                parent[0] = value
                return
            if not isinstance(parent[0], (dict, list)):
                parent[0] = nxt
            parent = parent[0]
            continue
        if not isinstance(parent, dict):
            return
        if last:
            parent[key] = value
            return
        if not isinstance(parent.get(key), (dict, list)):
            parent[key] = nxt
        parent = parent[key]


def _nested_text(depth: int) -> bytes:
    """JSON nested ``depth`` levels deep, objects and lists in turn (no encoder recurses)."""
    opening = b"".join(b"[" if i % 2 else b'{"n":' for i in range(depth))
    closing = b"".join(b"]" if i % 2 else b"}" for i in reversed(range(depth)))
    return opening + b'"x"' + closing


@SETTINGS
@given(pod=pods(), docs=config_docs(), path=st.sampled_from(SHAPED_PATHS), value=WRONG_VALUES)
def test_fast_path_on_wrongly_typed_pods(pod: dict[str, Any], docs: list[Any], path: tuple[str, ...],
                                          value: Any) -> None:
    pod = orjson.loads(orjson.dumps(pod))
    _set_path(pod, path, value)
    configs = load(docs)
    body = review_body(pod)
    check_same(body, configs)
    # Whatever the configs, a review is a 400 exactly when the pod breaks a shape rule.
    outcomes = {isinstance(answer(body, dataclasses.replace(configs, has_templates=t)), str) for t in (True, False)}
    assert len(outcomes) == 1
    try:
        podshape.check(pod)
    except InputError as e:
        assert answer(body, configs) == f"400: request.object: {e}"


@QUICK_SETTINGS
@given(pod=pods(), docs=config_docs())
def test_a_skeleton_always_has_the_shape_podshape_requires(pod: dict[str, Any], docs: list[Any]) -> None:
    """The fast path skips podshape.check: the skeleton's types must imply it."""
    doc = skeleton.decode(review_body(pod))
    assert doc is not None
    podshape.check(doc["request"]["object"])


@QUICK_SETTINGS
@given(
    docs=config_docs(),
    depth=st.sampled_from([10, 500, 900, 990, 1000, 1010, 1020, 1023, 1024, 1025, 1100, 3000]),
    where=st.sampled_from(["unknown", "kind", "label", "uid", "operation", "object", "container"]),
)
def test_fast_path_on_deeply_nested_reviews(docs: list[Any], depth: int, where: str) -> None:
    body = review_docs_base()
    marker = "@@DEEP@@"
    request = body["request"]
    if where == "unknown":
        request["object"]["x-unknown"] = marker
    elif where == "label":
        request["object"]["metadata"]["labels"]["app"] = marker
    elif where == "container":
        request["object"]["spec"]["containers"].append({"name": "c", "x": marker})
    else:
        request[where] = marker
    check_same(orjson.dumps(body).replace(b'"' + marker.encode() + b'"', _nested_text(depth)), load(docs))


@QUICK_SETTINGS
@given(
    docs=config_docs(),
    odd=st.sampled_from([b"1e400", b"-1e400", b"1" + b"0" * 400, b"1" + b"0" * 5000, b"1e-400",
                         b'"\xff\xfe"', b'"\xc3\x28"', b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\ud83d\\ude00"',
                         b'"caf\xc3\xa9"', b"NaN", b"Infinity", b"[1e400, {\"a\": 1e400}]"]),
    where=st.sampled_from(["unknown", "label", "status", "uid"]),
)
def test_fast_path_on_odd_json(docs: list[Any], odd: bytes, where: str) -> None:
    """Numbers out of a double's range, invalid UTF-8, lone surrogates: both paths alike."""
    body = review_docs_base()
    marker = "@@ODD@@"
    if where == "unknown":
        body["request"]["object"]["spec"]["x-unknown"] = marker
    elif where == "label":
        body["request"]["object"]["metadata"]["labels"]["app"] = marker
    elif where == "status":
        body["request"]["object"]["status"] = {"n": marker}
    else:
        body["request"]["uid"] = marker
    data = orjson.dumps(body).replace(b'"' + marker.encode() + b'"', odd)
    check_same(data, load(docs))


def review_docs_base() -> dict[str, Any]:
    return orjson.loads(review_body({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": {}},
        "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "emptyDir": {}}]},
    }))


def test_a_long_uid_is_refused_and_not_echoed() -> None:
    doc = review_docs_base()
    doc["request"]["uid"] = "u" * 10_000
    configs = load([])
    message = answer(orjson.dumps(doc), configs)
    assert isinstance(message, str) and "longer than 256" in message and len(message) < 200
    check_same(orjson.dumps(doc), configs)


def test_error_messages_quote_no_structure() -> None:
    """A kind nested 1,000 deep used to be repr()'d into the message: a RecursionError, a 500."""
    deep = b'{"apiVersion": "admission.k8s.io/v1", "kind": ' + _nested_text(1000) + b"}"
    big = orjson.dumps({"apiVersion": "x" * 1_000_000, "kind": "AdmissionReview"})
    for body in (deep, big):
        message = answer(body, load([]))
        assert isinstance(message, str) and "not an AdmissionReview" in message and len(message) < 300
