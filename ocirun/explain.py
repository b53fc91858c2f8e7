"""`ocirun explain`: everything `create` would do with a bundle, in order, done by nothing.

The decisions are create's own: :func:`ocirun.container.create.prepare_create`
validates the bundle and builds the launch plan exactly as ``create`` does,
and the cgroup drivers run ``create`` and ``apply`` inside a dry-run
recording (``ocirun.util.dryrun``), which keeps every mkdir, file write and
device program instead of doing it. What this module adds is description:
the plan's kernel terms (flags, masks, numbers) back in words, the order in
which stage-1, the init and the process setup execute them (ocirun/shim/src/
init.c, process.c), and what the rootfs and the host say about paths (a
mount target after symlinks, the executable after the PATH lookup, whether
a masked path exists).

Nothing is created: no state directory, no cgroup, no mount, no process, no
seccomp cache entry. The warnings ``create`` would print are part of the
document. An invalid bundle raises what ``validate`` raises; a config
``create`` would refuse raises create's error.

The JSON document is described by docs/explain.schema.json; the text is the
same document for people (``format_text``). See docs/explain.md.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from ocirun.cli import GlobalOptions
from ocirun.linux import namespaces as ns_mod
from ocirun.plan import mount_options as mo

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from ocirun.container.create import Prepared
    from ocirun.plan.model import LaunchPlan, MountStep

#: Version of the explain document (docs/explain.schema.json); bumped on incompatible change.
DOCUMENT_VERSION = 1

#: The host's procfs and sysfs: what a container's own proc and sysfs mounts
#: show (same kernel) when deciding whether a masked or read-only path exists.
HOST_PROC = "/proc"
HOST_SYS = "/sys"
HOST_MOUNTINFO = "/proc/self/mountinfo"

_MS_NAMES = {
    mo.MS_RDONLY: "ro", mo.MS_NOSUID: "nosuid", mo.MS_NODEV: "nodev", mo.MS_NOEXEC: "noexec",
    mo.MS_SYNCHRONOUS: "sync", mo.MS_REMOUNT: "remount", mo.MS_MANDLOCK: "mand",
    mo.MS_DIRSYNC: "dirsync", mo.MS_NOSYMFOLLOW: "nosymfollow", mo.MS_NOATIME: "noatime",
    mo.MS_NODIRATIME: "nodiratime", mo.MS_BIND: "bind", mo.MS_MOVE: "move", mo.MS_REC: "rec",
    mo.MS_SILENT: "silent", mo.MS_POSIXACL: "acl", mo.MS_UNBINDABLE: "unbindable",
    mo.MS_PRIVATE: "private", mo.MS_SLAVE: "slave", mo.MS_SHARED: "shared",
    mo.MS_RELATIME: "relatime", mo.MS_I_VERSION: "iversion", mo.MS_STRICTATIME: "strictatime",
    mo.MS_LAZYTIME: "lazytime",
}
_ATTR_NAMES = {
    mo.MOUNT_ATTR_RDONLY: "rdonly", mo.MOUNT_ATTR_NOSUID: "nosuid", mo.MOUNT_ATTR_NODEV: "nodev",
    mo.MOUNT_ATTR_NOEXEC: "noexec", mo.MOUNT_ATTR_NOATIME: "noatime",
    mo.MOUNT_ATTR_STRICTATIME: "strictatime", mo.MOUNT_ATTR_NODIRATIME: "nodiratime",
    mo.MOUNT_ATTR_NOSYMFOLLOW: "nosymfollow",
}
_HOOK_WHEN = {
    "prestart": "create: the init's mounts are done, before pivot_root (runtime namespace)",
    "createRuntime": "create: same point, after prestart (runtime namespace)",
    "createContainer": "create: same point, after createRuntime (the container's namespaces)",
    "startContainer": "start: before the process is released (the container's namespaces)",
    "poststart": "start: after the process has exec'd (runtime namespace)",
    "poststop": "delete: after the container is gone (runtime namespace); failures only warn",
}


# --------------------------------------------------------------------------- entry points


def cmd_explain(g: GlobalOptions, args: argparse.Namespace) -> int:
    doc = explain_bundle(g, os.path.abspath(args.bundle), args.id)
    if args.format == "json":
        from ocirun.util import jsonio

        sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(format_text(doc))
    return 0


def explain_bundle(g: GlobalOptions, bundle: str, container_id: str | None = None, *,
                   cgroup_host: Any = None) -> dict[str, Any]:
    """The explain document (docs/explain.schema.json) of ``create`` of ``bundle`` as
    ``container_id`` (default: the bundle directory's name). ``cgroup_host``: the
    cgroup hierarchy to plan for (ocirun.cgroups.hierarchy.Host; tests), else this host's."""
    from ocirun.container.create import CreateOptions, configure_cgroup, prepare_create
    from ocirun.util.dryrun import Recording
    from ocirun.util.scoped import WARNINGS

    seen: list[str] = []
    id_given = container_id is not None
    cid = container_id if container_id is not None else _default_id(bundle)
    with WARNINGS.set(seen.append):
        prepared = prepare_create(g, cid, CreateOptions(bundle=bundle), check_terminal=False,
                                  cgroup_host=cgroup_host)
        linux = prepared.config.linux
        with Recording() as rec:  # create's step 5, recorded and not done
            prepared.cgroup.create()
            configure_cgroup(prepared.cgroup, linux)
    return _Document(g, cid, id_given, prepared, rec.actions, seen).build()


def _default_id(bundle: str) -> str:
    from ocirun.errors import ContainerIdError
    from ocirun.store import validate_id

    name = os.path.basename(os.path.normpath(bundle))
    try:
        return validate_id(name)
    except ContainerIdError:
        return "container"


# --------------------------------------------------------------------------- the document


class _Document:
    def __init__(self, g: GlobalOptions, cid: str, id_given: bool, prepared: Prepared,
                 cgroup_actions: list[dict[str, Any]], warnings: list[str]) -> None:
        self.g = g
        self.cid = cid
        self.id_given = id_given
        self.p = prepared
        self.plan: LaunchPlan = prepared.plan
        self.config = prepared.config
        self.linux = prepared.config.linux
        self.rootfs = prepared.loaded.rootfs
        self.cgroup_actions = cgroup_actions
        self.warnings = warnings
        self.steps: list[dict[str, Any]] = []
        self.host_mounts = _host_mounts()

    def step(self, phase: str, name: str, text: str, **data: Any) -> None:
        entry: dict[str, Any] = {"phase": phase, "step": name, "text": text}
        entry.update(data)
        self.steps.append(entry)

    def build(self) -> dict[str, Any]:
        plan, config = self.plan, self.config
        state_dir = os.path.join(self.g.root, self.cid)
        mounts = self._mounts()
        process = self._process(mounts) if plan.process is not None else None
        doc: dict[str, Any] = {
            "explainVersion": DOCUMENT_VERSION,
            "id": self.cid,
            "idFrom": "argument" if self.id_given else "bundle directory name",
            "bundle": self.p.loaded.bundle,
            "config": os.path.join(self.p.loaded.bundle, "config.json"),
            "ociVersion": config.oci_version,
            "rootfs": self.rootfs,
            "warnings": list(self.warnings),
            "stateDir": {"path": state_dir, "stateFile": os.path.join(state_dir, "state.json"),
                         "execFifo": os.path.join(state_dir, "exec.fifo")},
            "namespaces": self._namespaces(),
            "idMappings": self._id_mappings(),
            "timeOffsets": _text_or_none(plan.timens_offsets),
            "cgroup": self._cgroup(),
            "mounts": mounts,
            "root": {
                "path": self.rootfs,
                "readonly": plan.root_readonly,
                "propagationBefore": _names(plan.root_propagation, _MS_NAMES),
                "propagationAfter": _names(plan.rootfs_propagation, _MS_NAMES),
                "pivot": "move and chroot (--no-pivot)" if plan.no_pivot else "pivot_root",
            },
            "devices": self._devices(),
            "maskedPaths": [self._masked(p.decode(), mounts) for p in plan.masked_paths],
            "readonlyPaths": [self._readonly(p.decode(), mounts) for p in plan.readonly_paths],
            "sysctl": [{"key": k.decode().replace("/", "."), "path": "/proc/sys/" + k.decode(),
                        "value": v.decode()} for k, v in plan.sysctl],
            "hostname": _text_or_none(plan.hostname),
            "domainname": _text_or_none(plan.domainname),
            "process": process,
            "seccomp": self._seccomp(),
            "lsm": self._lsm(),
            "hooks": self._hooks(),
            "netDevices": [{"hostName": d.host_name, "name": d.name} for d in plan.net_devices],
            "sessionKeyring": _text_or_none(plan.session_keyring),
            "annotations": dict(config.annotations or {}),
        }
        doc["mountTable"] = self._mount_table(doc)
        self._steps(doc)
        doc["steps"] = self.steps
        return doc

    # ------------------------------------------------------------------ sections

    def _namespaces(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kinds = {ns.type: ns for ns in (self.linux.namespaces if self.linux else ())}
        for kind in ns_mod.JOIN_ORDER:  # joined: in join order (user first, mount last)
            ns = kinds.get(kind)
            if ns is not None and ns.path:
                out.append({"type": kind, "action": "join", "path": ns.path})
        for kind in ns_mod.JOIN_ORDER:
            ns = kinds.get(kind)
            if ns is not None and not ns.path:
                out.append({"type": kind, "action": "create"})
        for kind in ns_mod.JOIN_ORDER:
            if kind not in kinds:
                out.append({"type": kind, "action": "share", "path": f"/proc/self/ns/{ns_mod.PROC_NS_NAMES[kind]}"})
        return out

    def _id_mappings(self) -> dict[str, Any] | None:
        if self.plan.uid_map is None and self.plan.gid_map is None:
            return None

        def rows(data: bytes | None) -> list[dict[str, int]]:
            out = []
            for line in (data or b"").decode().splitlines():
                c, h, s = (int(x) for x in line.split())
                out.append({"containerID": c, "hostID": h, "size": s})
            return out

        return {"uidMap": rows(self.plan.uid_map), "gidMap": rows(self.plan.gid_map)}

    def _cgroup(self) -> dict[str, Any]:
        cg = self.p.cgroup
        rec = cg.to_record()
        out: dict[str, Any] = {"version": rec["version"], "driver": "cgroupfs"}
        if rec["version"] == 2:
            out["path"] = rec["path"]
            out["placement"] = "clone3(CLONE_INTO_CGROUP): stage-1 is born in the cgroup"
        else:
            out["paths"] = dict(rec["paths"])
            out["placement"] = "stage-1's pid written to cgroup.procs of every hierarchy before it goes on"
        out["created"] = [a["path"] for a in self.cgroup_actions if a["op"] == "mkdir"]
        out["actions"] = self.cgroup_actions
        return out

    def _devices(self) -> dict[str, Any]:
        from ocirun.cgroups.devices import evaluate
        from ocirun.plan.device_rules import device_rules

        linux = self.linux
        rules = device_rules(linux.resources.devices if linux and linux.resources else (),
                             linux.devices if linux else ())
        default_allow, exceptions = evaluate(rules)
        nodes = []
        for d in self.plan.devices:
            kind = {stat.S_IFCHR: "c", stat.S_IFBLK: "b", stat.S_IFIFO: "p"}.get(stat.S_IFMT(d.mode), "?")
            nodes.append({
                "path": d.path.decode(), "type": kind, "major": d.major, "minor": d.minor,
                "fileMode": f"{stat.S_IMODE(d.mode):04o}", "uid": d.uid, "gid": d.gid,
                "how": "bind mount of the host's node" if d.bind_from_host else "mknod",
                "replacesExisting": not d.must_match,
            })
        return {
            "nodes": nodes,
            "symlinks": [{"path": s.path.decode(), "target": s.target.decode()} for s in self.plan.symlinks],
            "rules": [r.to_dict() for r in rules],
            "effective": {"defaultAllow": default_allow,
                          "exceptions": [{"type": t, "major": _star(major), "minor": _star(minor),
                                          "access": access} for (t, major, minor), access in exceptions]},
        }

    def _mounts(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, m in enumerate(self.plan.mounts):
            target = m.target.decode()
            resolved, under = _resolve(self.rootfs, target, self.plan.mounts[:i])
            entry: dict[str, Any] = {
                "destination": target,
                "resolvedTarget": resolved,
                "hostPath": os.path.join(self.rootfs, resolved.lstrip("/")) if under is None else None,
                "under": under,
                # False: the init makes the mount point (in the rootfs, or in a fresh filesystem)
                "targetExists": os.path.lexists(_host_path_of_prefix(self.rootfs, resolved, self.plan.mounts[:i]))
                if under is None else None,
                "source": _text_or_none(m.source),
                "type": _text_or_none(m.fstype),
                "flags": _names(m.flags, _MS_NAMES),
                "data": _text_or_none(m.data),
                "propagation": _names(m.propagation, _MS_NAMES),
                "remountFlags": _names(m.remount_flags, _MS_NAMES),
                "attrSet": _names(m.attr_set, _ATTR_NAMES),
                "attrClear": _names(m.attr_clr, _ATTR_NAMES),
                "targetIsFile": m.target_is_file,
                "copyUp": m.copy_up,
                "idmap": None,
                "describe": m.describe.decode(),
            }
            if m.idmap is not None:
                idm = m.idmap
                entry["idmap"] = {
                    "uidMap": _text_or_none(idm.uid_map), "gidMap": _text_or_none(idm.gid_map),
                    "userns": _text_or_none(idm.userns_path), "recursive": idm.recursive,
                }
            out.append(entry)
        return out

    def _masked(self, path: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        kind = self._kind_at(path, mounts)
        action = {"dir": "mount a read-only tmpfs over it", "file": "bind mount /dev/null over it",
                  None: "nothing: it does not exist", "unknown": "decided then: it is inside a "
                  "filesystem mounted at create"}[kind]
        return {"path": path, "exists": _exists_word(kind), "action": action}

    def _readonly(self, path: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        kind = self._kind_at(path, mounts)
        action = {"dir": "bind mount it onto itself, remount read-only",
                  "file": "bind mount it onto itself, remount read-only",
                  None: "nothing: it does not exist", "unknown": "decided then: it is inside a "
                  "filesystem mounted at create"}[kind]
        return {"path": path, "exists": _exists_word(kind), "action": action}

    def _kind_at(self, path: str, mounts: list[dict[str, Any]]) -> str | None:
        """"dir", "file", None (absent) or "unknown" for a container path once every mount is in place."""
        host = _host_path(self.rootfs, path, self.plan.mounts)
        if host is None:
            return "unknown"
        try:
            st = os.lstat(host)  # resolved inside the rootfs already: never follow a host symlink
        except OSError:
            return None
        return "dir" if stat.S_ISDIR(st.st_mode) else "file"

    def _process(self, mounts: list[dict[str, Any]]) -> dict[str, Any]:
        from ocirun.linux.capabilities import CAPABILITIES

        pr = self.plan.process
        assert pr is not None
        cp = self.config.process
        cap_names = {v: k for k, v in CAPABILITIES.items()}

        def caps(mask: int | None) -> list[str] | None:
            if mask is None:
                return None
            return [cap_names.get(b, f"CAP_{b}") for b in range(mask.bit_length()) if mask >> b & 1]

        c = pr.capabilities
        exe, tried = self._lookup(pr)
        exe_resolved = _resolve(self.rootfs, exe, self.plan.mounts)[0] if exe is not None else None
        out: dict[str, Any] = {
            "args": [a.decode() for a in pr.args],
            "executable": exe,
            "executableResolved": exe_resolved,
            "lookup": tried,
            "env": [e.decode() for e in pr.env],
            "cwd": pr.cwd.decode(),
            "terminal": pr.terminal,
            "consoleSize": {"height": pr.console_size[0], "width": pr.console_size[1]}
            if pr.console_size else None,
            "user": {"uid": pr.uid, "gid": pr.gid, "additionalGids": list(pr.additional_gids),
                     "umask": f"{0o022 if pr.umask is None else pr.umask:04o}",
                     # as the host sees them: through a new user namespace's mappings
                     "hostUid": self._host_id(pr.uid, self.plan.uid_map),
                     "hostGid": self._host_id(pr.gid, self.plan.gid_map)},
            "capabilities": {k: caps(getattr(c, k)) if c is not None else None
                             for k in ("bounding", "effective", "permitted", "inheritable", "ambient")},
            "noNewPrivileges": pr.no_new_privileges,
            "rlimits": [{"type": r.type, "soft": r.soft, "hard": r.hard} for r in cp.rlimits],
            "oomScoreAdj": self.plan.oom_score_adj,
            "personality": None,
            "scheduler": None,
            "ioPriority": None,
            "memoryPolicy": None,
            "preserveFds": pr.preserve_fds,
        }
        if pr.personality is not None and self.linux is not None and self.linux.personality is not None:
            out["personality"] = {"domain": self.linux.personality.domain,
                                  "flags": list(self.linux.personality.flags), "persona": pr.personality}
        if pr.scheduler is not None and cp.scheduler is not None:
            s = pr.scheduler
            out["scheduler"] = {"policy": cp.scheduler.policy, "flags": list(cp.scheduler.flags),
                                "nice": s.nice, "priority": s.priority, "runtime": s.runtime,
                                "deadline": s.deadline, "period": s.period}
        if pr.io_priority is not None and cp.io_priority is not None:
            out["ioPriority"] = {"class": cp.io_priority.io_class, "priority": cp.io_priority.priority or 0,
                                 "value": pr.io_priority}
        if pr.memory_policy is not None and self.linux is not None and self.linux.memory_policy is not None:
            mp = self.linux.memory_policy
            out["memoryPolicy"] = {"mode": mp.mode, "nodes": mp.nodes, "flags": list(mp.flags),
                                   "value": pr.memory_policy.mode}
        return out

    def _host_id(self, cid: int, id_map: bytes | None) -> int | None:
        """The host's id for container id ``cid``; None if unmapped or unknown (a joined user namespace)."""
        if id_map is None:
            joined = any(j.clone_flag == ns_mod.CLONE_NEWUSER for j in self.plan.join_namespaces)
            return None if joined else cid
        for line in id_map.decode().splitlines():
            inside, outside, size = (int(x) for x in line.split())
            if inside <= cid < inside + size:
                return outside + cid - inside
        return None

    def _lookup(self, pr: Any) -> tuple[str | None, list[str]]:
        """args[0] as the init's PATH lookup finds it (the rootfs and the mounts, symlinks
        followed inside the rootfs; the user's permissions as the mode bits say), and
        the paths tried."""
        arg0 = pr.args[0].decode() if pr.args else ""
        if not arg0:
            return None, []
        candidates = [arg0] if "/" in arg0 else [os.path.join(d.decode(), arg0) for d in pr.search_path]
        tried = []
        for cand in candidates:
            path = cand if cand.startswith("/") else os.path.join(pr.cwd.decode(), cand)
            tried.append(path)
            host = _host_path(self.rootfs, path, self.plan.mounts)
            if host is None:
                continue
            try:
                st = os.lstat(host)  # resolved inside the rootfs already
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and _executable_by(st, pr.uid, pr.gid, pr.additional_gids):
                return path, tried
        return None, tried

    def _seccomp(self) -> dict[str, Any] | None:
        sc = self.linux.seccomp if self.linux is not None else None
        if sc is None:
            return None
        per_action: dict[str, int] = {}
        names_per_action: dict[str, int] = {}
        for rule in sc.syscalls:
            per_action[rule.action] = per_action.get(rule.action, 0) + 1
            names_per_action[rule.action] = names_per_action.get(rule.action, 0) + len(rule.names)
        nnp = self.plan.process is not None and self.plan.process.no_new_privileges
        if not nnp:
            when = "before the uid change (without no_new_privs loading needs CAP_SYS_ADMIN)"
        elif self.plan.seccomp_notify:
            when = "last before READY (no_new_privs; the listener fd must reach the runtime)"
        else:
            when = "right before execve (no_new_privs)"
        return {
            "defaultAction": sc.default_action,
            "defaultErrnoRet": sc.default_errno_ret,
            "architectures": list(sc.architectures),
            "flags": list(sc.flags),
            "filterFlags": self.plan.seccomp_flags,
            "listenerPath": sc.listener_path,
            "listenerMetadata": sc.listener_metadata,
            "notify": self.plan.seccomp_notify,
            "rules": len(sc.syscalls),
            "rulesPerAction": per_action,
            "syscallsPerAction": names_per_action,
            "instructions": len(self.plan.seccomp_bpf or b"") // 8,
            "loaded": when,
        }

    def _lsm(self) -> dict[str, Any]:
        pr = self.plan.process
        cp = self.config.process
        return {
            "apparmorProfile": cp.apparmor_profile if cp is not None else None,
            "selinuxLabel": cp.selinux_label if cp is not None else None,
            "execAttr": _text_or_none(pr.lsm_attr) if pr is not None else None,
            "execLabel": _text_or_none(pr.lsm_label) if pr is not None else None,
            "mountLabel": self.linux.mount_label if self.linux is not None else None,
            "mountLabelApplied": any(b"context=" in (m.data or b"") for m in self.plan.mounts),
        }

    def _hooks(self) -> list[dict[str, Any]]:
        from ocirun.hooks import CONTAINER_NS, KINDS, STATUS

        out = []
        for kind in KINDS:
            for i, h in enumerate(self.p.hooks.get(kind, ())):
                out.append({
                    "kind": kind, "index": i, "path": h["path"], "args": list(h.get("args") or ()),
                    "env": list(h.get("env") or ()), "timeout": h.get("timeout"),
                    "namespace": "container" if kind in CONTAINER_NS else "runtime",
                    "status": STATUS[kind], "when": _HOOK_WHEN[kind],
                })
        return out

    # ------------------------------------------------------------------ the mount table

    def _mount_table(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The container's mounts once create is done, in the order the init makes
        them (what /proc/<init>/mountinfo lists): mount point, filesystem type,
        read-only or not."""
        table: list[dict[str, Any]] = []
        root_fs = _containing_mount(self.host_mounts, self.rootfs)
        table.append({"mountPoint": "/", "type": root_fs[1] if root_fs else None,
                      "readonly": bool(self.plan.root_readonly), "from": "rootfs"})
        for m, entry in zip(self.plan.mounts, doc["mounts"], strict=True):
            point = entry["resolvedTarget"]
            if m.flags & mo.MS_REMOUNT and not m.flags & mo.MS_BIND:
                for row in reversed(table):  # a remount changes the mount already there
                    if row["mountPoint"] == point:
                        row["readonly"] = bool(m.flags & mo.MS_RDONLY)
                        break
                continue
            ro = bool((m.flags | m.remount_flags) & mo.MS_RDONLY or m.attr_set & mo.MOUNT_ATTR_RDONLY)
            if m.flags & mo.MS_BIND or m.idmap is not None:
                src = (m.source or b"").decode()
                host = _containing_mount(self.host_mounts, src)
                table.append({"mountPoint": point, "type": host[1] if host else None, "readonly":
                              ro or bool(host and host[2]), "from": m.describe.decode()})
                if m.flags & mo.MS_REC:
                    for mp, fstype, host_ro in self.host_mounts:
                        if mp.startswith(src.rstrip("/") + "/"):
                            rec_ro = host_ro or bool(m.attr_set & mo.MOUNT_ATTR_RDONLY)
                            table.append({"mountPoint": point.rstrip("/") + mp[len(src.rstrip("/")):],
                                          "type": fstype, "readonly": rec_ro,
                                          "from": f"below the bind of {src}"})
            else:
                table.append({"mountPoint": point, "type": (m.fstype or b"").decode() or None,
                              "readonly": ro, "from": m.describe.decode()})
        for d in self.plan.devices:
            if d.bind_from_host:
                table.append({"mountPoint": d.path.decode(), "type": "devtmpfs", "readonly": False,
                              "from": f"bind mount of the host's {d.path.decode()}"})
        if self.plan.process is not None and self.plan.process.terminal:
            table.append({"mountPoint": "/dev/console", "type": "devpts", "readonly": False,
                          "from": "the pty made for process.terminal"})
        for p in doc["readonlyPaths"]:
            if p["exists"] == "yes":
                fs = self._fs_at(p["path"], table)
                table.append({"mountPoint": p["path"], "type": fs, "readonly": True,
                              "from": "linux.readonlyPaths"})
        for p in doc["maskedPaths"]:
            if p["exists"] == "yes":
                is_dir = p["action"].startswith("mount a read-only tmpfs")
                table.append({"mountPoint": p["path"], "type": "tmpfs" if is_dir else self._fs_at("/dev/null", table),
                              "readonly": is_dir, "from": "linux.maskedPaths"})
        if self.plan.root_readonly:
            table[0]["readonly"] = True
        return table

    @staticmethod
    def _fs_at(path: str, table: list[dict[str, Any]]) -> str | None:
        best = None
        for row in table:
            mp = row["mountPoint"]
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                best = row  # the last one mounted over the path wins
        return best["type"] if best else None

    # ------------------------------------------------------------------ the steps, in order

    def _steps(self, doc: dict[str, Any]) -> None:
        plan, step = self.plan, self.step
        R, S, INIT = "runtime", "stage-1", "init"
        step(R, "validate", f"validate {doc['config']}: valid"
             + (f" ({len(self.warnings)} warning{'s' * (len(self.warnings) != 1)})" if self.warnings else ""))
        step(R, "plan", "decide everything below (the launch plan); nothing is done before this")
        step(R, "claim", f"claim and lock the state directory {doc['stateDir']['path']}")
        step(R, "exec-fifo", f"make the exec fifo {doc['stateDir']['execFifo']} (mode 0622)")
        for a in self.cgroup_actions:
            if a["op"] == "mkdir":
                step(R, "cgroup-mkdir", f"mkdir {a['path']}", path=a["path"])
            elif a["op"] == "write":
                why = f"  ({a['for']})" if a.get("for") else ""
                step(R, "cgroup-write", f"write {a['value']!r} to {a['path']}{why}", path=a["path"],
                     value=a["value"])
            else:
                exc = ", ".join(f"{e['type']} {_star_text(e['major'])}:{_star_text(e['minor'])} {e['access']}"
                                for e in a["exceptions"])
                default = "allow" if a["defaultAllow"] else "deny"
                other = "deny" if a["defaultAllow"] else "allow"
                step(R, "cgroup-device-program",
                     f"attach a device eBPF program to {a['path']}: {default} by default, {other} {exc or 'nothing'}",
                     path=a["path"])
        for m in plan.mounts:
            if m.idmap is not None:
                step(R, "idmap-tree", f"make a detached id-mapped clone of {(m.source or b'').decode()} "
                     f"for {m.target.decode()} (open_tree, mount_setattr MOUNT_ATTR_IDMAP)")
        if plan.process is not None and plan.process.terminal:
            step(R, "console", "process.terminal: connect to --console-socket (create, run -d), "
                 "or keep the pty master to proxy it (run in the foreground)")
        if doc["cgroup"]["version"] == 2:
            step(R, "clone", "clone3 stage-1 into the container's cgroup (CLONE_INTO_CGROUP); every signal "
                 "blocked around it")
        else:
            step(R, "clone", "clone3 stage-1; every signal blocked around it")
            step(R, "cgroup-place", "write stage-1's pid to cgroup.procs of: "
                 + ", ".join(doc["cgroup"]["paths"].values()))
        # stage-1 (C)
        step(S, "dumpable", "not dumpable (prctl PR_SET_DUMPABLE 0): nothing in the container can "
             "reach the runtime's memory")
        for ns in doc["namespaces"]:
            if ns["action"] == "join":
                step(S, "setns", f"join the {ns['type']} namespace {ns['path']} (setns)", type=ns["type"])
        new = [ns["type"] for ns in doc["namespaces"] if ns["action"] == "create"]
        if new:
            step(S, "unshare", "create the " + ", ".join(new) + " namespaces (unshare)", types=new)
        idm = doc["idMappings"]
        if idm is not None:
            for key, name in (("uidMap", "uid_map"), ("gidMap", "gid_map")):
                lines = "; ".join(f"{r['containerID']} {r['hostID']} {r['size']}" for r in idm[key])
                step(R, name, f"write /proc/<stage-1>/{name}: {lines}")
        if plan.timens_offsets is not None:
            step(R, "timens_offsets", "write /proc/<stage-1>/timens_offsets: "
                 + "; ".join(plan.timens_offsets.decode().splitlines()))
        for d in plan.net_devices:
            step(R, "netdev", f"move network device {d.host_name} into the container's network namespace"
                 + (f" as {d.name}" if d.renamed else ""))
        if any(ns["type"] == "user" and ns["action"] != "share" for ns in doc["namespaces"]):
            step(S, "userns-root", "become root in the user namespace (setresgid, setresuid, setgroups)")
        if plan.session_keyring is not None:
            step(S, "keyring", f"join a new session keyring {plan.session_keyring.decode()}")
        if "pid" in new:
            step(S, "clone-init", "clone the init (CLONE_PARENT: the caller's child; pid 1 of the new "
                 "pid namespace); stage-1 exits")
        else:
            step(S, "clone-init", "clone the init (CLONE_PARENT: the caller's child); stage-1 exits")
        if plan.oom_score_adj is not None:
            step(R, "oom_score_adj", f"write {plan.oom_score_adj} to /proc/<init>/oom_score_adj")
        # the init (C): the container's filesystem
        step(INIT, "setsid", "a session of its own (setsid)")
        step(INIT, "close-fds", "close every inherited fd but 0-2"
             + (f" and the {plan.process.preserve_fds} preserved" if plan.process and plan.process.preserve_fds else ""))
        if plan.hostname is not None:
            step(INIT, "hostname", f"sethostname {plan.hostname.decode()!r}")
        if plan.domainname is not None:
            step(INIT, "domainname", f"setdomainname {plan.domainname.decode()!r}")
        for s in doc["sysctl"]:
            step(INIT, "sysctl", f"write {s['value']!r} to {s['path']} (sysctl {s['key']}; through a procfs "
                 "of its own)")
        step(INIT, "root-propagation", f"make / {'+'.join(doc['root']['propagationBefore'])}: nothing mounted "
             "below reaches the host")
        step(INIT, "bind-rootfs", f"bind mount the rootfs {self.rootfs} onto itself")
        for m, entry in zip(plan.mounts, doc["mounts"], strict=True):
            self._mount_steps(m, entry)
        for dev in doc["devices"]["nodes"]:
            if dev["how"] == "mknod":
                step(INIT, "mknod", f"mknod {dev['path']} {dev['type']} {dev['major']}:{dev['minor']} mode "
                     f"{dev['fileMode']}, owner {dev['uid']}:{dev['gid']}", path=dev["path"])
            else:
                step(INIT, "device-bind", f"bind mount the host's {dev['path']} (mknod is refused in a user "
                     "namespace)", path=dev["path"])
        for link in doc["devices"]["symlinks"]:
            step(INIT, "symlink", f"symlink {link['path']} -> {link['target']}")
        if plan.process is not None:
            step(INIT, "cwd-mkdir", f"create the cwd {plan.process.cwd.decode()} if it does not exist")
        if plan.sync_before_pivot:
            for h in doc["hooks"]:
                if h["kind"] in ("prestart", "createRuntime", "createContainer"):
                    step(R, "hook", _hook_text(h), kind=h["kind"])
        if plan.no_pivot:
            step(INIT, "pivot", f"move the rootfs {self.rootfs} onto / and chroot into it (--no-pivot)")
        else:
            step(INIT, "pivot", f"pivot_root into {self.rootfs}; the old root made rslave and detached")
        if plan.rootfs_propagation:
            step(INIT, "rootfs-propagation", f"make / {'+'.join(doc['root']['propagationAfter'])} "
                 "(linux.rootfsPropagation)")
        if plan.process is not None and plan.process.terminal:
            size = doc["process"]["consoleSize"]
            step(INIT, "console", "make a pty in /dev/pts: the process's stdio and controlling terminal, bound "
                 "over /dev/console" + (f", {size['height']}x{size['width']}" if size else "")
                 + "; the master goes to the runtime")
        for p in doc["readonlyPaths"]:
            step(INIT, "readonly-path", f"read-only {p['path']}: {p['action']}", path=p["path"])
        for p in doc["maskedPaths"]:
            step(INIT, "masked-path", f"mask {p['path']}: {p['action']}", path=p["path"])
        if plan.root_readonly:
            step(INIT, "root-readonly", "remount / read-only (root.readonly)")
        if plan.process is None:
            step(INIT, "no-process", "config.json has no process: the init waits; start will fail")
        else:
            self._process_steps(doc["process"], doc["seccomp"], doc["lsm"])
        step(R, "state", f"write {doc['stateDir']['stateFile']} (status created); the container exists")
        # later commands
        for h in doc["hooks"]:
            if h["kind"] == "startContainer":
                step("start", "hook", _hook_text(h), kind=h["kind"])
        if plan.process is not None:
            proc = doc["process"]
            step("start", "release", f"open {doc['stateDir']['execFifo']}: the init writes to it and "
                 f"execs {proc['executable'] or proc['args'][0]} {_argv_text(proc['args'])}")
        for h in doc["hooks"]:
            if h["kind"] == "poststart":
                step("start", "hook", _hook_text(h), kind=h["kind"])
        step("delete", "kill", "kill what is left in the cgroup (delete --force: the init too)")
        for path in reversed(doc["cgroup"]["created"]):
            step("delete", "cgroup-rmdir", f"rmdir {path}", path=path)
        step("delete", "state", f"remove {doc['stateDir']['path']}")
        for h in doc["hooks"]:
            if h["kind"] == "poststop":
                step("delete", "hook", _hook_text(h), kind=h["kind"])

    def _mount_steps(self, m: MountStep, entry: dict[str, Any]) -> None:
        step, INIT = self.step, "init"
        where = entry["resolvedTarget"]
        if where != entry["destination"]:
            where = f"{entry['destination']} (resolves to {where})"
        if entry["under"] is not None:
            where += f" (inside the {entry['under']['type']} at {entry['under']['mountPoint']})"
        elif entry["targetExists"] is False:
            where += f" (the mount point {'file' if m.target_is_file else 'directory'} is created)"
        flags = ",".join(entry["flags"]) or "-"
        data = entry["data"] or "-"
        if m.flags & mo.MS_REMOUNT and not m.flags & mo.MS_BIND:
            step(INIT, "remount", f"remount {where} flags {flags} data {data}", target=entry["destination"])
            return
        if m.idmap is not None:
            step(INIT, "mount", f"attach the id-mapped clone of {entry['source']} at {where}",
                 target=entry["destination"])
        elif m.flags & mo.MS_BIND:
            step(INIT, "mount", f"{'rbind' if m.flags & mo.MS_REC else 'bind'} mount {entry['source']} on {where}",
                 target=entry["destination"])
        else:
            step(INIT, "mount", f"mount {entry['type']} {entry['source']} on {where} flags {flags} data {data}",
                 target=entry["destination"])
        if m.copy_up:
            step(INIT, "copyup", f"copy what {entry['destination']} held in the rootfs into the new tmpfs (tmpcopyup)")
        if m.remount_flags:
            step(INIT, "remount", f"remount {entry['destination']} bind,{','.join(entry['remountFlags'])}",
                 target=entry["destination"])
        if m.propagation:
            step(INIT, "propagation", f"make {entry['destination']} {'+'.join(entry['propagation'])}",
                 target=entry["destination"])
        if m.attr_set or m.attr_clr:
            step(INIT, "setattr", f"mount_setattr {entry['destination']} (recursive): set "
                 f"{','.join(entry['attrSet']) or '-'}, clear {','.join(entry['attrClear']) or '-'}",
                 target=entry["destination"])

    def _process_steps(self, proc: dict[str, Any], seccomp: dict[str, Any] | None, lsm: dict[str, Any]) -> None:
        step, P = self.step, "process"
        pr = self.plan.process
        assert pr is not None
        step(P, "chdir", f"chdir to {proc['cwd']} (as root; again as the user if root may not)")
        for r in proc["rlimits"]:
            step(P, "rlimit", f"setrlimit {r['type']} soft {r['soft']} hard {r['hard']}")
        if proc["personality"] is not None:
            step(P, "personality", f"personality {proc['personality']['domain']} "
                 f"({proc['personality']['persona']:#x})")
        if proc["scheduler"] is not None:
            s = proc["scheduler"]
            step(P, "scheduler", f"sched_setattr {s['policy']} nice {s['nice']} priority {s['priority']}"
                 + (f" flags {','.join(s['flags'])}" if s["flags"] else "")
                 + (f" runtime {s['runtime']} deadline {s['deadline']} period {s['period']}"
                    if s["policy"] == "SCHED_DEADLINE" else ""))
        if proc["ioPriority"] is not None:
            step(P, "ioprio", f"ioprio_set {proc['ioPriority']['class']} level {proc['ioPriority']['priority']}")
        if proc["memoryPolicy"] is not None:
            mp = proc["memoryPolicy"]
            step(P, "mempolicy", f"set_mempolicy {mp['mode']}" + (f" nodes {mp['nodes']}" if mp["nodes"] else "")
                 + (f" flags {','.join(mp['flags'])}" if mp["flags"] else ""))
        if lsm["execAttr"]:
            step(P, "lsm-label", f"write {lsm['execLabel']!r} to /proc/<tid>/{lsm['execAttr']} (takes effect "
                 "at execve)")
        caps = proc["capabilities"]
        if caps["bounding"] is not None:
            step(P, "bounding-set", "drop from the bounding set every capability but: "
                 + (" ".join(caps["bounding"]) or "none"))
        step(P, "fds", "every fd but 0-2" + (" and the preserved ones" if pr.preserve_fds else "")
             + " close on exec")
        if seccomp is not None and not pr.no_new_privileges:
            step(P, "seccomp", _seccomp_text(seccomp))
        gids = proc["user"]["additionalGids"]
        step(P, "user", f"setgroups [{' '.join(map(str, gids))}], setresgid {proc['user']['gid']}, "
             f"setresuid {proc['user']['uid']}")
        if any(caps[k] is not None for k in caps):
            step(P, "capabilities", "capset " + "; ".join(
                f"{k} {' '.join(caps[k]) or 'none'}" for k in ("effective", "permitted", "inheritable"))
                + f"; raise ambient {' '.join(caps['ambient'] or []) or 'none'}")
        found = proc["executable"]
        step(P, "lookup", f"find {proc['args'][0]}: " + (found if found else "not found in the rootfs: "
             "create fails (" + ", ".join(proc["lookup"]) + ")"))
        if pr.no_new_privileges:
            step(P, "no_new_privs", "prctl PR_SET_NO_NEW_PRIVS 1")
        step(P, "umask", f"umask {proc['user']['umask']}")
        if seccomp is not None and pr.no_new_privileges:
            step(P, "seccomp", _seccomp_text(seccomp))
        step(P, "ready", "report READY; block opening the exec fifo until start")


# --------------------------------------------------------------------------- text


_PHASE_TITLES = {
    "runtime": "ocirun (the runtime, Python)",
    "stage-1": "stage-1 (C, cloned by the runtime)",
    "init": "the init (C): the container's filesystem",
    "process": "the init (C): the process",
    "start": "ocirun start",
    "delete": "ocirun delete",
}


def format_text(doc: dict[str, Any]) -> str:
    """The document for people: a summary, then one step per line, grouped by who
    executes it (a new group each time that changes)."""
    lines = [f"ocirun explain: what `ocirun create --bundle {doc['bundle']} {doc['id']}` would do "
             "(nothing has been done)", ""]
    if doc["idFrom"] != "argument":
        lines.append(f"container id: {doc['id']} (the bundle directory's name; give ID as to create)")
    lines.append(f"rootfs: {doc['rootfs']}")
    cg = doc["cgroup"]
    lines.append(f"cgroup v{cg['version']}: " + (cg["path"] if cg["version"] == 2
                                                   else ", ".join(f"{k}={v}" for k, v in cg["paths"].items())))
    if doc["process"] is not None:
        proc = doc["process"]
        lines.append(f"process: {proc['executable'] or '(not found) ' + proc['args'][0]} "
                     f"{_argv_text(proc['args'])} as {proc['user']['uid']}:{proc['user']['gid']} in {proc['cwd']}")
        lines.append("environment: " + " ".join(proc["env"]))
    for w in doc["warnings"]:
        lines.append(f"warning: {w}")
    phase = None
    n = 0
    for s in doc["steps"]:
        if s["phase"] != phase:
            phase = s["phase"]
            lines += ["", _PHASE_TITLES[phase]]
        n += 1
        lines.append(f"{n:4}. {s['text']}")
    lines += ["", "mount table of the container once created:"]
    for row in doc["mountTable"]:
        lines.append(f"      {row['mountPoint']} {row['type'] or '?'} {'ro' if row['readonly'] else 'rw'}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- helpers


def _names(value: int, table: dict[int, str]) -> list[str]:
    out = [name for bit, name in table.items() if bit and value & bit == bit]
    rest = value
    for bit in table:
        if value & bit == bit:
            rest &= ~bit
    if rest:
        out.append(hex(rest))
    return out


def _text_or_none(b: bytes | None) -> str | None:
    return None if b is None else b.decode(errors="replace")


def _star(n: int) -> int | None:
    return None if n < 0 else n


def _star_text(n: int | None) -> str:
    return "*" if n is None else str(n)


def _exists_word(kind: str | None) -> str:
    return {"dir": "yes", "file": "yes", None: "no"}.get(kind, "unknown")


def _argv_text(args: list[str]) -> str:
    import shlex

    return shlex.join(args[1:]) if len(args) > 1 else ""


def _hook_text(h: dict[str, Any]) -> str:
    args = " ".join(h["args"][1:]) if len(h["args"]) > 1 else ""
    timeout = f", timeout {h['timeout']}s" if h["timeout"] else ""
    return f"run the {h['kind']} hook {h['path']} {args}".rstrip() + f" ({h['namespace']} namespace, state " \
           f"status {h['status']}{timeout})"


def _seccomp_text(s: dict[str, Any]) -> str:
    per = ", ".join(f"{n} {a}" for a, n in sorted(s["rulesPerAction"].items()))
    return (f"load the seccomp filter ({s['instructions']} BPF instructions): default {s['defaultAction']}, "
            f"{s['rules']} rules ({per or 'none'}), architectures {' '.join(s['architectures']) or 'native'}"
            + (f", flags {' '.join(s['flags'])}" if s["flags"] else "")
            + (f", listener {s['listenerPath']}" if s["notify"] else "") + f"; {s['loaded']}")


def _executable_by(st: os.stat_result, uid: int, gid: int, groups: tuple[int, ...]) -> bool:
    mode = st.st_mode
    if uid == 0:
        return bool(mode & 0o111)
    if st.st_uid == uid:
        return bool(mode & 0o100)
    if st.st_gid == gid or st.st_gid in groups:
        return bool(mode & 0o010)
    return bool(mode & 0o001)


def _resolve(rootfs: str, path: str, earlier: tuple[MountStep, ...]) -> tuple[str, dict[str, Any] | None]:
    """``path`` as the init resolves it inside the root (symlinks followed, never
    out of it; ``..`` stops at /), with the mounts before it in place. Returns the
    resolved container path, and where the walk entered an earlier non-bind
    mount ({"mountPoint", "type"}; the rest is then taken as written: it is made
    in that fresh filesystem) or None."""
    pending = [c for c in path.split("/") if c not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join(done + [name])
        over = _mount_at(cur, earlier)
        if over is not None and not (over.flags & mo.MS_BIND or over.idmap is not None):
            return "/".join([cur] + pending) if pending else cur, {
                "mountPoint": cur, "type": (over.fstype or b"").decode()}
        host = _host_path_of_prefix(rootfs, cur, earlier)
        try:
            st = os.lstat(host)
        except OSError:
            done.append(name)
            done.extend(c for c in pending if c not in ("", "."))
            break
        if stat.S_ISLNK(st.st_mode) and over is None:
            links += 1
            if links > 40:
                break
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            pending[:0] = [c for c in target.split("/") if c not in ("", ".")]
            continue
        done.append(name)
    return "/" + "/".join(done), None


def _mount_at(path: str, mounts: tuple[MountStep, ...]) -> MountStep | None:
    """The last of ``mounts`` whose target is exactly ``path`` (remounts not counted)."""
    for m in reversed(mounts):
        if m.target.decode() == path and not (m.flags & mo.MS_REMOUNT and not m.flags & mo.MS_BIND):
            return m
    return None


def _host_path_of_prefix(rootfs: str, path: str, mounts: tuple[MountStep, ...]) -> str:
    """Where a container path lies on the host, going through bind mounts."""
    best = None
    for m in mounts:
        t = m.target.decode()
        if (path == t or path.startswith(t.rstrip("/") + "/")) and (m.flags & mo.MS_BIND or m.idmap is not None):
            if not (m.flags & mo.MS_REMOUNT) and (best is None or len(t) >= len(best.target.decode())):
                best = m
    if best is not None:
        t = best.target.decode()
        return os.path.join((best.source or b"").decode(), path[len(t):].lstrip("/"))
    return os.path.join(rootfs, path.lstrip("/"))


def _host_path(rootfs: str, path: str, mounts: tuple[MountStep, ...]) -> str | None:
    """A container path once every mount is in place, on the host: in the rootfs, a
    bind source, or the host's procfs/sysfs for the container's own proc/sysfs;
    None when it lies in a filesystem made at create (a tmpfs, devpts...)."""
    resolved, under = _resolve(rootfs, path, mounts)
    if under is None:
        return _host_path_of_prefix(rootfs, resolved, mounts)
    rest = resolved[len(under["mountPoint"]):].lstrip("/")
    if under["type"] == "proc":
        return os.path.join(HOST_PROC, rest)
    if under["type"] == "sysfs":
        return os.path.join(HOST_SYS, rest)
    return None


def _host_mounts() -> list[tuple[str, str, bool]]:
    """(mount point, fstype, read-only) of this process's mounts, in mountinfo order."""
    from ocirun.cgroups.hierarchy import _unescape

    out: list[tuple[str, str, bool]] = []
    try:
        with open(HOST_MOUNTINFO) as f:
            text = f.read()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        out.append((_unescape(fields[4]), fields[sep + 1], "ro" in fields[5].split(",")))
    return out


def _containing_mount(mounts: list[tuple[str, str, bool]], path: str) -> tuple[str, str, bool] | None:
    best = None
    for m in mounts:
        mp = m[0]
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best[0]):
                best = m
    return best
