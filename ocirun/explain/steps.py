"""The explain document's ``steps``: every step create would take, in the order it
takes them and grouped by who takes them (the runtime, stage-1, the init), then
what start and delete do; the order is the C shim's (ocirun/shim/src/init.c,
process.c) and create's (ocirun/container/create.py)."""

from __future__ import annotations

from typing import Any

from ocirun.explain.text import argv_text, hook_text, seccomp_text, star_text
from ocirun.plan import mount_options as mo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.plan.model import LaunchPlan, MountStep


class Steps:
    """Mixed into explain.document.Document: the step list."""

    plan: LaunchPlan
    rootfs: str
    warnings: list[str]
    cgroup_actions: list[dict[str, Any]]
    steps: list[dict[str, Any]]

    def step(self, phase: str, name: str, text: str, **data: Any) -> None:
        entry: dict[str, Any] = {"phase": phase, "step": name, "text": text}
        entry.update(data)
        self.steps.append(entry)

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
                exc = ", ".join(f"{e['type']} {star_text(e['major'])}:{star_text(e['minor'])} {e['access']}"
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
                    step(R, "hook", hook_text(h), kind=h["kind"])
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
                step("start", "hook", hook_text(h), kind=h["kind"])
        if plan.process is not None:
            proc = doc["process"]
            step("start", "release", f"open {doc['stateDir']['execFifo']}: the init writes to it and "
                 f"execs {proc['executable'] or proc['args'][0]} {argv_text(proc['args'])}")
        for h in doc["hooks"]:
            if h["kind"] == "poststart":
                step("start", "hook", hook_text(h), kind=h["kind"])
        step("delete", "kill", "kill what is left in the cgroup (delete --force: the init too)")
        for path in reversed(doc["cgroup"]["created"]):
            step("delete", "cgroup-rmdir", f"rmdir {path}", path=path)
        step("delete", "state", f"remove {doc['stateDir']['path']}")
        for h in doc["hooks"]:
            if h["kind"] == "poststop":
                step("delete", "hook", hook_text(h), kind=h["kind"])

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
            step(P, "seccomp", seccomp_text(seccomp))
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
            step(P, "seccomp", seccomp_text(seccomp))
        step(P, "ready", "report READY; block opening the exec fifo until start")
