"""The spec's MUSTs that a JSON Schema cannot express, one small function each.

Each rule takes the parsed config (a ``dict``; it may be schema-invalid, so
every rule reads defensively and skips what it cannot interpret — the schema
check reports those) and yields :class:`~ocirun.errors.Problem` objects whose
path names the offending field (``$.linux.namespaces[2].path``).

:func:`check_rules` runs them all and returns every problem; the loader puts
them, with the schema problems, into one ``ConfigError``. :func:`warnings`
lists things the spec allows but deprecates (they never fail the config).

Every rule is registered with the spec section it enforces; docs/config-
validation.md lists them, and a unit test keeps that list complete.
"""

from __future__ import annotations

import os
import re

from ocirun.errors import Problem
from ocirun.linux.capabilities import CAPABILITIES as _CAP_NUMBERS
from ocirun.spec._paths import json_path
from ocirun.util.record import record

TYPE_CHECKING = False  # typing costs every `create` ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

    Path = Sequence[str | int]
    RuleFn = Callable[[Mapping[str, Any], "Context"], Iterable[Problem]]


@record
class Context:
    """What rules may know besides the config: the bundle directory (None: skip fs checks)."""

    bundle: str | None = None



@record
class Rule:
    name: str
    section: str
    check: RuleFn


RULES: list[Rule] = []


def rule(section: str) -> Callable[[RuleFn], RuleFn]:
    """Register a rule; ``section`` is the spec file#anchor (or "runc" for a runc-compatible policy)."""

    def register(fn: RuleFn) -> RuleFn:
        RULES.append(Rule(fn.__name__, section, fn))
        return fn

    return register


def check_rules(doc: Any, bundle: str | None = None) -> list[Problem]:
    """Every semantic problem in ``doc`` (a parsed config.json), in rule order."""
    if not isinstance(doc, dict):
        return []  # the schema check reports "must be an object"
    ctx = Context(bundle)
    problems: list[Problem] = []
    for r in RULES:
        problems.extend(r.check(doc, ctx))
    return problems


# --------------------------------------------------------------------------- helpers


def _p(path: Path, message: str) -> Problem:
    return Problem(json_path(path), message)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, object) for each object in a list."""
    for i, item in enumerate(_arr(value)):
        if isinstance(item, dict):
            yield i, item


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    for i, item in enumerate(_arr(value)):
        if isinstance(item, str):
            yield i, item


def _linux(doc: Mapping[str, Any]) -> dict[str, Any]:
    return _obj(doc.get("linux"))


def _namespaces(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Namespace type → its (first) entry."""
    out: dict[str, dict[str, Any]] = {}
    for _, ns in _items(_linux(doc).get("namespaces")):
        kind = ns.get("type")
        if isinstance(kind, str):
            out.setdefault(kind, ns)
    return out


def _has_ns(doc: Mapping[str, Any], kind: str) -> bool:
    """The container gets a namespace of this kind other than the runtime's (new or joined)."""
    return kind in _namespaces(doc)


def _new_ns(doc: Mapping[str, Any], kind: str) -> bool:
    ns = _namespaces(doc).get(kind)
    return ns is not None and not ns.get("path")


_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*\Z")


def _list_problem(text: str) -> str | None:
    """Why a cpu/node list such as ``0-3,7`` is malformed, or None."""
    text = text.strip()
    if not text:
        return None
    if not _CPU_LIST.match(text.replace(" ", "")):
        return f"{text!r} is not a list like '0-3,7'"
    for part in text.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            return f"range {part!r} is backwards"
    return None


def _env_problem(entry: str) -> str | None:
    if "\0" in entry:
        return "contains a NUL byte"
    name, eq, _ = entry.partition("=")
    if not eq:
        return f"{entry!r} is not in KEY=value form"
    if not name:
        return f"{entry!r} has an empty name"
    return None


# --------------------------------------------------------------------------- config.md


_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)
#: Highest minor version of the 1.x spec this runtime implements (v1.3.0).
MAX_MINOR = 3


