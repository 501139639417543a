"""Strict JSON in, safe JSON out: the parsing and encoding that bad input cannot turn into a crash.

`loads` reads one JSON document (an API body, one line of a .jsonl file) and refuses, as
`InvalidInput`, what Python's parser would otherwise accept or raise on: NaN and Infinity (not
JSON), numbers that overflow a float, integers over Python's int-string limit, and nesting deeper
than the recursion limit. `plain` turns any value (such as a validation error that echoes the
input) into data that strict JSON can encode, and `dumps` encodes with it as a fallback.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from recsys.errors import InvalidInput

MAX_ECHO_DEPTH = 6  # an echoed value deeper than this is cut: it is there to help, not to mirror the input
MAX_ECHO_ITEMS = 20
MAX_ECHO_CHARS = 200
MAX_DEPTH = 64  # of our own answers, which are a few levels deep
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(ValueError):
    """A token strict JSON does not allow (raised from the parser's hooks)."""


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is too large")
    return value


def _int(text: str) -> int:
    limit = sys.get_int_max_str_digits()
    # int() itself would refuse, with advice meant for programmers (sys.set_int_max_str_digits)
    if limit and len(text.lstrip("-")) > limit:
        raise _Refused(f"an integer has more than {limit} digits")
    return int(text)


def loads(text: str | bytes) -> Any:
    """One strict JSON document; `InvalidInput` (with the reason) for anything else."""
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError as exc:
        raise InvalidInput("not valid JSON: nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} at character {exc.pos}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except _Refused as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    except ValueError as exc:  # any other refusal inside the parser: still the input's fault
        raise InvalidInput(f"not valid JSON: {exc}") from exc


def _text(value: str, cut: bool = True) -> str:
    if cut and len(value) > MAX_ECHO_CHARS:
        value = value[:MAX_ECHO_CHARS] + "…"
    if LONE_SURROGATE.search(value):  # cannot be UTF-8: shown as its escape, \ud800
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _number(value: int | float) -> int | float | str:
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf'
    try:
        str(value)
    except ValueError:  # over the int-string limit: encoding it would fail too
        return f"<integer of {value.bit_length()} bits>"
    return value


def plain(value: Any, cut: bool = True, depth: int = 0) -> Any:
    """`value` as data strict JSON can encode: non-finite floats and huge integers as text, lone
    surrogates escaped, anything unknown as its str; `cut` (for echoes of the input) also shortens
    long strings and lists. Nesting deeper than MAX_ECHO_DEPTH (MAX_DEPTH uncut) becomes "…"."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, (str, bytes)):
        return _text(value if isinstance(value, str) else value.decode("utf-8", "replace"), cut)
    if not isinstance(value, (Mapping, list, tuple)):
        return _text(str(value), cut)
    if depth >= (MAX_ECHO_DEPTH if cut else MAX_DEPTH):
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_ECHO_ITEMS] if cut else value.items()
        return {_text(str(k), cut): plain(v, cut, depth + 1) for k, v in items}
    return [plain(v, cut, depth + 1) for v in (value[:MAX_ECHO_ITEMS] if cut else value)]


def dumps(content: Any) -> bytes:
    """Compact UTF-8 strict JSON of `content`; content that cannot be encoded as it is goes through `plain`."""
    try:
        return _strict(content)
    except (ValueError, TypeError, RecursionError):  # NaN, a lone surrogate (UnicodeEncodeError), a huge int
        return _strict(plain(content, cut=False))


def _strict(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
