"""AdmissionReview in, AdmissionReview out: protocol rules from the apiserver's side."""

from __future__ import annotations

import base64
import json

import pytest

from sidecar_injector.core.admission import review
from sidecar_injector.core.errors import InvalidReview

from .helpers import SIDECAR, cfg, configs, pod, review_body

CS = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, containers=[SIDECAR]))


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_create_pod_is_patched_in_the_version_received(version: str) -> None:
    r = review(review_body(pod(), version=version, uid="abc"), CS)
    out = json.loads(r.body)
    assert r.status == 200 and out["apiVersion"] == f"admission.k8s.io/{version}" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == "abc" and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    assert ops == json.loads(r.patch) and any(op["path"] == "/metadata/labels" for op in ops)
    assert r.outcome == "injected" and r.injected == ("envoy",) and r.pod == "web-" and r.namespace == "ns"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"operation": "UPDATE"}, "not-create"),
        ({"operation": "DELETE"}, "not-create"),
        ({"operation": "CONNECT"}, "not-create"),
        ({"kind": "Service", "resource": "services"}, "not-a-pod"),
        ({"resource": "pods/status"}, "not-a-pod"),
    ],
)
def test_everything_but_pod_create_is_allowed_without_patch(kwargs: dict[str, str], reason: str) -> None:
    r = review(review_body(pod(), **kwargs), CS)
    resp = json.loads(r.body)["response"]
    assert resp == {"uid": "uid-1", "allowed": True} and r.reason == reason and r.outcome == "skipped"


def test_skipped_pod_has_neither_patch_nor_patch_type() -> None:
    r = review(review_body(pod(annotations={"sidecar-injector.io/inject": "false"})), CS)
    assert json.loads(r.body)["response"] == {"uid": "uid-1", "allowed": True}
    assert r.reason == "opted-out"


def test_warnings_reach_the_response_prefixed_and_bounded() -> None:
    r = review(review_body(pod(annotations={"sidecar-injector.io/inject": "x" * 400})), CS)
    warnings = json.loads(r.body)["response"]["warnings"]
    assert warnings and all(w.startswith("sidecar-injector: ") and len(w) <= 256 for w in warnings)


def test_namespace_comes_from_the_request_and_falls_back_to_the_object() -> None:
    ns_cs = configs(cfg(injectByDefault=True, namespaces=["team"], containers=[SIDECAR]))
    assert review(review_body(pod(), namespace="team"), ns_cs).outcome == "injected"
    assert review(review_body(pod(namespace="team"), namespace="other"), ns_cs).outcome == "skipped"
    assert review(review_body(pod(namespace="team"), namespace=""), ns_cs).outcome == "injected"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty request body"),
        (b"{not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"apiVersion": "v1", "kind": "Pod"}', "not an AdmissionReview"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "has no request"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}', "uid is missing"),
        (review_body(None), "request.object is missing"),
        (review_body({"metadata": {}, "spec": {"containers": "nope"}}), "no spec.containers"),
        (review_body({"metadata": False, "spec": {"containers": []}}), "metadata is a bool, not an object"),
        (review_body({"metadata": {"labels": ["a"]}, "spec": {"containers": []}}), "metadata.labels is a list"),
        (review_body({"spec": {"containers": [{"name": "a", "volumeMounts": 5}]}}),
         r"spec.containers\[0\].volumeMounts is a int, not a list"),
        (review_body({"spec": {"containers": [], "volumes": {}}}), "spec.volumes is a dict, not a list"),
    ],
)
def test_malformed_reviews_are_invalid_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidReview, match=reason):
        review(body, CS)


TEMPLATED = configs(cfg(injectByDefault=True, containers=[{"name": "p", "image": "{{ labels.missing }}"}]))


def test_on_error_fail_answers_500_with_a_status() -> None:
    r = review(review_body(pod()), TEMPLATED, on_error="fail")
    assert r.status == 500 and r.outcome == "error"
    status = json.loads(r.body)
    assert status["kind"] == "Status" and "failed to render" in status["message"]


def test_on_error_allow_admits_without_patch_and_warns() -> None:
    r = review(review_body(pod()), TEMPLATED, on_error="allow")
    resp = json.loads(r.body)["response"]
    assert r.status == 200 and resp["allowed"] is True and "patch" not in resp and "patchType" not in resp
    assert "injection failed" in resp["warnings"][0]


def test_on_error_deny_rejects_with_a_message() -> None:
    r = review(review_body(pod()), TEMPLATED, on_error="deny")
    resp = json.loads(r.body)["response"]
    assert r.status == 200 and resp["allowed"] is False and "failed to render" in resp["status"]["message"]


# The memo: answers to template-free pods remembered by the pod's skeleton, without its name.


def test_a_remembered_answer_is_the_same_answer_with_the_new_uid_and_name() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, containers=[SIDECAR]))
    first = review(review_body(pod(), uid="a"), cs)
    assert len(cs.memo) == 1
    again = review(review_body(pod(name="web-1"), uid="b"), cs)  # a replica: only the name differs
    assert len(cs.memo) == 1, "a renamed replica is the same pod to a template-free config"
    fresh = review(review_body(pod(name="web-1"), uid="b"), cs, memo=0)
    assert again == fresh and again.pod == "web-1"
    assert json.loads(again.body)["response"]["uid"] == "b"
    assert again.patch == first.patch


def test_pods_that_differ_get_their_own_answers() -> None:
    cs = configs(cfg(injectByDefault=True, labels={"foo": "bar"}, containers=[SIDECAR]))
    plain = review(review_body(pod()), cs)
    labelled = review(review_body(pod(labels={"foo": "mine"})), cs)
    elsewhere = review(review_body(pod(), namespace="other"), cs)
    opted_out = review(review_body(pod(annotations={"sidecar-injector.io/inject": "false"})), cs)
    assert len(cs.memo) == 4
    assert plain.patch != labelled.patch and opted_out.outcome == "skipped"
    for body, got in ((review_body(pod()), plain), (review_body(pod(labels={"foo": "mine"})), labelled),
                      (review_body(pod(), namespace="other"), elsewhere)):
        assert review(body, cs) == got


def test_the_memo_is_bounded_and_can_be_turned_off() -> None:
    cs = configs(cfg(injectByDefault=True, containers=[SIDECAR]))
    for i in range(12):
        review(review_body(pod(labels={"n": str(i)})), cs, memo=5)
    assert len(cs.memo) == 5, "the oldest answers make room"
    off = configs(cfg(injectByDefault=True, containers=[SIDECAR]))
    review(review_body(pod()), off, memo=0)
    assert not off.memo


def test_templated_configs_and_failures_are_never_remembered() -> None:
    templated = configs(cfg(injectByDefault=True, labels={"who": "{{ name }}"}, containers=[SIDECAR]))
    a = review(review_body(pod(name="a")), templated)
    b = review(review_body(pod(name="b")), templated)
    assert not templated.memo and a.patch != b.patch  # the name matters to a template
    failing = configs(cfg(injectByDefault=True, containers=[SIDECAR],
                          volumeMounts=[{"name": "missing", "mountPath": "/x"}]), validate=False)
    r = review(review_body(pod()), failing, on_error="allow")
    assert r.outcome == "error" and not failing.memo
