"""ocirun.util.record: the frozen records behave as @dataclass(frozen=True) does."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from typing import ClassVar

import pytest

from ocirun.util.record import field_names, is_record, record, replace


@record
class Point:
    x: int
    y: int = 0
    KIND: ClassVar[str] = "point"


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    KIND: ClassVar[str] = "point"


@record(slots=True)
class Slotted:
    """Docstring kept."""

    name: str
    tags: tuple[str, ...] = ()

    def shout(self) -> str:
        return self.name.upper()


@record
class Point3(Point):
    z: int = 0


def test_init_forms_and_defaults() -> None:
    assert (Point(1).x, Point(1).y) == (1, 0)
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    assert Point.KIND == "point" and field_names(Point) == ("x", "y")
    with pytest.raises(TypeError, match="missing 1 required argument"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Point(1, 2, 3)  # type: ignore[call-arg]


def test_repr_eq_hash_as_dataclass() -> None:
    assert repr(Point(1, 2)) == repr(DPoint(1, 2)).replace("DPoint", "Point")
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert hash(Point(1, 2)) == hash(DPoint(1, 2)) == hash((1, 2))
    assert Point(1, 2) != DPoint(1, 2)  # another class is never equal
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert Point.__match_args__ == ("x", "y")
    match Point(5, 6):
        case Point(a, b):
            assert (a, b) == (5, 6)


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x  # type: ignore[misc]
    assert p.x == 1


def test_slots() -> None:
    s = Slotted("a")
    assert not hasattr(s, "__dict__") and Slotted.__slots__ == ("name", "tags")
    assert s.shout() == "A" and s.tags == () and Slotted.__doc__ == "Docstring kept."
    assert Slotted.__qualname__ == "Slotted"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "b"  # type: ignore[misc]


def test_inheritance_adds_fields() -> None:
    p = Point3(1, 2, 3)
    assert field_names(p) == ("x", "y", "z") and p.z == 3 and repr(p) == "Point3(x=1, y=2, z=3)"

    with pytest.raises(TypeError, match="non-default argument"):
        @record
        class Bad:
            a: int = 0
            b: int


def test_replace_and_the_dataclasses_functions() -> None:
    p = Point(1, 2)
    assert replace(p, y=5) == Point(1, 5) and p == Point(1, 2)
    # code (and tests) written for dataclasses keep working on records
    assert dataclasses.is_dataclass(Point) and dataclasses.is_dataclass(p) and is_record(p)
    assert [f.name for f in dataclasses.fields(Point3)] == ["x", "y", "z"]
    assert dataclasses.replace(Slotted("a"), tags=("t",)) == Slotted("a", ("t",))
    assert dataclasses.asdict(Point3(1)) == {"x": 1, "y": 0, "z": 0}
    assert vars(Point)["__dataclass_params__"].frozen


def test_pickle_roundtrip() -> None:
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)
    assert pickle.loads(pickle.dumps(Slotted("a", ("b",)))) == Slotted("a", ("b",))
    import copy

    assert copy.deepcopy(Point3(1, 2, 3)) == Point3(1, 2, 3)


def test_importing_record_imports_nothing_heavy() -> None:
    code = ("import sys; import ocirun.util.record, ocirun.spec.model, ocirun.plan.model; "
            "print(' '.join(sorted(m for m in ('dataclasses', 'typing', 'inspect', 'argparse') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": ":".join(sys.path)}).stdout
    assert out.strip() == ""
