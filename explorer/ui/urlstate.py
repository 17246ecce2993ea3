"""A view in a link: the values that make a view, written to and read from URL query parameters.

Query parameters come from strangers, so every value is parsed against a ``Field`` (a type and
its bounds or choices) and a bad one is dropped with a reason a person can read; nothing here
raises. Selections are lists of row ids: ``encode_ids`` packs them as a zlib-compressed bitmap in
URL-safe base64 (a 500-image box selection of a 10,000-image map takes about 300 characters).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_IDS_CHARS = 6000  # longer selections are left out of links: proxies and servers cap URL sizes near 8 KB
MAX_IDS = 10_000_000  # the largest row id a link may name (the bitmap's size follows the largest id)


@dataclass(frozen=True)
class Field:
    """One value of a view: its query parameter, the session key it restores, and how to read it."""

    param: str
    key: str
    parse: Callable[[str], Any]  # raises ValueError with a readable reason
    default: Any = None  # left out of the link when the value equals it


def choice(options: Sequence[Any]) -> Callable[[str], Any]:
    """A parser that accepts one of ``options`` (compared as text, returned as the option itself)."""
    by_text = {str(o): o for o in options}

    def parse(text: str) -> Any:
        if text not in by_text:
            shown = ", ".join(list(by_text)[:12]) + (", …" if len(by_text) > 12 else "")
            raise ValueError(f"must be one of {shown}")
        return by_text[text]

    return parse


def integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?\d{1,12}", text.strip()):
            raise ValueError("must be a whole number")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def number(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


def point(dims: int = 2, bound: float = 1e6) -> Callable[[str], tuple[float, ...]]:
    """``"x,y"`` -> (x, y): finite numbers of moderate size."""

    def parse(text: str) -> tuple[float, ...]:
        parts = text.split(",")
        if len(parts) != dims:
            raise ValueError(f"must be {dims} numbers separated by commas")
        values = tuple(number(-bound, bound)(p) for p in parts)
        return values

    return parse


def encode_ids(ids: Sequence[int]) -> str:
    """Row ids -> a short URL-safe text: a bitmap of the ids, deflated, in base64 without padding."""
    if not len(ids):
        return ""
    top = max(int(i) for i in ids)
    bits = bytearray((top >> 3) + 1)
    for i in ids:
        bits[int(i) >> 3] |= 1 << (int(i) & 7)
    return base64.urlsafe_b64encode(zlib.compress(bytes(bits), 9)).decode("ascii").rstrip("=")


def decode_ids(text: str, n_rows: int) -> tuple[int, ...]:
    """The inverse of ``encode_ids``, checked against a map of ``n_rows`` images. Raises ValueError."""
    if len(text) > MAX_IDS_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("is not a selection written by this app")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        # at most one bit per possible row: a small text cannot inflate into gigabytes
        inflater = zlib.decompressobj()
        bits = inflater.decompress(raw, (MAX_IDS >> 3) + 1)
        if inflater.unconsumed_tail:
            raise ValueError("names more rows than any map holds")
    except (binascii.Error, zlib.error):
        raise ValueError("is not a selection written by this app") from None
    # past the map's last row nothing may be set: checked on the bytes, before a single id is made (a short
    # text of set bits would otherwise become ten million Python integers)
    mine = (max(n_rows, 0) + 7) >> 3
    beyond = np.frombuffer(bits, np.uint8)
    if beyond[mine:].any() or (n_rows % 8 and mine and beyond[mine - 1] >> (n_rows % 8)):
        last = int(np.flatnonzero(beyond)[-1])
        top = last * 8 + int(beyond[last]).bit_length() - 1
        raise ValueError(f"names image #{top}, but this map has {n_rows:,} images")
    return tuple(int(i) for i in np.flatnonzero(np.unpackbits(beyond[:mine], bitorder="little")))


def read(params: dict[str, str], fields: Sequence[Field]) -> tuple[dict[str, Any], list[str]]:
    """Parse the fields present in ``params``: ({session key: value}, [a notice per value dropped])."""
    values: dict[str, Any] = {}
    notices: list[str] = []
    for field in fields:
        if field.param not in params:
            continue
        text = str(params[field.param])[:200]
        try:
            values[field.key] = field.parse(text)
        except ValueError as exc:
            notices.append(f"“{field.param}={text[:40]}” was ignored: it {exc}.")
    return values, notices


def written(values: dict[str, Any], fields: Sequence[Field]) -> dict[str, str]:
    """{query parameter: text} for the fields whose value differs from its default (clean links)."""
    out: dict[str, str] = {}
    for field in fields:
        if field.key not in values:
            continue
        value = values[field.key]
        if value is None or value == field.default:
            continue
        if isinstance(value, float):
            out[field.param] = f"{value:.6g}"
        elif isinstance(value, tuple):
            out[field.param] = ",".join(f"{v:.6g}" for v in value)
        else:
            out[field.param] = str(value)
    return out
