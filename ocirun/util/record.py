"""``@record``: a frozen, dataclass-like class without the cost of ``dataclasses``.

Every ocirun call starts a new interpreter, and ``@dataclass`` builds each
class's methods from source text with ``exec`` at import (plus ``dataclasses``
imports ``inspect``): about 0.5 ms a class, ~30 ms for the config and plan
models of ``create``. ``@record`` gives the same classes (the fields are the
annotated class attributes, a class attribute is the default) with shared,
generic methods instead, so decorating a class costs a few microseconds.

What a record has, as ``@dataclass(frozen=True)`` (``slots=True`` when asked):
``__init__`` (positional or keyword), ``__repr__`` ``Name(a=1, b=2)``,
``__eq__`` (same class, equal fields), ``__hash__`` of the fields, assignment
and deletion raising ``dataclasses.FrozenInstanceError``, ``__match_args__``.
``ClassVar`` annotations are not fields. Mutable defaults are the caller's
problem (use tuples and read-only mappings). No ``field()``, ``__post_init__``,
ordering or ``InitVar``.

The ``dataclasses`` functions still work on records (``replace``, ``fields``,
``asdict``, ``is_dataclass``): ``__dataclass_fields__`` is built on first use,
and only then is ``dataclasses`` imported. Inside ocirun use :func:`replace`
and :func:`field_names` from here, which import nothing.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing itself costs every call ~3 ms to import
if TYPE_CHECKING:
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    _T = TypeVar("_T")
else:
    def dataclass_transform(**kwargs):
        return lambda f: f

#: Class attribute holding the field names, in order (base classes' first).
FIELDS = "__record_fields__"
_DEFAULTS = "__record_defaults__"
_VALUES = "__record_values__"  # a function: instance -> tuple of the field values
_MISSING = object()


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _frozen_error(name: str) -> AttributeError:
    # dataclasses' own error class, so code written for frozen dataclasses keeps working
    # (imported here only: this is a programming error, not a path anything takes normally).
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def _init_for(names: tuple[str, ...], defaults: dict[str, Any]):
    count = len(names)
    setter = object.__setattr__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{type(self).__name__}.__init__() takes {count + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        for name, value in zip(names, args, strict=False):
            setter(self, name, value)
        missing = []
        for name in names[len(args):]:
            value = kwargs.pop(name, _MISSING) if kwargs else _MISSING
            if value is _MISSING:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    missing.append(name)
                    continue
            setter(self, name, value)
        if kwargs:
            name = next(iter(kwargs))
            if name in names:
                raise TypeError(f"{type(self).__name__}.__init__() got multiple values for argument {name!r}")
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {name!r}")
        if missing:
            raise TypeError(f"{type(self).__name__}.__init__() missing {len(missing)} required "
                            f"argument(s): {', '.join(repr(m) for m in missing)}")

    return __init__


def _values_getter(names: tuple[str, ...]):
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda self: (one(self),)
    if not names:
        return lambda self: ()
    return attrgetter(*names)


def _repr(self: Any) -> str:
    cls = type(self)
    values = getattr(cls, _VALUES)(self)
    inner = ", ".join(f"{n}={v!r}" for n, v in zip(getattr(cls, FIELDS), values, strict=True))
    return f"{cls.__qualname__}({inner})"


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is self.__class__:
        values = getattr(self.__class__, _VALUES)
        result: bool = values(self) == values(other)
        return result
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__record_values__(self))


def _setattr(self: Any, name: str, value: object) -> None:
    raise _frozen_error(name)


def _delattr(self: Any, name: str) -> None:
    raise _frozen_error(name)


def _reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
    # pickle and copy: rebuild through __init__ (frozen: no __setstate__ by assignment)
    return (self.__class__, tuple(getattr(self.__class__, _VALUES)(self)))


def _replace_dunder(self: Any, **changes: Any) -> Any:
    return replace(self, **changes)


class _DataclassFields:
    """``__dataclass_fields__`` made on first access, so the ``dataclasses`` functions
    (``replace``, ``fields``, ``asdict``, ``is_dataclass``) accept a record."""

    def __get__(self, obj: object, owner: type) -> dict[str, Any]:
        import dataclasses

        defaults = getattr(owner, _DEFAULTS)
        annotations: dict[str, Any] = {}
        for klass in reversed(owner.__mro__):
            annotations.update(klass.__dict__.get("__annotations__", {}))
        out: dict[str, Any] = {}
        for name in getattr(owner, FIELDS):
            f = dataclasses.field(default=defaults.get(name, dataclasses.MISSING))
            f.name = name
            f.type = annotations.get(name)
            f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            out[name] = f
        return out


class _DataclassParams:
    """What ``__dataclass_params__`` of a ``@dataclass(frozen=True)`` says."""

    __slots__ = ("slots",)
    init = repr = eq = frozen = match_args = True
    order = unsafe_hash = kw_only = weakref_slot = False

    def __init__(self, slots: bool) -> None:
        self.slots = slots


def _process(cls: type, slots: bool) -> type:
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        if FIELDS in base.__dict__:
            for name in base.__dict__[FIELDS]:
                if name not in names:
                    names.append(name)
            defaults.update(base.__dict__[_DEFAULTS])
    body = cls.__dict__
    for name, annotation in body.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        if name not in names:
            names.append(name)
        default = body.get(name, _MISSING)
        if default is not _MISSING:
            defaults[name] = default
        else:
            defaults.pop(name, None)
    seen_default = ""
    for name in names:
        if name in defaults:
            seen_default = name
        elif seen_default:
            raise TypeError(f"non-default argument {name!r} follows default argument")
    field_names = tuple(names)

    if slots:
        namespace = dict(body)
        for name in field_names:
            namespace.pop(name, None)
        namespace.pop("__dict__", None)
        namespace.pop("__weakref__", None)
        own = tuple(n for n in field_names if not any(n in getattr(b, "__slots__", ()) for b in cls.__mro__[1:]))
        namespace["__slots__"] = own
        qualname = body.get("__qualname__")
        cls = type(cls)(cls.__name__, cls.__bases__, namespace)
        if qualname is not None:
            cls.__qualname__ = qualname

    cls.__record_fields__ = field_names  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__record_values__ = staticmethod(_values_getter(field_names))  # type: ignore[attr-defined]
    cls.__match_args__ = field_names  # type: ignore[attr-defined,misc]
    cls.__init__ = _init_for(field_names, defaults)  # type: ignore[misc]
    if "__repr__" not in body:
        cls.__repr__ = _repr  # type: ignore[assignment]
    if "__eq__" not in body:
        cls.__eq__ = _eq  # type: ignore[assignment]
    if "__hash__" not in body or body["__hash__"] is None:
        cls.__hash__ = _hash  # type: ignore[assignment]
    cls.__setattr__ = _setattr  # type: ignore[assignment]
    cls.__delattr__ = _delattr  # type: ignore[assignment]
    cls.__reduce__ = _reduce  # type: ignore[assignment]
    cls.__replace__ = _replace_dunder  # type: ignore[attr-defined]  # copy.replace (3.13)
    cls.__dataclass_fields__ = _DataclassFields()  # type: ignore[attr-defined]
    cls.__dataclass_params__ = _DataclassParams(slots)  # type: ignore[attr-defined]
    return cls


if TYPE_CHECKING:
    @overload
    def record(cls: type[_T], /) -> type[_T]: ...
    @overload
    def record(*, slots: bool = False) -> Any: ...


@dataclass_transform(frozen_default=True)
def record(cls: Any = None, /, *, slots: bool = False) -> Any:
    """Decorate a class as a frozen record: ``@record`` or ``@record(slots=True)``."""
    if cls is None:
        return lambda c: _process(c, slots)
    return _process(cls, slots)


def field_names(obj: Any) -> tuple[str, ...]:
    """The fields of a record class or instance, in order."""
    names: tuple[str, ...] = getattr(obj, FIELDS)
    return names


def is_record(obj: Any) -> bool:
    return hasattr(obj if isinstance(obj, type) else type(obj), FIELDS)


def replace(obj: _T, **changes: Any) -> _T:
    """A copy of a record with some fields changed (as ``dataclasses.replace``)."""
    for name in getattr(obj, FIELDS):
        if name not in changes:
            changes[name] = getattr(obj, name)
    new: _T = obj.__class__(**changes)
    return new
