"""The tenancy rule (core.tenancy): namespaced configs apply only in their namespace, and shadow
cluster configs of the same name there; the review picks the namespace's set."""

from __future__ import annotations

import json

import pytest

from sidecar_injector.core.admission import review
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.inject import inject
from sidecar_injector.core.tenancy import scoped_set, shadowed

from .helpers import cfg, configs, pod, review_body


def one(name: str, image: str, **spec: object) -> object:
    return configs(cfg(name, injectByDefault=True, containers=[{"name": f"{name}-c", "image": image}],
                       **spec)).configs[0]


def images(result: object) -> list[str]:
    return [c["image"] for c in result.pod["spec"]["containers"][1:]]  # type: ignore[attr-defined]


def test_namespaced_config_applies_only_in_its_namespace() -> None:
    cs = scoped_set([], {"team-a": [one("tracer", "tracer:1")]})
    assert images(inject(pod(), "team-a", cs.for_namespace("team-a"))) == ["tracer:1"]
    assert images(inject(pod(), "team-b", cs.for_namespace("team-b"))) == []
    # Even if the namespaced config reached another namespace's set, it is restricted to its own.
    restricted = cs.for_namespace("team-a").by_name["tracer"]
    assert restricted.namespaces == frozenset({"team-a"})
    assert images(inject(pod(), "team-b", cs.for_namespace("team-a"))) == []


def test_namespaced_config_shadows_cluster_config_of_the_same_name_in_its_namespace_only() -> None:
    cluster = [one("envoy", "envoy:cluster"), one("logs", "logs:1")]
    cs = scoped_set(cluster, {"team-a": [one("envoy", "envoy:team-a")]})
    assert images(inject(pod(), "team-a", cs.for_namespace("team-a"))) == ["envoy:team-a", "logs:1"]
    assert images(inject(pod(), "other", cs.for_namespace("other"))) == ["envoy:cluster", "logs:1"]
    assert shadowed(cluster, {"team-a": [one("envoy", "x:1")]}) == [("team-a", "envoy")]
    # the shadowing config takes the cluster one's place in the order
    assert [c.name for c in cs.for_namespace("team-a").configs] == ["envoy", "logs"]


def test_duplicate_names_within_a_namespace_are_an_error() -> None:
    with pytest.raises(ConfigError, match="already defined"):
        scoped_set([], {"a": [one("x", "x:1"), one("x", "x:2")]})


def test_review_decodes_for_every_scoped_set_and_uses_the_namespaces_set() -> None:
    # The cluster set is static (skeleton decode) but the namespace's has a template: the review
    # must decode the full pod for it.
    templated = configs(cfg("tpl", injectByDefault=True,
                            containers=[{"name": "t", "image": "img:{{ labels['v'] | default('1') }}"}])).configs[0]
    cs = scoped_set([one("envoy", "envoy:1")], {"team-a": [templated]})
    assert cs.review_full_pod and not cs.needs_full_pod
    body = review_body(pod(labels={"v": "7"}), namespace="team-a")
    r = review(body, cs)
    assert r.injected == ("envoy", "tpl")
    assert any(op.get("value", {}).get("image") == "img:7" for op in json.loads(r.patch)
               if isinstance(op.get("value"), dict))
    assert review(review_body(pod(), namespace="elsewhere"), cs).injected == ("envoy",)


def test_no_namespaced_configs_is_the_plain_set() -> None:
    cs = scoped_set([one("envoy", "e:1")], {})
    assert cs.scoped == {} and cs.for_namespace("x") is cs


def test_one_memo_bounds_every_namespace() -> None:
    """Namespaced configs give each namespace its own set; the answers are remembered in the
    whole set's memo, so its bound holds however many namespaces have configs."""
    cs = scoped_set([one("envoy", "envoy:1")], {f"team-{i}": [one("envoy", f"envoy:{i}")] for i in range(5)})
    for i in range(5):
        body = review_body(pod(), namespace=f"team-{i}")
        first = review(body, cs, memo=3)
        assert review(body, cs, memo=3) == first == review(body, cs, memo=0)
        assert json.loads(first.patch)[-1]["value"]["image"] == f"envoy:{i}"
    assert len(cs.memo) == 3 and not any(s.memo for s in cs.scoped.values())
