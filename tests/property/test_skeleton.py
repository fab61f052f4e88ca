"""The fast path of `review()` (core/skeleton.py: a partial decode of only the fields
injection reads) must answer exactly as the full decode does, for any input."""

from __future__ import annotations

import dataclasses
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

from sidecar_injector.core import skeleton
from sidecar_injector.core.admission import ReviewResult, review
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InvalidReview


def answer(body: bytes, configs: ConfigSet) -> ReviewResult | str:
    try:
        return review(body, configs)
    except InvalidReview as e:
        return f"400: {e}"


def check_same(body: bytes, configs: ConfigSet) -> None:
    # has_templates forces the full decode (templates may read any field of the pod).
    full = answer(body, dataclasses.replace(configs, has_templates=True))
    fast = answer(body, dataclasses.replace(configs, has_templates=False))
    assert fast == full


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
