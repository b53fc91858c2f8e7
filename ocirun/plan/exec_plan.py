"""The plan of a process run inside a running container: `exec` and the hooks
that run in the container namespace.

runc's semantics (exec.go, utils_linux.go): without ``--process`` the new
process is the container's own config process (stored in state.json at
create, so later edits of config.json change nothing) with the command line
and the flags applied on top; with ``--process FILE`` that process is used as
it is (the other process flags are ignored, as runc ignores them). Either way
it joins every namespace of the container's init that differs from ours.
"""

from __future__ import annotations

import os

from ocirun.errors import ConfigError, Problem, UsageError
from ocirun.linux import namespaces
from ocirun.plan.model import LaunchPlan, NamespaceJoin, ProcessPlan
from ocirun.util.record import record

TYPE_CHECKING = False  # typing costs every call ~3 ms to import
if TYPE_CHECKING:
    from typing import Any


@record
class ExecOptions:
    """runc exec's flags that shape the process (see ocirun/cli.py)."""

    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    additional_gids: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    no_new_privs: bool = False
    tty: bool = False
    apparmor: str | None = None
    process_label: str | None = None
    preserve_fds: int = 0
    #: numbers among 3..3+preserve_fds-1 the caller left free (ocirun.linux.fds)
    absent_fds: tuple[int, ...] = ()
    #: the parsed --process file; replaces the config's process entirely
    process: dict[str, Any] | None = None


def exec_process_dict(config_process: dict[str, Any] | None, opts: ExecOptions) -> dict[str, Any]:
    """The process (config.json shape) to run: --process, or the container's own
    process with the command-line overrides applied as runc applies them."""
    if opts.process is not None:
        validate_process(opts.process)
        return opts.process
    if not opts.args:
        raise UsageError("exec args cannot be empty")
    p: dict[str, Any] = _copy(config_process or {"cwd": "/", "user": {"uid": 0, "gid": 0}})
    p["args"] = list(opts.args)
    p["terminal"] = opts.tty
    p.pop("consoleSize", None)
    if opts.cwd:
        p["cwd"] = opts.cwd
    if opts.apparmor:
        p["apparmorProfile"] = opts.apparmor
    if opts.process_label:
        p["selinuxLabel"] = opts.process_label
    if opts.env:
        p["env"] = list(p.get("env") or ()) + list(opts.env)
    if opts.no_new_privs:
        p["noNewPrivileges"] = True
    if opts.caps:
        caps = p.setdefault("capabilities", {})
        from ocirun.linux.capabilities import CAPABILITIES

        names = [_cap_name(c) for c in opts.caps]
        unknown = [c for c, n in zip(opts.caps, names, strict=True) if n not in CAPABILITIES]
        if unknown:
            from ocirun.errors import warn

            # runc's warning, and like runc the exec goes on without them
            warn(f"ignoring unknown or unavailable capabilities: [{' '.join(unknown)}]")
            names = [n for n in names if n in CAPABILITIES]
        # runc 1.1: bounding, effective, permitted (not inheritable or ambient)
        for kind in ("bounding", "effective", "permitted"):
            have = list(caps.get(kind) or ())
            caps[kind] = have + [n for n in names if n not in have]
    user = p.setdefault("user", {"uid": 0, "gid": 0})
    if opts.user:
        uid, sep, gid = opts.user.partition(":")
        user["uid"] = _id(uid, "--user")
        if sep:
            user["gid"] = _id(gid, "--user")
    if opts.additional_gids:
        gids = list(user.get("additionalGids") or ())
        gids += [_id(g, "--additional-gids") for g in opts.additional_gids]
        user["additionalGids"] = gids
    validate_process(p)
    return p


def validate_process(doc: Any) -> None:
    """Check a process object against the schema's process definition and the
    spec's rules for it; ConfigError naming every problem."""
    from ocirun import SPEC_VERSION
    from ocirun.spec.rules import check_rules
    from ocirun.spec.schema import schema_problems

    if not isinstance(doc, dict):
        raise ConfigError("process", [Problem("$", "must be an object")])
    wrapped = {"ociVersion": SPEC_VERSION, "process": doc}
    problems = [p for p in schema_problems(wrapped) if p.path.startswith("$.process")]
    seen = {p.path for p in problems}
    # config.json's rules for a process (args, cwd, env, rlimits, capabilities, ids, ...)
    problems += [p for p in check_rules(wrapped)
                 if p.path.startswith("$.process") and p.path not in seen]
    if problems:
        raise ConfigError("process", problems)


