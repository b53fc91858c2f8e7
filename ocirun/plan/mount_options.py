"""Mount options of config.json → mount(2) flags, propagation, mount_setattr
attributes and fs-specific data, with runc's meaning for every option it knows."""

from __future__ import annotations

from ocirun.util.record import record

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

#: The flags a bind remount (MS_BIND|MS_REMOUNT) sets per mount point.
PER_MOUNT_FLAGS = (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOSYMFOLLOW | MS_NOATIME
                   | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

#: option -> (clear?, flag); as runc's parseMountOptions.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "sync": (False, MS_SYNCHRONOUS),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

#: Recursive mount attributes (mount_setattr with AT_RECURSIVE): option -> (clear, set).
RECURSIVE_OPTIONS: dict[str, tuple[int, int]] = {
    "rro": (0, MOUNT_ATTR_RDONLY),
    "rrw": (MOUNT_ATTR_RDONLY, 0),
    "rnosuid": (0, MOUNT_ATTR_NOSUID),
    "rsuid": (MOUNT_ATTR_NOSUID, 0),
    "rnodev": (0, MOUNT_ATTR_NODEV),
    "rdev": (MOUNT_ATTR_NODEV, 0),
    "rnoexec": (0, MOUNT_ATTR_NOEXEC),
    "rexec": (MOUNT_ATTR_NOEXEC, 0),
    "rnodiratime": (0, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (MOUNT_ATTR_NODIRATIME, 0),
    "rrelatime": (MOUNT_ATTR__ATIME, MOUNT_ATTR_RELATIME),
    "rnorelatime": (MOUNT_ATTR__ATIME, 0),
    "rnoatime": (MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME),
    "ratime": (MOUNT_ATTR__ATIME, 0),
    "rstrictatime": (MOUNT_ATTR__ATIME, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (MOUNT_ATTR__ATIME, 0),
    "rnosymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0),
}

#: Options that are about the mount's id mapping; handled separately.
IDMAP_OPTIONS = frozenset({"idmap", "ridmap"})
#: Why an id-mapped mount that is not a bind is refused (runc 1.2: "id-mapped
#: mounts are only supported for bind-mounts").
IDMAP_BIND_ONLY = "idmap/ridmap/uidMappings: only bind mounts can be id-mapped"


@record
class ParsedOptions:
    flags: int
    propagation: int
    attr_set: int
    attr_clr: int
    data: tuple[str, ...]
    idmap: str | None  # "idmap", "ridmap" or None
    tmpcopyup: bool = False  # runc's extension: a tmpfs starts with the directory's contents

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def is_idmapped_non_bind(mount) -> bool:
    """A config mount (ocirun.spec.model.Mount) that asks for an id mapping but
    is not a bind (type "bind", or a bind/rbind option), or is a cgroup mount
    (which ocirun makes itself)."""
    parsed = parse_mount_options(tuple(mount.options or ()))
    if not (parsed.idmap or mount.uid_mappings or mount.gid_mappings):
        return False
    fstype = mount.type or ""
    return fstype in ("cgroup", "cgroup2") or not (parsed.is_bind or fstype == "bind")


def parse_mount_options(options: tuple[str, ...] | list[str]) -> ParsedOptions:
    flags = 0
    propagation = 0
    attr_set = 0
    attr_clr = 0
    data: list[str] = []
    idmap: str | None = None
    tmpcopyup = False
    for opt in options:
        if opt in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION_OPTIONS:
            propagation = PROPAGATION_OPTIONS[opt]
        elif opt in RECURSIVE_OPTIONS:
            clr, st = RECURSIVE_OPTIONS[opt]
            attr_clr |= clr
            attr_set = (attr_set & ~clr) | st
        elif opt in IDMAP_OPTIONS:
            idmap = opt
        elif opt == "tmpcopyup":
            tmpcopyup = True  # acted on for tmpfs only, as runc does
        else:
            data.append(opt)
    return ParsedOptions(flags, propagation, attr_set, attr_clr, tuple(data), idmap, tmpcopyup)