@rule("config.md#configSpecificationVersion")
def oci_version(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """ociVersion is SemVer 2.0.0 and names a 1.x release up to 1.3 (pre-releases accepted)."""
    version = doc.get("ociVersion")
    if not isinstance(version, str):
        return
    m = _SEMVER.match(version)
    if m is None:
        yield _p(["ociVersion"], f"{version!r} is not a SemVer 2.0.0 version")
    elif int(m.group(1)) != 1 or int(m.group(2)) > MAX_MINOR:
        yield _p(["ociVersion"], f"unsupported version {version!r}: ocirun supports 1.0.0 to 1.{MAX_MINOR}.x")


@rule("config.md#configRoot")
def root_present(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """root is REQUIRED on Linux, and root.path must name something."""
    root = doc.get("root")
    if root is None:
        yield _p(["root"], "required on Linux")
    elif isinstance(root, dict) and root.get("path") == "":
        yield _p(["root", "path"], "must not be empty")


@rule("config.md#configRoot")
def rootfs_exists(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """A directory MUST exist at root.path (relative paths are relative to the bundle)."""
    path = _obj(doc.get("root")).get("path")
    if ctx.bundle is None or not isinstance(path, str) or not path or "\0" in path:
        return
    full = os.path.join(ctx.bundle, path)
    if not os.path.exists(full):
        yield _p(["root", "path"], f"rootfs directory {full} does not exist")
    elif not os.path.isdir(full):
        yield _p(["root", "path"], f"rootfs {full} is not a directory")


@rule("runc")
def rootfs_not_symlink(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """root.path is no symlink and passes through none (runc's check and words): a rootfs
    that is a link to "/" would run the container on the host's root filesystem. The
    bundle directory itself may be reached through one (it is resolved first, as runc does)."""
    path = _obj(doc.get("root")).get("path")
    if ctx.bundle is None or not isinstance(path, str) or not path or "\0" in path:
        return
    full = os.path.normpath(os.path.join(os.path.realpath(ctx.bundle), path))
    real = os.path.realpath(full)
    if real != full and os.path.exists(full):
        yield _p(["root", "path"], f"invalid rootfs: not an absolute path, or a symlink: {full} "
                                   f"resolves to {real}")


@rule("config.md#configMounts")
def mount_destination(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """A mount destination names a path (relative ones are deprecated, see warnings()) other
    than the container's root: "/", "/..", ".", "//" would cover the rootfs itself."""
    for i, m in _items(doc.get("mounts")):
        dest = m.get("destination")
        if dest == "":
            yield _p(["mounts", i, "destination"], "must not be empty")
        elif isinstance(dest, str) and "\0" in dest:
            yield _p(["mounts", i, "destination"], "contains a NUL byte")
        elif isinstance(dest, str) and os.path.normpath("/" + dest.lstrip("/")) == "/":
            yield _p(["mounts", i, "destination"],
                     f"{dest!r} is the container's root directory: a mount cannot replace the "
                     "rootfs (root.path names it)")


_IDMAP_OPTIONS = ("idmap", "ridmap")


@rule("config.md#configPOSIXMounts")
def mount_id_mappings(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Mount uidMappings and gidMappings come together; idmap/ridmap without them
    need the container's user namespace to borrow from. (Mappings without an
    idmap/ridmap option are a warning: the spec says SHOULD; applied as idmap.)"""
    user_ns = _has_ns(doc, "user")
    for i, m in _items(doc.get("mounts")):
        options = [o for _, o in _strings(m.get("options"))]
        idmapped = any(o in _IDMAP_OPTIONS for o in options)
        has_uid = "uidMappings" in m
        has_gid = "gidMappings" in m
        if has_uid != has_gid:
            missing = "gidMappings" if has_uid else "uidMappings"
            yield _p(["mounts", i, missing], "required when the other of uidMappings/gidMappings is given")
        if idmapped and not (has_uid or has_gid) and not user_ns:
            yield _p(
                ["mounts", i, "options"],
                "idmap/ridmap without uidMappings/gidMappings needs a user namespace",
            )
        for key in ("uidMappings", "gidMappings"):
            for j, mapping in _items(m.get(key)):
                if mapping.get("size") == 0:
                    yield _p(["mounts", i, key, j, "size"], "must be greater than 0")


@rule("config.md#configProcess")
def process_args(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """process.args needs at least one entry (non-Windows); no entry may contain NUL."""
    process = doc.get("process")
    if not isinstance(process, dict):
        return
    args = process.get("args")
    if args is None or args == []:
        yield _p(["process", "args"], "must have at least one entry")
    for i, arg in _strings(args):
        if "\0" in arg:
            yield _p(["process", "args", i], "contains a NUL byte")


@rule("config.md#configProcess")
def process_cwd(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """process.cwd MUST be an absolute path."""
    cwd = _obj(doc.get("process")).get("cwd")
    if isinstance(cwd, str) and not cwd.startswith("/"):
        yield _p(["process", "cwd"], f"{cwd!r} is not an absolute path")


@rule("config.md#configProcess")
def process_env(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """process.env entries have environ's KEY=value form."""
    for i, entry in _strings(_obj(doc.get("process")).get("env")):
        why = _env_problem(entry)
        if why:
            yield _p(["process", "env", i], why)


_RLIMITS = frozenset(
    {
        "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
        "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
        "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
    }
)


@rule("config.md#configPOSIXProcess")
def process_rlimits(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """rlimit types are getrlimit(2)'s, not repeated, and soft <= hard."""
    seen: dict[str, int] = {}
    for i, rl in _items(_obj(doc.get("process")).get("rlimits")):
        kind = rl.get("type")
        if isinstance(kind, str):
            if kind not in _RLIMITS:
                yield _p(["process", "rlimits", i, "type"], f"unknown rlimit {kind!r}")
            if kind in seen:
                yield _p(["process", "rlimits", i, "type"], f"duplicate {kind} (also at index {seen[kind]})")
            else:
                seen[kind] = i
        soft, hard = _int(rl.get("soft")), _int(rl.get("hard"))
        if soft is not None and hard is not None and soft > hard:
            yield _p(["process", "rlimits", i, "soft"], f"soft limit {soft} exceeds hard limit {hard}")


#: capabilities(7), numbered 0 (CAP_CHOWN) to 40 (CAP_CHECKPOINT_RESTORE); one table, in ocirun.linux.
CAPABILITIES = tuple(_CAP_NUMBERS)
_CAPABILITY_SET = frozenset(CAPABILITIES)
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


@rule("config.md#configLinuxProcess")
def process_capabilities(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Capability names are capabilities(7)'s (a name the kernel lacks is a warning, later)."""
    caps = _obj(_obj(doc.get("process")).get("capabilities"))
    for kind in CAPABILITY_SETS:
        for i, name in _strings(caps.get(kind)):
            if name not in _CAPABILITY_SET:
                yield _p(["process", "capabilities", kind, i], f"unknown capability {name!r}")


@rule("config.md#configPOSIXUser")
def process_user(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """A POSIX user has uid and gid; umask holds permission bits only."""
    user = _obj(doc.get("process")).get("user")
    if not isinstance(user, dict):
        return
    for key in ("uid", "gid"):
        if key not in user:
            yield _p(["process", "user"], f"{key!r} is required on Linux")
    umask = _int(user.get("umask"))
    if umask is not None and umask > 0o777:
        yield _p(["process", "user", "umask"], f"{umask} is not a umask (0 to 511, i.e. 0o777)")


#: The highest uid/gid runc accepts (libcontainer/user: 2^31-1, "for 32-bit systems
#: compatibility"). Above it lies 4294967295, (uid_t)-1, which setresuid(2), setgroups(2)
#: and chown(2) take as "leave unchanged": a process or a device meant for that id would
#: stay root's.
MAX_ID = 2**31 - 1
_ID_RANGE = f"uids and gids must be in range 0-{MAX_ID}"


def _id_problem(value: Any) -> str | None:
    """Why an id (already a uint32 for the schema) is refused, or None."""
    n = _int(value)
    if n is None or 0 <= n <= MAX_ID:
        return None
    return f"{n} is out of range: {_ID_RANGE}"


@rule("runc")
def process_user_ids(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """process.user uid, gid and additionalGids lie in 0..2147483647 (runc's range and words;
    4294967295 would leave the process root)."""
    user = _obj(_obj(doc.get("process")).get("user"))
    for key in ("uid", "gid"):
        why = _id_problem(user.get(key))
        if why:
            yield _p(["process", "user", key], why)
    for i, gid in enumerate(_arr(user.get("additionalGids"))):
        why = _id_problem(gid)
        if why:
            yield _p(["process", "user", "additionalGids", i], why)


@rule("config.md#configLinuxProcess")
def process_oom_score_adj(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """oomScoreAdj lies in the kernel's range -1000..1000."""
    value = _int(_obj(doc.get("process")).get("oomScoreAdj"))
    if value is not None and not -1000 <= value <= 1000:
        yield _p(["process", "oomScoreAdj"], f"{value} is outside -1000..1000")


@rule("config.md#configLinuxProcess")
def process_scheduler(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """scheduler values the kernel accepts: nice -20..19, priority only (1..99) for
    SCHED_FIFO/SCHED_RR, runtime/deadline/period only for SCHED_DEADLINE (as runc)."""
    sched = _obj(_obj(doc.get("process")).get("scheduler"))
    if not sched:
        return
    base = ["process", "scheduler"]
    policy = sched.get("policy")
    nice = _int(sched.get("nice"))
    if nice is not None and not -20 <= nice <= 19:
        yield _p([*base, "nice"], f"{nice} is outside -20..19")
    priority = _int(sched.get("priority"))
    if priority is not None:
        if policy in ("SCHED_FIFO", "SCHED_RR"):
            if not 1 <= priority <= 99:
                yield _p([*base, "priority"], f"{priority} is outside 1..99 for {policy}")
        elif priority != 0:
            yield _p([*base, "priority"], f"only SCHED_FIFO and SCHED_RR take a priority, not {policy}")
    if policy != "SCHED_DEADLINE":
        for key in ("runtime", "deadline", "period"):
            if sched.get(key):
                yield _p([*base, key], f"only SCHED_DEADLINE takes {key}")


@rule("config.md#configLinuxProcess")
def process_io_priority(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """ioPriority.priority ranges from 0 (highest) to 7 (lowest)."""
    prio = _int(_obj(_obj(doc.get("process")).get("ioPriority")).get("priority"))
    if prio is not None and not 0 <= prio <= 7:
        yield _p(["process", "ioPriority", "priority"], f"{prio} is outside 0..7")


@rule("config.md#configLinuxProcess")
def process_exec_cpu_affinity(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """execCPUAffinity initial/final are CPU lists like 0-3,7."""
    aff = _obj(_obj(doc.get("process")).get("execCPUAffinity"))
    for key in ("initial", "final"):
        value = aff.get(key)
        if isinstance(value, str):
            why = _list_problem(value)
            if why:
                yield _p(["process", "execCPUAffinity", key], why)


@rule("runc")
def hostname_needs_uts(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """hostname/domainname only with a UTS namespace, or they would rename the host (runc)."""
    if _has_ns(doc, "uts"):
        return
    for key in ("hostname", "domainname"):
        if doc.get(key):
            yield _p([key], "cannot be set without a UTS namespace in linux.namespaces")


_HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


@rule("config.md#configHooks")
def hooks(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Hook path MUST be absolute; env entries have KEY=value form."""
    all_hooks = _obj(doc.get("hooks"))
    for kind in _HOOK_KINDS:
        for i, hook in _items(all_hooks.get(kind)):
            path = hook.get("path")
            if isinstance(path, str) and not path.startswith("/"):
                yield _p(["hooks", kind, i, "path"], f"{path!r} is not an absolute path")
            for j, entry in _strings(hook.get("env")):
                why = _env_problem(entry)
                if why:
                    yield _p(["hooks", kind, i, "env", j], why)


@rule("config.md#configAnnotations")
def annotation_keys(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Annotation keys MUST NOT be empty."""
    if "" in _obj(doc.get("annotations")):
        yield _p(["annotations", ""], "annotation keys must not be empty")


# --------------------------------------------------------------------------- config-linux.md


@rule("config-linux.md#configLinuxNamespaces")
def namespaces(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """No namespace type twice; a namespace path MUST be absolute."""
    seen: dict[str, int] = {}
    for i, ns in _items(_linux(doc).get("namespaces")):
        kind = ns.get("type")
        if isinstance(kind, str):
            if kind in seen:
                yield _p(["linux", "namespaces", i, "type"], f"duplicate {kind!r} namespace (also at index {seen[kind]})")
            else:
                seen[kind] = i
        path = ns.get("path")
        if isinstance(path, str) and path and not path.startswith("/"):
            yield _p(["linux", "namespaces", i, "path"], f"{path!r} is not an absolute path")


@rule("config-linux.md#configLinuxUserNamespaceMappings")
def user_namespace_mappings(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """uid/gid mappings only with a user namespace; a new user namespace needs both (runc);
    a mapping's size is at least 1."""
    linux = _linux(doc)
    has_uid = bool(_arr(linux.get("uidMappings")))
    has_gid = bool(_arr(linux.get("gidMappings")))
    if not _has_ns(doc, "user"):
        for key, present in (("uidMappings", has_uid), ("gidMappings", has_gid)):
            if present:
                yield _p(["linux", key], "given, but linux.namespaces has no user namespace")
    elif _new_ns(doc, "user"):
        for key, present in (("uidMappings", has_uid), ("gidMappings", has_gid)):
            if not present:
                yield _p(["linux", key], "required when a new user namespace is created")
    for key in ("uidMappings", "gidMappings"):
        for i, mapping in _items(linux.get(key)):
            if mapping.get("size") == 0:
                yield _p(["linux", key, i, "size"], "must be greater than 0")


#: user_namespaces(7): ids are 32-bit and (uid_t)-1 is never mapped, so a range ends at
#: 4294967294 at most; since Linux 4.15 a map holds at most 340 lines.
_ID_LIMIT = 2**32 - 1
_MAX_EXTENTS = 340


def _mapping_problems(path: list[str | int], mappings: Any) -> Iterator[Problem]:
    """The kernel's checks of one uid_map/gid_map, said before anything exists: each range
    within 0..4294967294 on both sides, no two ranges overlapping on either side."""
    seen: list[tuple[int, int, int, int]] = []  # (index, containerID, hostID, size)
    count = 0
    for i, mapping in _items(mappings):
        count += 1
        inner, outer, size = (_int(mapping.get(k)) for k in ("containerID", "hostID", "size"))
        if inner is None or outer is None or not size:
            continue  # the schema (or the size rule) reports it
        for key, first in (("containerID", inner), ("hostID", outer)):
            if first + size > _ID_LIMIT:
                yield _p([*path, i], f"{key} {first} + size {size} passes the last id ({_ID_LIMIT - 1})")
        for j, other_inner, other_outer, other_size in seen:
            for side, a, b in (("container", inner, other_inner), ("host", outer, other_outer)):
                if a < b + other_size and b < a + size:
                    yield _p([*path, i], f"its {side} ids {a}-{a + size - 1} overlap those of "
                                         f"[{j}] ({b}-{b + other_size - 1})")
        seen.append((i, inner, outer, size))
    if count > _MAX_EXTENTS:
        yield _p(path, f"{count} mappings: the kernel takes at most {_MAX_EXTENTS}")


@rule("config-linux.md#configLinuxUserNamespaceMappings")
def id_mapping_ranges(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Each uid/gid mapping (the container's and a mount's) stays within the 32-bit ids the
    kernel maps (id + size <= 4294967295); no two overlap; at most 340 (user_namespaces(7))."""
    linux = _linux(doc)
    for key in ("uidMappings", "gidMappings"):
        yield from _mapping_problems(["linux", key], linux.get(key))
    for i, m in _items(doc.get("mounts")):
        for key in ("uidMappings", "gidMappings"):
            yield from _mapping_problems(["mounts", i, key], m.get(key))


_CLOCKS = ("boottime", "monotonic")


@rule("config-linux.md#configLinuxTimeOffset")
def time_offsets(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """timeOffsets need a new time namespace; clocks are boottime and monotonic; nanosecs < 1e9."""
    offsets = _linux(doc).get("timeOffsets")
    if not isinstance(offsets, dict) or not offsets:
        return
    if not _new_ns(doc, "time"):
        yield _p(["linux", "timeOffsets"], "need a new time namespace (a time entry without path in linux.namespaces)")
    for clock, value in offsets.items():
        if clock not in _CLOCKS:
            yield _p(["linux", "timeOffsets", clock], f"unknown clock (time_namespaces(7) has {' and '.join(_CLOCKS)})")
        nanos = _int(_obj(value).get("nanosecs"))
        if nanos is not None and nanos >= 1_000_000_000:
            yield _p(["linux", "timeOffsets", clock, "nanosecs"], f"{nanos} is not below 1000000000")


_DEVICE_TYPE_BITS = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


@rule("config-linux.md#configLinuxDevices")
def devices(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Device path is a full (absolute) path, not repeated; c/b/u devices need major and minor."""
    seen: dict[str, int] = {}
    for i, dev in _items(_linux(doc).get("devices")):
        path = dev.get("path")
        if isinstance(path, str):
            if not path.startswith("/"):
                yield _p(["linux", "devices", i, "path"], f"{path!r} is not an absolute path")
            key = os.path.normpath(path) if path else path
            if key in seen:
                yield _p(["linux", "devices", i, "path"], f"duplicate device {path!r} (also at index {seen[key]})")
            else:
                seen[key] = i
        if dev.get("type") in ("c", "b", "u"):
            for key in ("major", "minor"):
                if key not in dev:
                    yield _p(["linux", "devices", i], f"{key!r} is required for type {dev['type']!r}")
        # podman and containerd send the file-type bits too (S_IFCHR | 0600): they must match.
        mode, kind = _int(dev.get("fileMode")), _DEVICE_TYPE_BITS.get(str(dev.get("type")))
        if mode is not None and kind is not None and mode & 0o170000 not in (0, kind):
            yield _p(["linux", "devices", i, "fileMode"],
                     f"{mode} (0o{mode:o}) has file-type bits that are not those of type {dev['type']!r}")


@rule("runc")
def device_owner_ids(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """linux.devices uid/gid lie in runc's id range (chown(2) takes 4294967295 as "unchanged":
    the node would stay root's)."""
    for i, dev in _items(_linux(doc).get("devices")):
        for key in ("uid", "gid"):
            why = _id_problem(dev.get(key))
            if why:
                yield _p(["linux", "devices", i, key], why)


_ID_OPTION = re.compile(r"(uid|gid)=(\d+)\Z")


@rule("runc")
def mount_option_ids(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Numeric uid=/gid= mount options (tmpfs, devpts, ...) lie in runc's id range."""
    for i, m in _items(doc.get("mounts")):
        for j, option in _strings(m.get("options")):
            match = _ID_OPTION.match(option)
            if match and int(match.group(2)) > MAX_ID:
                yield _p(["mounts", i, "options", j], f"{option!r}: {_ID_RANGE}")


_IFNAME_MAX = 15  # IFNAMSIZ - 1


def _ifname_problem(name: str, template_ok: bool) -> str | None:
    if not name:
        return "interface name must not be empty"
    if len(name) > _IFNAME_MAX:
        return f"interface name {name!r} is longer than {_IFNAME_MAX} characters"
    if name in (".", "..") or "/" in name or any(c.isspace() for c in name) or ":" in name:
        return f"{name!r} is not a valid interface name"
    if "%" in name and not (template_ok and name.count("%") == 1 and name.endswith("%d")):
        return f"{name!r} is not a valid interface name"
    return None


@rule("config-linux.md#configLinuxNetworkDevices")
def net_devices(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """netDevices move into the container's network namespace, which must exist; names are
    valid interface names (a new name may end in the template %d); no two share a name."""
    devs = _linux(doc).get("netDevices")
    if not isinstance(devs, dict) or not devs:
        return
    if not _has_ns(doc, "network"):
        yield _p(["linux", "netDevices"], "need a network namespace in linux.namespaces")
    for host_name, dev in devs.items():
        why = _ifname_problem(host_name, template_ok=False)
        if why:
            yield _p(["linux", "netDevices", host_name], why)
        name = _obj(dev).get("name")
        if isinstance(name, str):
            why = _ifname_problem(name, template_ok=True)
            if why:
                yield _p(["linux", "netDevices", host_name, "name"], why)
    # Two devices under one name in the container: the second move would fail (EEXIST).
    seen: dict[str, str] = {}
    for host_name, dev in devs.items():
        name = _obj(dev).get("name") or host_name
        if not isinstance(name, str) or name.endswith("%d"):
            continue
        if name in seen:
            yield _p(["linux", "netDevices", host_name],
                     f"{seen[name]!r} and {host_name!r} would both be {name!r} in the container")
        else:
            seen[name] = host_name


@rule("config-linux.md#configLinuxCgroupsPath")
def cgroups_path(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """cgroupsPath values ocirun considers invalid: NUL bytes, '..' components, the root cgroup."""
    path = _linux(doc).get("cgroupsPath")
    if not isinstance(path, str):
        return
    if "\0" in path:
        yield _p(["linux", "cgroupsPath"], "contains a NUL byte")
    elif ".." in re.split(r"[/:]", path):
        yield _p(["linux", "cgroupsPath"], f"{path!r} must not contain '..' components")
    elif path.startswith("/") and all(c in ("", ".") for c in path.split("/")):
        # "/" (or "//", "/."): the root of every hierarchy, which holds every process
        # of the host; the container's cgroup is killed and removed with it.
        yield _p(["linux", "cgroupsPath"], f"{path!r} names the root cgroup, not a cgroup of the container")


@rule("config-linux.md#configLinuxDeviceAllowedlist")
def resources_devices(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Device cgroup rules: type a, b or c; access made of r, w and m."""
    res = _obj(_linux(doc).get("resources"))
    for i, dev in _items(res.get("devices")):
        kind = dev.get("type")
        if isinstance(kind, str) and kind not in ("", "a", "b", "c"):
            yield _p(["linux", "resources", "devices", i, "type"], f"{kind!r} is not a, b or c")
        access = dev.get("access")
        if isinstance(access, str) and set(access) - set("rwm"):
            yield _p(["linux", "resources", "devices", i, "access"], f"{access!r} is not made of r, w and m")


@rule("config-linux.md#configLinuxCPU")
def resources_cpu(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """cpu.burst is no larger than a positive quota; cpus and mems are lists like 0-3,7."""
    cpu = _obj(_obj(_linux(doc).get("resources")).get("cpu"))
    quota, burst = _int(cpu.get("quota")), _int(cpu.get("burst"))
    if quota is not None and burst is not None and quota > 0 and burst > quota:
        yield _p(["linux", "resources", "cpu", "burst"], f"burst {burst} exceeds quota {quota}")
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if isinstance(value, str):
            why = _list_problem(value)
            if why:
                yield _p(["linux", "resources", "cpu", key], why)


@rule("config-linux.md#configLinuxBlockIO")
def resources_block_io(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Each weightDevice entry has weight or leafWeight (or both)."""
    bio = _obj(_obj(_linux(doc).get("resources")).get("blockIO"))
    for i, dev in _items(bio.get("weightDevice")):
        if "weight" not in dev and "leafWeight" not in dev:
            yield _p(["linux", "resources", "blockIO", "weightDevice", i], "needs weight or leafWeight")


@rule("config-linux.md#configLinuxRDMA")
def resources_rdma(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Each rdma entry has hcaHandles or hcaObjects (or both)."""
    rdma = _obj(_obj(_linux(doc).get("resources")).get("rdma"))
    for name, limits in rdma.items():
        if isinstance(limits, dict) and "hcaHandles" not in limits and "hcaObjects" not in limits:
            yield _p(["linux", "resources", "rdma", name], "needs hcaHandles or hcaObjects")


@rule("config-linux.md#configLinuxUnified")
def resources_unified(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """unified keys are cgroup v2 interface file names (controller.file), not paths."""
    unified = _obj(_obj(_linux(doc).get("resources")).get("unified"))
    for key in unified:
        if "/" in key or "\0" in key or key in (".", "..") or "." not in key.strip("."):
            yield _p(["linux", "resources", "unified", key], f"{key!r} is not a cgroup file name")


_CLOSID_BAD = re.compile(r"[/\n]")


@rule("config-linux.md#configLinuxIntelRdt")
def intel_rdt(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """closID is '/' or a directory name; schemata lines MUST NOT contain newlines."""
    rdt = _linux(doc).get("intelRdt")
    if not isinstance(rdt, dict):
        return
    clos = rdt.get("closID")
    if isinstance(clos, str) and clos != "/" and (clos in ("", ".", "..") or _CLOSID_BAD.search(clos)):
        yield _p(["linux", "intelRdt", "closID"], f"{clos!r} is not '/' or a directory name")
    for i, line in _strings(rdt.get("schemata")):
        if "\n" in line:
            yield _p(["linux", "intelRdt", "schemata", i], "must not contain newlines")


_SYSCTL_KEY = re.compile(r"[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_:@+-]+)*\Z")


@rule("config-linux.md#configLinuxSysctl")
def sysctl(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """Sysctl keys name a /proc/sys file of a namespace the container has (runc's
    policy and wording, ocirun.plan.sysctl; whether a joined netns is the host's
    is checked at create)."""
    from ocirun.plan.sysctl import refusal

    nss = {kind: ns.get("path") for kind, ns in _namespaces(doc).items()}
    for key in _obj(_linux(doc).get("sysctl")):
        path = ["linux", "sysctl", key]
        if not _SYSCTL_KEY.match(key) or ".." in key.replace("/", ".").split("."):
            yield _p(path, f"{key!r} is not a sysctl name like net.ipv4.ip_forward")
            continue
        why = refusal(key, nss)
        if why:
            yield _p(path, why)


_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_SECCOMP_MAX_ARGS = 6


@rule("config-linux.md#configLinuxSeccomp")
def seccomp(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """errnoRet only with actions that return an errno; listenerMetadata needs listenerPath;
    SCMP_ACT_NOTIFY needs listenerPath and is not a default action; arg index below 6."""
    sc = _linux(doc).get("seccomp")
    if not isinstance(sc, dict):
        return
    base = ["linux", "seccomp"]
    default = sc.get("defaultAction")
    if "defaultErrnoRet" in sc and isinstance(default, str) and default not in _ERRNO_ACTIONS:
        yield _p([*base, "defaultErrnoRet"], f"{default} does not return an errno")
    if "listenerMetadata" in sc and not sc.get("listenerPath"):
        yield _p([*base, "listenerMetadata"], "must not be set without listenerPath")
    if default == "SCMP_ACT_NOTIFY":
        yield _p([*base, "defaultAction"], "SCMP_ACT_NOTIFY cannot be the default action")
    notify_at: list[int] = []
    for i, call in _items(sc.get("syscalls")):
        action = call.get("action")
        if "errnoRet" in call and isinstance(action, str) and action not in _ERRNO_ACTIONS:
            yield _p([*base, "syscalls", i, "errnoRet"], f"{action} does not return an errno")
        if action == "SCMP_ACT_NOTIFY":
            notify_at.append(i)
        for j, name in _strings(call.get("names")):
            if not name:
                yield _p([*base, "syscalls", i, "names", j], "must not be empty")
        for j, arg in _items(call.get("args")):
            index = _int(arg.get("index"))
            if index is not None and index >= _SECCOMP_MAX_ARGS:
                yield _p([*base, "syscalls", i, "args", j, "index"], f"{index} is not a syscall argument index (0..5)")
    if notify_at and not sc.get("listenerPath"):
        yield _p([*base, "syscalls", notify_at[0], "action"], "SCMP_ACT_NOTIFY needs seccomp.listenerPath")


@rule("config-linux.md#configLinuxMaskedPaths")
def masked_and_readonly_paths(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """maskedPaths and readonlyPaths MUST be absolute paths."""
    linux = _linux(doc)
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in _strings(linux.get(key)):
            if not path.startswith("/"):
                yield _p(["linux", key, i], f"{path!r} is not an absolute path")


@rule("config-linux.md#configLinuxPersonality")
def personality(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """personality.domain is REQUIRED; no flag values are supported."""
    pers = _linux(doc).get("personality")
    if not isinstance(pers, dict):
        return
    if "domain" not in pers:
        yield _p(["linux", "personality"], "'domain' is required")
    for i, flag in _strings(pers.get("flags")):
        yield _p(["linux", "personality", "flags", i], f"unsupported personality flag {flag!r}")


_NODES_FORBIDDEN = ("MPOL_DEFAULT", "MPOL_LOCAL")
#: MAX_NUMNODES with the largest CONFIG_NODES_SHIFT (10); the kernel refuses higher bits.
_MAX_NODE = 1023


def _max_node(nodes: str) -> int:
    return max(int(n) for n in re.split(r"[-,]", nodes.replace(" ", "")) if n)
_NODES_REQUIRED = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY")


@rule("config-linux.md#configLinuxMemoryPolicy")
def memory_policy(doc: Mapping[str, Any], ctx: Context) -> Iterator[Problem]:
    """memoryPolicy.mode is REQUIRED; nodes is a node list, present exactly when the mode
    needs one; the flag combinations set_mempolicy(2) refuses with EINVAL (static and
    relative together; NUMA balancing but with MPOL_BIND/PREFERRED_MANY; static or
    relative with local allocation)."""
    pol = _linux(doc).get("memoryPolicy")
    if not isinstance(pol, dict):
        return
    base = ["linux", "memoryPolicy"]
    mode = pol.get("mode")
    if mode is None:
        yield _p(base, "'mode' is required")
    nodes = pol.get("nodes")
    has_nodes = isinstance(nodes, str) and nodes.strip() != ""
    if isinstance(nodes, str):
        why = _list_problem(nodes)
        if why:
            yield _p([*base, "nodes"], why)
        elif has_nodes and _max_node(nodes) > _MAX_NODE:
            yield _p([*base, "nodes"], f"node {_max_node(nodes)} is above the kernel's limit ({_MAX_NODE})")
    if mode in _NODES_FORBIDDEN and has_nodes:
        yield _p([*base, "nodes"], f"{mode} takes no nodes")
    if mode in _NODES_REQUIRED and not has_nodes:
        yield _p([*base, "nodes"], f"{mode} needs at least one node")
    flags = {f for _, f in _strings(pol.get("flags"))}
    node_flags = flags & {"MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"}
    if len(node_flags) == 2:
        yield _p([*base, "flags"], "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")
    # set_mempolicy(2)'s EINVAL cases, said before anything exists:
    if "MPOL_F_NUMA_BALANCING" in flags and mode not in ("MPOL_BIND", "MPOL_PREFERRED_MANY"):
        yield _p([*base, "flags"], f"MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}")
    if node_flags and (mode == "MPOL_LOCAL" or (mode == "MPOL_PREFERRED" and not has_nodes)):
        what = "MPOL_LOCAL" if mode == "MPOL_LOCAL" else "MPOL_PREFERRED without nodes (local allocation)"
        yield _p([*base, "flags"], f"{what} takes neither MPOL_F_STATIC_NODES nor MPOL_F_RELATIVE_NODES")


# --------------------------------------------------------------------------- beyond the schema

#: rootfsPropagation values runc and crun accept beyond the schema's enum (private,
#: shared, slave, unbindable): the recursive forms, mapped as runc maps them
#: (ocirun.plan.mount_options.PROPAGATION_OPTIONS: rprivate = MS_PRIVATE|MS_REC, ...).
RECURSIVE_ROOTFS_PROPAGATION = {"rprivate": "private", "rshared": "shared", "rslave": "slave",
                                "runbindable": "unbindable"}


def schema_view(doc: Any) -> Any:
    """``doc`` as the schema check sees it: what ocirun accepts beyond the upstream
    schema (which stays byte-identical) replaced by its schema-valid counterpart, in
    a shallow copy; ``doc`` itself is returned when there is nothing to replace.
    warnings() says what was accepted."""
    linux = _obj(doc.get("linux")) if isinstance(doc, dict) else {}
    value = linux.get("rootfsPropagation")
    plain = RECURSIVE_ROOTFS_PROPAGATION.get(value) if isinstance(value, str) else None
    if plain is None:
        return doc
    return dict(doc, linux=dict(linux, rootfsPropagation=plain))


# --------------------------------------------------------------------------- warnings


def warnings(doc: Any) -> list[str]:
    """Deprecated-but-allowed things worth telling the user about (never errors)."""
    if not isinstance(doc, dict):
        return []
    out = []
    propagation = _linux(doc).get("rootfsPropagation")
    if propagation in RECURSIVE_ROOTFS_PROPAGATION:
        out.append(f"{json_path(['linux', 'rootfsPropagation'])}: {propagation!r} is not one of the "
                   "values the spec lists (private, shared, slave, unbindable); accepted as runc and "
                   f"crun accept it: {RECURSIVE_ROOTFS_PROPAGATION[propagation]}, recursively")
    memory = _obj(_obj(_linux(doc).get("resources")).get("memory"))
    if memory.get("kernel") is not None:
        # runc 1.1 ignores it with a warning too: Linux >= 5.16 accepts
        # memory.kmem.limit_in_bytes and ignores it, and cgroup v2 has no such limit
        out.append(f"{json_path(['linux', 'resources', 'memory', 'kernel'])}: kernel memory limits are "
                   "deprecated and ignored (not enforced by Linux since 5.16, absent from cgroup v2)")
    caps = _obj(_obj(doc.get("process")).get("capabilities"))
    if caps.get("ambient"):
        # PR_CAP_AMBIENT_RAISE needs the capability permitted and inheritable; runc
        # and crun ignore the kernel's EPERM (`runc spec` writes ambient without inheritable)
        have = {c for _, c in _strings(caps.get("permitted"))} & {c for _, c in _strings(caps.get("inheritable"))}
        lost = [c for _, c in _strings(caps.get("ambient")) if c not in have]
        if lost:
            out.append(f"{json_path(['process', 'capabilities', 'ambient'])}: {', '.join(lost)} not also in "
                       "inheritable and permitted: the kernel refuses to raise them, the process runs "
                       "without them (as with runc and crun)")
    for i, m in _items(doc.get("mounts")):
        dest = m.get("destination")
        if isinstance(dest, str) and dest and not dest.startswith("/"):
            out.append(
                f"{json_path(['mounts', i, 'destination'])}: relative destination {dest!r} is "
                f"deprecated; it is taken as /{dest}"
            )
        options = [o for _, o in _strings(m.get("options"))]
        if ("uidMappings" in m or "gidMappings" in m) and not any(o in _IDMAP_OPTIONS for o in options):
            # config.md: the options SHOULD be given; runc 1.2 maps such a mount as idmap
            out.append(
                f"{json_path(['mounts', i, 'options'])}: uidMappings/gidMappings without idmap or "
                "ridmap; applied as idmap (not recursive)"
            )
    return out
