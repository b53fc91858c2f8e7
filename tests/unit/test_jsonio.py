"""ocirun.util.jsonio: the same text and values as the json module, without importing it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ocirun.util import jsonio

VALUES = [
    {}, [], (), "", "plain", "é ü \u2028 <>& \"quoted\" \\ \x00 \U0001f600", 0, -1, 2**70, 1.5, -0.0,
    1e300, 1e-7, None, True, False, [[[]]], [{}], {"a": {}}, (1, "2", [3.0]),
    {"ociVersion": "1.2.0", "id": "c1", "status": "created", "pid": 4242, "bundle": "/b",
     "annotations": {"k": "v", "ü": "\u00e9"}, "nested": {"list": [1, None, {"x": [True, False]}]}},
    {1: "int key"}, {None: 1, True: 2, 2.5: 3}, float("nan"), {"x": float("inf")}, [float("-inf")],
]
OPTIONS = [{}, {"separators": (",", ":")}, {"indent": 2}, {"indent": 2, "ensure_ascii": False},
           {"ensure_ascii": False, "separators": (",", ":")}, {"indent": 4, "sort_keys": True},
           {"indent": 0}, {"sort_keys": True}]


@pytest.mark.parametrize("options", OPTIONS, ids=repr)
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_dumps_is_json_dumps(value, options):
    assert outcome(jsonio.dumps, value, **options) == outcome(json.dumps, value, **options)


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # the same error, too
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_loads_is_json_loads(value):
    text = json.dumps(value)
    for form in (text, f" \n\t{text}\r\n ", text.encode(), text.encode("utf-16"),
                 b"\xef\xbb\xbf" + text.encode()):
        assert repr(jsonio.loads(form)) == repr(json.loads(form))


@pytest.mark.parametrize("bad", ["", " ", "{", "[1,]", '{"a": 1} x', "nul", "\ufeff{}", "[1] [2]",
                                 '{"a" 1}', '"\\x"', b"\xff\xfe", b'"\xc3"'])
def test_errors_are_json_s(bad):
    with pytest.raises(ValueError) as ours:
        jsonio.loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_unserializable_is_json_s_error():
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        jsonio.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonio.dumps({"a": {1, 2}}, indent=2)


def test_does_not_import_json():
    code = ("import sys, ocirun.util.jsonio as j; j.loads(j.dumps({'a': [1, 2.5]}, indent=2)); "
            "print([m for m in ('json', 're', 'enum') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)}).stdout
    assert out.strip() == "[]"


def test_parse_constant_as_json():
    def reject(name):
        raise ValueError(f"{name} is not valid JSON")

    for text in ('{"a": NaN}', "[Infinity]", '{"a": 1}', "-Infinity"):
        assert outcome(jsonio.loads, text, parse_constant=reject) == outcome(json.loads, text, parse_constant=reject)
    assert repr(jsonio.loads("[NaN, -Infinity]")) == repr(json.loads("[NaN, -Infinity]"))
