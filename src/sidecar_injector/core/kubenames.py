"""The apiserver's string formats (k8s.io/apimachinery validation) and its error wording.

Each ``is_*`` function returns the apiserver's messages for a bad value (empty when valid).
The message builders render a problem as ``field.Error.ErrorBody()`` does, e.g.
``Invalid value: "Sidecar_1": a lowercase RFC 1123 label must ...``. Pure, stdlib only,
regexes compiled once; the common valid case costs one ``fullmatch``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "Messages",
    "Path",
    "Problem",
    "byte_len",
    "duplicate",
    "forbidden",
    "format_path",
    "format_problem",
    "invalid",
    "is_config_map_key",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_env_var_name",
    "is_http_header_name",
    "is_label_value",
    "is_port_name",
    "is_qualified_name",
    "not_found",
    "not_supported",
    "required",
    "too_long",
    "too_many",
]

Path = tuple[str | int, ...]
Problem = tuple[Path, str]

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(_LABEL_KEY_FMT)
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_LABEL_KEY_FMT}')"
)
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    f"validation is '{_LABEL_VALUE_FMT}')"
)
_PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")
_RELAXED_ENV_NAME = re.compile("[ -<>-~]+")  # printable ASCII but '='
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY = re.compile(_CONFIG_KEY_FMT)
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    f"'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY_FMT}')"
)
_HTTP_HEADER_FMT = "[-A-Za-z0-9]+"
_HTTP_HEADER = re.compile(_HTTP_HEADER_FMT)
_HTTP_HEADER_MSG = (
    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', "
    f"regex used for validation is '{_HTTP_HEADER_FMT}')"
)
_SIMPLE_PATH_SEGMENT = re.compile("[A-Za-z_][A-Za-z0-9_]*")


Messages = tuple[str, ...]
# The formats are pure functions of short strings that recur from pod to pod (label keys,
# container names): remembering the answers makes the common case a dict lookup.
_memo = functools.lru_cache(maxsize=8192)


def byte_len(s: str) -> int:
    """Go's ``len(s)``: UTF-8 bytes."""
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


@_memo
def is_dns1123_label(value: str) -> Messages:
    if len(value) <= 63 and _DNS1123_LABEL.fullmatch(value):
        return ()
    errs = ["must be no more than 63 characters"] if byte_len(value) > 63 else []
    if not _DNS1123_LABEL.fullmatch(value):
        errs.append("must not contain dots" if _DNS1123_SUBDOMAIN.fullmatch(value) else _DNS1123_LABEL_MSG)
    return tuple(errs)


@_memo
def is_dns1123_subdomain(value: str, *, unit: str = "characters") -> Messages:
    if len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value):
        return ()
    errs = [f"must be no more than 253 {unit}"] if byte_len(value) > 253 else []
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(_DNS1123_SUBDOMAIN_MSG)
    return tuple(errs)


@_memo
def is_qualified_name(value: str) -> Messages:
    """A label key / qualified name: ``[prefix/]name``, prefix a DNS subdomain, name <= 63."""
    if len(value) <= 63 and _LABEL_KEY.fullmatch(value):
        return ()  # the common case: no prefix
    parts = value.split("/")
    if len(parts) > 2:
        return (
            "a valid label key "
            + _LABEL_KEY_MSG
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        )
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix, unit="bytes"))
    if not name:
        errs.append("name part must be non-empty")
    elif byte_len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _LABEL_KEY.fullmatch(name):
        errs.append("name part " + _LABEL_KEY_MSG)
    return tuple(errs)


@_memo
def is_label_value(value: str) -> Messages:
    if len(value) <= 63 and _LABEL_VALUE.fullmatch(value):
        return ()
    errs = ["must be no more than 63 bytes"] if byte_len(value) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return tuple(errs)


@_memo
def is_port_name(value: str) -> Messages:
    """IANA_SVC_NAME: <= 15 of [-a-z0-9], at least one letter, no '--', no '-' at either end."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return tuple(errs)


@_memo
def is_env_var_name(value: str) -> Messages:
    """Relaxed (GA since 1.34): any printable ASCII character but '='."""
    if not value:
        return ("environment variable name must be non-empty",)
    if _RELAXED_ENV_NAME.fullmatch(value):
        return ()
    return ("a valid environment variable name must consist only of printable ASCII characters other than '='",)


@_memo
def is_config_map_key(value: str) -> Messages:
    errs = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not _CONFIG_KEY.fullmatch(value):
        errs.append(_CONFIG_KEY_MSG)
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return tuple(errs)


@_memo
def is_http_header_name(value: str) -> Messages:
    return () if _HTTP_HEADER.fullmatch(value) else (_HTTP_HEADER_MSG,)


# -- the apiserver's error wording (field.Error.ErrorBody) --------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def invalid(path: Path, value: Any, detail: str) -> Problem:
    return path, f"Invalid value: {_show(value)}: {detail}"


def required(path: Path, detail: str = "") -> Problem:
    return path, f"Required value: {detail}" if detail else "Required value"


def forbidden(path: Path, detail: str) -> Problem:
    return path, f"Forbidden: {detail}"


def duplicate(path: Path, value: Any) -> Problem:
    return path, f"Duplicate value: {_show(value)}"


def not_found(path: Path, value: Any, detail: str = "") -> Problem:
    return path, f"Not found: {_show(value)}" + (f": {detail}" if detail else "")


def not_supported(path: Path, value: Any, supported: Iterable[str]) -> Problem:
    return path, f"Unsupported value: {_show(value)}: supported values: " + ", ".join(
        json.dumps(s) for s in sorted(supported)
    )


def too_long(path: Path, limit: int) -> Problem:
    return path, f"Too long: may not be more than {limit} bytes"


def too_many(path: Path, actual: int, limit: int) -> Problem:
    return path, f"Too many: {actual}: must have at most {limit} items"


def format_path(path: Path) -> str:
    """``spec.containers[1].ports[0].name``; map keys that are not identifiers in brackets."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _SIMPLE_PATH_SEGMENT.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part}]")
    return "".join(out)


def format_problem(problem: Problem) -> str:
    """``spec.containers[0].name: Invalid value: "Sidecar_1": a lowercase RFC 1123 label ...``"""
    path, message = problem
    return f"{format_path(path)}: {message}" if path else message
