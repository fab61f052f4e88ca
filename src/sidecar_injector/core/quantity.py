"""Kubernetes resource quantities (``resource.Quantity``), parsed as the apiserver parses them.

Grammar (k8s.io/apimachinery/pkg/api/resource)::

    <quantity>     ::= <sign>? <digits> ( "." <digits>? )? <suffix>   | <sign>? "." <digits> <suffix>
    <suffix>       ::= "" | n | u | m | k | M | G | T | P | E          (decimal SI)
                     | Ki | Mi | Gi | Ti | Pi | Ei                     (binary SI)
                     | ( "e" | "E" ) <sign>? <digits>                  (decimal exponent)

with the apiserver's quirks kept: surrounding whitespace is trimmed, a lone sign or a lone
``.`` is zero, ``1.`` is one, a JSON number is read from its text, values finer than a
nanounit are rounded away from zero to it, and binary-SI values are capped at 2^63-1.
Pure and stdlib-only; parsing a string is memoised.
"""

from __future__ import annotations

import functools
import json
import math
from decimal import ROUND_CEILING, ROUND_UP, Context, Decimal, InvalidOperation

__all__ = ["QUANTITY_FORMAT", "ceil_int", "parse_quantity", "quantity_error"]

QUANTITY_FORMAT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
BAD_SUFFIX = "unable to parse quantity's suffix"
BAD_NUMBER = "unable to parse quantity's numeric part"

_DECIMAL_SUFFIXES = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
# Go's strings.TrimSpace (unicode.IsSpace).
_SPACE = " \t\n\v\f\r\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_MAX_INT64 = Decimal(2**63 - 1)
_NANO = Decimal("1e-9")
_CTX = Context(prec=100_000, Emax=999_999_999_999, Emin=-999_999_999_999)
_ZERO = Decimal(0)


def parse_quantity(raw: object) -> Decimal | None:
    """The exact value of a quantity as the apiserver would store it, or None if it does not parse.

    ``raw`` is what a pod dict holds: a string, or an int/float where the JSON had a number.
    """
    parsed = _parse(raw)
    return parsed if isinstance(parsed, Decimal) else None


def quantity_error(raw: object) -> str | None:
    """Why the apiserver cannot read ``raw`` as a quantity (its message), or None if it can."""
    parsed = _parse(raw)
    return None if isinstance(parsed, Decimal) else parsed


def _parse(raw: object) -> Decimal | str:
    if isinstance(raw, str):
        return _parse_text(raw.strip(_SPACE))
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return QUANTITY_FORMAT
    if isinstance(raw, float) and not math.isfinite(raw):
        return QUANTITY_FORMAT
    return _parse_text(json.dumps(raw))


def ceil_int(value: Decimal) -> int:
    """``ceil(value)`` as an int (Go's ``Quantity.Value()`` rounds up); huge values saturate."""
    if value.adjusted() > 30:
        return 2**63 - 1 if value > 0 else -(2**63)
    return int(value.to_integral_value(rounding=ROUND_CEILING, context=_CTX))


@functools.lru_cache(maxsize=4096)
def _parse_text(s: str) -> Decimal | str:
    end = len(s)
    if end == 0:
        return QUANTITY_FORMAT
    pos = 0
    negative = False
    if s[0] in "+-":
        negative = s[0] == "-"
        pos = 1
    while pos < end and s[pos] == "0":
        pos += 1
    if pos >= end:
        return _ZERO
    i = pos
    while i < end and s[i] in _DIGITS:
        i += 1
    num, denom, suffix = s[pos:i], "", ""
    pos = i
    if pos < end and s[pos] == ".":
        pos += 1
        i = pos
        while i < end and s[i] in _DIGITS:
            i += 1
        denom, pos = s[pos:i], i
    if pos < end:
        start = pos
        while pos < end and s[pos] in _SUFFIX_CHARS:
            pos += 1
        if pos < end and s[pos] in "+-":
            pos += 1
        while pos < end and s[pos] in _DIGITS:
            pos += 1
        if pos < end:
            return QUANTITY_FORMAT
        suffix = s[start:]
    mantissa = int((num + denom) or "0")
    if negative:
        mantissa = -mantissa
    try:
        if suffix in _DECIMAL_SUFFIXES:
            value = Decimal(mantissa).scaleb(_DECIMAL_SUFFIXES[suffix] - len(denom), context=_CTX)
        elif suffix in _BINARY_SUFFIXES:
            value = Decimal(mantissa << _BINARY_SUFFIXES[suffix]).scaleb(-len(denom), context=_CTX)
            if abs(value) > _MAX_INT64:
                value = _MAX_INT64.copy_sign(value)
        elif len(suffix) > 1 and suffix[0] in "eE" and _is_go_int64(suffix[1:]):
            exponent = (int(suffix[1:]) + 2**31) % 2**32 - 2**31  # Go's int32() conversion
            value = Decimal(mantissa).scaleb(exponent - len(denom), context=_CTX)
        else:
            return BAD_SUFFIX
        if value and value.as_tuple().exponent < -9:  # type: ignore[operator]
            value = value.quantize(_NANO, rounding=ROUND_UP, context=_CTX)
    except (InvalidOperation, OverflowError):
        return BAD_NUMBER
    return value


def _is_go_int64(text: str) -> bool:
    """What Go's ``strconv.ParseInt(text, 10, 64)`` accepts."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not all(c in _DIGITS for c in digits):
        return False
    return -(2**63) <= int(text) < 2**63