def init_namespaces(init_pid: int) -> tuple[NamespaceJoin, ...]:
    """The init's namespaces that are not ours, in join order (user first, mount
    last). Joining one's own user namespace is EINVAL, so those are left out."""
    joins = []
    for kind in namespaces.JOIN_ORDER:
        name = namespaces.PROC_NS_NAMES[kind]
        theirs = f"/proc/{init_pid}/ns/{name}"
        try:
            st = os.stat(theirs)
        except FileNotFoundError:
            continue  # a namespace kind this kernel lacks
        try:
            mine = os.stat(f"/proc/self/ns/{name}")
        except FileNotFoundError:
            mine = None
        if mine is not None and (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino):
            continue
        joins.append(NamespaceJoin(namespaces.CLONE_FLAGS[kind], theirs.encode()))
    return tuple(joins)


def build_exec_plan(process: dict[str, Any], *, container_id: str, bundle: str, rootfs: str,
                    joins: tuple[NamespaceJoin, ...], seccomp: dict[str, Any] | None,
                    preserve_fds: int = 0, absent_fds: tuple[int, ...] = ()) -> LaunchPlan:
    """The LaunchPlan the shim's ocirun_exec runs: joins, the process, seccomp."""
    from ocirun.plan.build import PlanOptions, _plan_process
    from ocirun.spec.model import Process

    if process.get("env"):
        process = dict(process, env=dedup_env(process["env"]))
    model = Process.from_dict(process)
    # In a joined user namespace every capability can be granted: no host check.
    in_user_ns = any(j.clone_flag == namespaces.CLONE_NEWUSER for j in joins)
    proc = _plan_process(model, PlanOptions(container_id=container_id, bundle=bundle, rootfs=rootfs,
                                            preserve_fds=preserve_fds, absent_fds=absent_fds),
                         in_user_ns=in_user_ns)
    if model.exec_cpu_affinity is not None:
        # config.md: for exec'd processes only (the init never gets it)
        from ocirun.plan.process_attrs import cpu_mask
        from ocirun.util.record import replace

        proc = replace(proc, cpu_affinity_initial=cpu_mask(model.exec_cpu_affinity.initial),
                       cpu_affinity_final=cpu_mask(model.exec_cpu_affinity.final))
    compiled = None
    if seccomp is not None:
        from ocirun.seccomp.compile import compile_config_filter
        from ocirun.spec.model import Seccomp

        compiled = compile_config_filter(Seccomp.from_dict(seccomp), os.path.join(bundle, "config.json"))
    return _plan(rootfs, joins, proc,
                 seccomp_bpf=compiled.bpf if compiled else None,
                 seccomp_flags=compiled.flags if compiled else 0,
                 seccomp_notify=compiled.uses_notify if compiled else False)


def hook_plan(path: str, args: tuple[str, ...], env: tuple[str, ...], *, rootfs: str,
              joins: tuple[NamespaceJoin, ...]) -> LaunchPlan:
    """A hook run in the container namespace: root, "/", its own env, none of the
    container process's restrictions (capabilities, rlimits, seccomp)."""
    proc = ProcessPlan(
        args=tuple(a.encode() for a in (args or (path,))),
        env=tuple(e.encode() for e in env),
        cwd=b"/",
        search_path=(),
        uid=0,
        gid=0,
        additional_gids=(),
        umask=0o022,
        capabilities=None,
        rlimits=(),
        no_new_privileges=False,
        exe=path.encode(),
    )
    return _plan(rootfs, joins, proc)


def _plan(rootfs: str, joins, proc: ProcessPlan, **seccomp) -> LaunchPlan:
    return LaunchPlan(rootfs=rootfs.encode(), new_namespaces=0, join_namespaces=joins,
                      root_propagation=0, rootfs_propagation=0, root_readonly=False, no_pivot=False,
                      mounts=(), devices=(), symlinks=(), process=proc, **seccomp)


def dedup_env(env: list[str]) -> list[str]:
    """One entry per name: the last value, at the place of the first (what runc's
    os.Setenv loop and os.Environ() give the exec'd process)."""
    index: dict[str, int] = {}
    out: list[str] = []
    for entry in env:
        name = entry.split("=", 1)[0]
        if name in index:
            out[index[name]] = entry
        else:
            index[name] = len(out)
            out.append(entry)
    return out


def _cap_name(name: str) -> str:
    n = name.upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def _id(text: str, flag: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"parsing {text} as int for {flag} failed: invalid syntax") from None
    if value < 0 or value > 0xFFFFFFFF:
        raise UsageError(f"{flag}: {text} is out of range")
    return value  # above 2147483647: refused with the process's other rules (validate_process)


def _copy(doc: Any) -> Any:
    import copy

    return copy.deepcopy(doc)
