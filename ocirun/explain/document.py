"""The explain document's sections (docs/explain.schema.json): the plan's kernel
terms back in words, and what the rootfs and the host say about paths."""

from __future__ import annotations

import os
import stat
from typing import Any

from ocirun.cli import GlobalOptions
from ocirun.explain import DOCUMENT_VERSION
from ocirun.explain.paths import (
    containing_mount,
    executable_by,
    host_mounts,
    host_path,
    host_path_of_prefix,
    resolve_in_root,
)
from ocirun.explain.steps import Steps
from ocirun.linux import namespaces as ns_mod
from ocirun.plan import mount_options as mo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.container.create import Prepared
    from ocirun.plan.model import LaunchPlan

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


class Document(Steps):
    """Everything explain says about one prepared create: ``build()`` is the document."""

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
        self.host_mounts = host_mounts()

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
            resolved, under = resolve_in_root(self.rootfs, target, self.plan.mounts[:i])
            entry: dict[str, Any] = {
                "destination": target,
                "resolvedTarget": resolved,
                "hostPath": os.path.join(self.rootfs, resolved.lstrip("/")) if under is None else None,
                "under": under,
                # False: the init makes the mount point (in the rootfs, or in a fresh filesystem)
                "targetExists": os.path.lexists(host_path_of_prefix(self.rootfs, resolved, self.plan.mounts[:i]))
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
        host = host_path(self.rootfs, path, self.plan.mounts)
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
        exe_resolved = resolve_in_root(self.rootfs, exe, self.plan.mounts)[0] if exe is not None else None
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
            host = host_path(self.rootfs, path, self.plan.mounts)
            if host is None:
                continue
            try:
                st = os.lstat(host)  # resolved inside the rootfs already
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and executable_by(st, pr.uid, pr.gid, pr.additional_gids):
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
        root_fs = containing_mount(self.host_mounts, self.rootfs)
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
                host = containing_mount(self.host_mounts, src)
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


def _exists_word(kind: str | None) -> str:
    return {"dir": "yes", "file": "yes", None: "no"}.get(kind, "unknown")
