"""``loads`` and ``dumps`` as the json module's, through its C accelerator directly.

Importing ``json`` imports ``re`` (and so ``enum``, ``functools``,
``collections``): ~6 ms of every ``start``, ``state``, ``kill`` and
``delete``, which only read and write small JSON documents. These functions
call ``_json`` (the C scanner and encoder json itself uses) and give the same
results. Whatever they do not handle themselves -- any error, a type json
would pass to ``default``, NaN/Infinity with ``indent``, bytes that are not
plain UTF-8, a Python without ``_json`` -- is handed to the json module, so
errors and corner cases are exactly json's.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # another Python: just use json
    _json = None  # type: ignore[assignment]

_WS = " \t\n\r"  # json's WHITESPACE
_INF = float("inf")


class _DecodeContext:
    """What ``_json.make_scanner`` reads from a JSONDecoder (json's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -_INF, "Infinity": _INF, "NaN": float("nan")}.__getitem__
    memo: dict[str, Any] = {}


_scan = _json.make_scanner(_DecodeContext()) if _json is not None else None  # type: ignore[arg-type]
_scanners: dict[Any, Any] = {None: _scan}  # by parse_constant


class _Delegate(Exception):
    """Not ours to answer: the json module does it."""


def loads(s: str | bytes | bytearray, *, parse_constant: Any = None) -> Any:
    """``json.loads(s)`` (``parse_constant``: as json's, for NaN and [-]Infinity)."""
    text = s
    try:
        scan = _scanners.get(parse_constant)
        if scan is None:
            if _json is None:
                raise _Delegate
            context = _DecodeContext()
            context.parse_constant = parse_constant  # type: ignore[method-assign]
            scan = _scanners[parse_constant] = _json.make_scanner(context)  # type: ignore[arg-type]
        if not isinstance(text, str):
            # json.detect_encoding: BOMs and NUL bytes (UTF-16/32) are json's to handle
            if text[:1] in (b"\xef", b"\xfe", b"\xff") or b"\x00" in text[:4]:
                raise _Delegate
            text = bytes(text).decode("utf-8", "surrogatepass")
        obj, end = scan(text, len(text) - len(text.lstrip(_WS)))
        if text[end:].strip(_WS):
            raise _Delegate  # "Extra data"
        return obj
    except Exception:
        import json

        if parse_constant is None:
            return json.loads(s)
        return json.loads(s, parse_constant=parse_constant)


def dumps(obj: Any, *, ensure_ascii: bool = True, indent: int | None = None,
          separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, ...)`` for these keyword arguments (json's defaults otherwise)."""
    try:
        if _json is None:
            raise _Delegate
        encode_str = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
        if indent is None:
            item_sep, key_sep = separators or (", ", ": ")
            encoder = _json.make_encoder({}, _raise_delegate, encode_str, None, key_sep, item_sep,
                                         sort_keys, False, True)
            return "".join(encoder(obj, 0))
        item_sep, key_sep = separators or (",", ": ")
        out: list[str] = []
        _pretty(obj, out, encode_str, " " * indent, "\n", item_sep, key_sep, sort_keys)
        return "".join(out)
    except Exception:
        import json

        return json.dumps(obj, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)


def _raise_delegate(obj: Any) -> Any:
    raise _Delegate


def _pretty(o: Any, out: list[str], enc: Any, step: str, newline: str, item_sep: str,
            key_sep: str, sort_keys: bool) -> None:
    """json's indented encoding (the C encoder of Python < 3.13 has no indent)."""
    if isinstance(o, str):
        out.append(enc(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, float):
        if o != o or o in (_INF, -_INF):
            raise _Delegate
        out.append(float.__repr__(o))
    elif isinstance(o, (list, tuple)):
        if not o:
            out.append("[]")
            return
        inner = newline + step
        out.append("[")
        for i, item in enumerate(o):
            out.append(inner if i == 0 else item_sep + inner)
            _pretty(item, out, enc, step, inner, item_sep, key_sep, sort_keys)
        out.append(newline + "]")
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
            return
        inner = newline + step
        out.append("{")
        items = sorted(o.items()) if sort_keys else o.items()
        for i, (key, value) in enumerate(items):
            if not isinstance(key, str):
                raise _Delegate  # json's key conversions (numbers, bools, None)
            out.append(inner if i == 0 else item_sep + inner)
            out.append(enc(key))
            out.append(key_sep)
            _pretty(value, out, enc, step, inner, item_sep, key_sep, sort_keys)
        out.append(newline + "}")
    else:
        raise _Delegate
