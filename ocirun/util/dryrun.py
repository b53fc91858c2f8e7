"""Recording what create's host-changing steps do, or would do (``ocirun explain``).

The cgroup drivers (ocirun/cgroups/v1.py, v2.py) decide which directories to
make and which file gets which value; they write through the few functions of
ocirun/cgroups/base.py. Those ask :func:`current`: inside ``with Recording():``
(this thread only) every mkdir, cgroup file write and device program is
appended to ``Recording.actions``, and, in a *dry run*, not done. So explain
runs the very code create runs, and create's decisions are never copied.

A dry run still has to answer the drivers' reads of a cgroup that does not
exist yet. It answers them as a fresh cgroup would:

* a file the recording wrote reads back as written (``cgroup.subtree_control``
  as the real content plus the ``+controller`` writes);
* in a directory that would be new: ``cgroup.controllers`` is what the
  parent's ``cgroup.subtree_control`` would enable, ``cgroup.subtree_control``
  and v1's ``cpuset.cpus``/``cpuset.mems`` are empty, v2's ``cpu.max`` is
  ``max 100000``, and any other v1 file reads as in the hierarchy's root
  (a new cgroup's defaults: no limits);
* whether a file exists there (the drivers choose between ``blkio.weight``
  and ``blkio.bfq.weight`` that way, and a missing file is create's error):
  as in the nearest existing directory above it, unless that is the
  hierarchy's root (which lacks files every other cgroup has: v1's pids.max,
  v2's memory.max), else as in one of that directory's subdirectories (v2:
  one that has the file's controller); without any, v1 goes by the root and
  v2 by what the kernel has registered (BFQ's files), else the file is taken
  to exist.

``Recording(dry_run=False)`` records and also does everything (tests compare
what create did with what explain said it would do).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: What a fresh cgroup's file reads before anything is written to it.
_FRESH = {"cgroup.subtree_control": "", "cpuset.cpus": "", "cpuset.mems": ""}
_FRESH_V2 = {"cpu.max": "max 100000"}


def current() -> Recording | None:
    """The recording active in this thread, or None (do everything for real)."""
    from ocirun.util.scoped import DRY_RUN

    return DRY_RUN.get()


class Recording:
    """``with Recording() as rec:`` -- then ``rec.actions``, in order, each a dict:
    ``{"op": "mkdir", "path"}``, ``{"op": "write", "path", "value", "for"}`` or
    ``{"op": "device-program", "path", "defaultAllow", "exceptions"}``."""

    def __init__(self, *, dry_run: bool = True) -> None:
        self.dry_run = dry_run
        self.actions: list[dict[str, Any]] = []
        self._written: dict[str, str] = {}
        #: directories that would be made -> the root of their hierarchy
        self._new: dict[str, str] = {}
        self._setting: Any = None

    def __enter__(self) -> Recording:
        from ocirun.util.scoped import DRY_RUN

        self._setting = DRY_RUN.set(self)
        self._setting.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._setting.__exit__(*exc)

    # ------------------------------------------------------------------ what is done

    def mkdir(self, path: str, hierarchy_root: str) -> None:
        self.actions.append({"op": "mkdir", "path": path})
        self._new[path] = hierarchy_root

    def write(self, path: str, value: str, what: str = "") -> None:
        action = {"op": "write", "path": path, "value": value}
        if what:
            action["for"] = what
        self.actions.append(action)
        if os.path.basename(path) == "cgroup.subtree_control":
            enabled = set((self._read(path) or "").split())
            for token in value.split():
                if token.startswith("+"):
                    enabled.add(token[1:])
                elif token.startswith("-"):
                    enabled.discard(token[1:])
            value = " ".join(sorted(enabled))
        self._written[path] = value

    def device_program(self, path: str, default_allow: bool, exceptions: list) -> None:
        self.actions.append({
            "op": "device-program", "path": path, "defaultAllow": default_allow,
            # -1 (any) as null, as in the document's device rules
            "exceptions": [{"type": t, "major": None if major < 0 else major,
                            "minor": None if minor < 0 else minor, "access": access}
                           for (t, major, minor), access in exceptions],
        })

    # ------------------------------------------------------------------ what is seen

    def is_new(self, directory: str) -> bool:
        return directory in self._new

    def isdir(self, path: str) -> bool:
        return path in self._new or os.path.isdir(path)

    def read(self, path: str) -> str | None:
        """The file's content as the dry run sees it; None when it cannot be read."""
        return self._read(path)

    def _read(self, path: str) -> str | None:
        if path in self._written:
            return self._written[path]
        directory, name = os.path.split(path)
        if directory in self._new:
            if name in _FRESH:
                return _FRESH[name]
            if name == "cgroup.controllers":
                return self._read(os.path.join(os.path.dirname(directory), "cgroup.subtree_control"))
            root = self._new[directory]
            if os.path.exists(os.path.join(root, "cgroup.controllers")):  # v2
                return _FRESH_V2.get(name)
            return _read_real(os.path.join(root, name))
        return _read_real(path)

    def exists(self, path: str) -> bool:
        if path in self._written:
            return True
        directory, name = os.path.split(path)
        if directory not in self._new:
            return os.path.exists(path)
        if name.startswith("cgroup."):
            return True  # the core files: in every cgroup
        controller = name.split(".", 1)[0]
        template = self._template(directory, controller)
        if template is None:
            return _kernel_provides(name)
        return os.path.exists(os.path.join(template, name))

    def _template(self, directory: str, controller: str) -> str | None:
        """An existing cgroup whose files a new ``directory`` would have too (see the
        module docstring); None if there is none to go by."""
        root = self._new[directory]
        v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))
        above = directory
        while above in self._new:
            above = os.path.dirname(above)
        if v2 and controller not in (self._read(os.path.join(directory, "cgroup.controllers")) or "").split():
            return None  # not enabled there: the driver refuses it first, as in create
        # a hierarchy's root lacks files every other cgroup has (v1 pids.max, v2 memory.max...)
        candidates = [above] if above != root else []
        try:
            candidates += sorted(e.path for e in os.scandir(above) if e.is_dir(follow_symlinks=False))
        except OSError:
            pass
        for d in candidates:
            if not v2 or controller in (_read_real(os.path.join(d, "cgroup.controllers")) or "").split():
                return d
        return None if v2 else root


def _kernel_provides(name: str) -> bool:
    """Without an existing cgroup to go by (a bare v2 hierarchy: nothing below the
    root, which lacks these files): BFQ's files exist once the bfq I/O scheduler is
    registered (it is then listed in every device's queue/scheduler); any other
    file is taken to exist (a missing one is create's error when it is written)."""
    if ".bfq." not in name:
        return True
    try:
        devices = os.listdir("/sys/block")
    except OSError:
        return False
    for dev in devices:
        text = _read_real(f"/sys/block/{dev}/queue/scheduler") or ""
        if "bfq" in text.replace("[", " ").replace("]", " ").split():
            return True
    return False


def _read_real(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
