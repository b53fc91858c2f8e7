"""One contiguous buffer for the C structs of a plan, and what it takes to move it.

The shim's plan (shim_cdef.h: struct ocirun_plan and everything it points to) is
built in an :class:`Arena`: every struct, array and string is carved out of one
zeroed buffer. On the direct path the C reads it in place. A helper's worker
sends the buffer to the calling front end, which clones the container from its
own copy (docs/helper.md); for that it needs only two tables, computed here from
cffi's own description of the types, with no code per struct:

- the *relocations*: the offset of every non-NULL pointer in the buffer (all of
  them point into it); the front end adds (its copy's address - ours) to each;
- the *fd slots*: the offset of every int field that holds an fd (FD_FIELDS),
  and of every element of an int array made with ``new(..., fds=True)``
  (plan.stdio), with the fd; the worker passes the fds (SCM_RIGHTS) and the
  front end writes its numbers for them there. Fd fields start as -1 (no fd).

A field added to a struct needs nothing here, unless it holds an fd: then it is
named in FD_FIELDS (or its array is made with ``fds=True``). Numbers that are
not fds of ours (process.absent_fds: numbers of the caller's fd table, the
same in the front end) are plain ints.
"""

from __future__ import annotations

import struct

#: int fields that hold an fd of the parent (-1: none), by struct.
FD_FIELDS: dict[str, tuple[str, ...]] = {
    "struct ocirun_nsjoin": ("fd",),
    "struct ocirun_mount": ("tree_fd",),
}

_ALIGN = 16


class ArenaFull(Exception):
    """The buffer is too small: build again with a larger one."""


class Arena:
    """A zeroed buffer of ``size`` bytes; :meth:`new` carves typed objects out of it."""

    def __init__(self, ffi, size: int) -> None:
        self.ffi = ffi
        self.buf = ffi.new("char[]", size)  # zeroed; owns the memory
        self.view = ffi.buffer(self.buf)
        self.base = int(ffi.cast("uintptr_t", self.buf))
        self.size = size
        self.used = 0
        #: (offset, item type, count) of every object, for the tables
        self.objects: list[tuple[int, object, int]] = []
        #: (offset, count) of the int arrays that hold fds
        self.fd_arrays: list[tuple[int, int]] = []

    def new(self, ctype: str, init=None, fds: bool = False):
        """As ``ffi.new(ctype, init)`` for "T *" (one zeroed T) and "T[]" (``init``: a
        length, bytes or a list), but in the arena; a ``T *`` to it. ``fds``: an int
        array whose elements are fds (-1: none)."""
        ffi = self.ffi
        if ctype.endswith("[]"):
            item = ffi.typeof(ctype[:-2].strip())
            if isinstance(init, int):
                count = init
            elif isinstance(init, bytes) and ffi.sizeof(item) == 1 and ctype.startswith("char"):
                count = len(init) + 1  # as ffi.new("char[]", b): with the NUL
            else:
                count = len(init)
        else:
            item = ffi.typeof(ctype).item
            count = 1
        size = ffi.sizeof(item) * count
        off = (self.used + _ALIGN - 1) & ~(_ALIGN - 1)
        if off + size > self.size:
            raise ArenaFull
        self.used = off + size
        self.objects.append((off, item, count))
        if fds:
            self.fd_arrays.append((off, count))
        ptr = ffi.cast(ffi.getctype(item, "*"), self.base + off)
        _, fd_offsets = _slots(ffi, item)
        if fd_offsets:  # an fd field is -1 (none) until set: zero would be stdin
            step = ffi.sizeof(item)
            for i in range(count):
                for f in fd_offsets:
                    _INT.pack_into(self.view, off + i * step + f, -1)
        if isinstance(init, bytes):
            ffi.memmove(ptr, init, len(init))
        elif init is not None and not isinstance(init, int):
            for i, v in enumerate(init):
                ptr[i] = v
        return ptr

    def offset_of(self, ptr) -> int:
        return int(self.ffi.cast("uintptr_t", ptr)) - self.base

    def contents(self) -> bytes:
        return self.ffi.buffer(self.buf, self.used)[:]

    def tables(self) -> tuple[list[int], list[tuple[int, int]]]:
        """(relocations, fd slots): see the module docstring. ValueError if a pointer
        leads out of the arena (something not allocated here)."""
        data = self.view
        relocs: list[int] = []
        fd_slots: list[tuple[int, int]] = []
        for off, item, count in self.objects:
            pointers, fds = _slots(self.ffi, item)
            if not pointers and not fds:
                continue
            step = self.ffi.sizeof(item)
            for i in range(count):
                at = off + i * step
                for p in pointers:
                    (value,) = _PTR.unpack_from(data, at + p)
                    if value:
                        if not self.base <= value < self.base + self.used:
                            raise ValueError(f"pointer at offset {at + p} leads out of the arena")
                        relocs.append(at + p)
                for f in fds:
                    (fd,) = _INT.unpack_from(data, at + f)
                    if fd >= 0:
                        fd_slots.append((at + f, fd))
        for off, count in self.fd_arrays:
            for i in range(count):
                (fd,) = _INT.unpack_from(data, off + 4 * i)
                if fd >= 0:
                    fd_slots.append((off + 4 * i, fd))
        return relocs, fd_slots


_PTR = struct.Struct("=Q")
_INT = struct.Struct("=i")
_SLOTS: dict[object, tuple[tuple[int, ...], tuple[int, ...]]] = {}


def _slots(ffi, ctype) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Offsets of the pointers and of the fd fields within one ``ctype``."""
    cached = _SLOTS.get(ctype)
    if cached is None:
        pointers: list[int] = []
        fds: list[int] = []
        _walk(ffi, ctype, 0, pointers, fds)
        cached = _SLOTS[ctype] = (tuple(pointers), tuple(fds))
    return cached


def _walk(ffi, ctype, base: int, pointers: list[int], fds: list[int]) -> None:
    kind = ctype.kind
    if kind == "pointer":
        pointers.append(base)
    elif kind == "array":
        step = ffi.sizeof(ctype.item)
        for i in range(ctype.length):
            _walk(ffi, ctype.item, base + i * step, pointers, fds)
    elif kind == "struct":
        fd_names = FD_FIELDS.get(ctype.cname, ())
        for name, field in ctype.fields:
            if name in fd_names:
                fds.append(base + field.offset)
            else:
                _walk(ffi, field.type, base + field.offset, pointers, fds)
    elif kind == "union":
        raise ValueError(f"{ctype.cname}: unions are not relocatable")
