#!/usr/bin/env python3
"""Turn the config.json `umoci unpack` wrote into one fit for a long-running service.

    service_config.py config --bundle DIR [options] [-- ARGS...]   rewrite DIR/config.json
    service_config.py seccomp [--caps CAP,...]     print the converted seccomp profile

`config` keeps what umoci derived from the image (args, env, cwd, user, the
standard mounts, the namespaces) and changes what a service needs:

- the process: no terminal, the given uid/gid, no capabilities at all (the
  services run as their own non-root user from the start), no_new_privs,
  RLIMIT_NOFILE, optional args and env;
- the root read-only; writable tmpfs run directories owned by the service's
  user, a host directory bind-mounted for the data, read-only single files
  (secrets, configuration);
- linux.resources memory and pids limits, an explicit cgroupsPath;
- podman's masked and read-only paths;
- the seccomp profile podman applies by default, converted from
  containers-common's seccomp.json (Docker's format) as podman converts it;
- linux.netDevices: a host interface moved into the container's network
  namespace, renamed.

`seccomp` is the conversion alone, for a given capability set (default:
none), as JSON on stdout.

Standard library only: runs with the system's python3 (no ocirun venv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

CONTAINERS_SECCOMP = Path("/usr/share/containers/seccomp.json")

# podman 4.3's defaults (pkg/specgen, containers/common pkg/config): what it masks and
# makes read-only in every container that is not --privileged.
MASKED_PATHS = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
    "/sys/dev/block",
]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# `uname -m` -> the architecture names libseccomp-golang's ScmpArch.String() gives, which
# are what the profile's includes/excludes "arches" and podman's nativeToSeccomp use.
GO_ARCH = {
    "x86_64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm",
    "armv6l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "s390": "s390",
    "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64",
}
# podman's nativeToSeccomp (containers/common pkg/seccomp/seccomp_linux.go): the native
# architecture's entry in the profile's archMap, whose subArchitectures come with it.
NATIVE_TO_SECCOMP = {
    "amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mipsel64n32": "SCMP_ARCH_MIPSEL64N32", "s390x": "SCMP_ARCH_S390X",
}


class Refused(Exception):
    """A profile or an option that cannot be converted; one message."""


# --- seccomp: Docker's profile format -> the OCI runtime spec's linux.seccomp ------------------

def native_arch() -> str:
    machine = platform.machine()
    return GO_ARCH.get(machine, machine)


def convert_seccomp(profile: dict[str, Any], caps: list[str], arch: str | None = None) -> dict[str, Any]:
    """What podman does with a Docker-format profile (containers/common pkg/seccomp
    setupSeccomp): keep a syscall block only if

    - its excludes.arches does not name the native architecture,
    - none of its excludes.caps is in the process's bounding set,
    - its includes.arches (if any) names the native architecture,
    - every one of its includes.caps is in the bounding set;

    take the archMap entry of the native architecture with its subarchitectures,
    defaultAction and defaultErrnoRet as they are, and per block names, action,
    errnoRet and args (index, value, valueTwo, op; comments and the "errno" names are
    dropped). minKernel is ignored, as podman 4.3 does (this profile has none)."""
    arch = arch or native_arch()
    if profile.get("architectures") and profile.get("archMap"):
        raise Refused("the profile has both 'architectures' and 'archMap'")
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        raise Refused("the profile has neither a defaultAction nor syscalls (podman: seccomp disabled)")
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = list(profile.get("architectures") or [])
    wanted = NATIVE_TO_SECCOMP.get(arch)
    for entry in profile.get("archMap") or []:
        if wanted is not None and entry["architecture"] == wanted:
            arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    if arches:
        out["architectures"] = arches
    bounding = set(caps)
    syscalls = []
    for block in profile.get("syscalls") or []:
        inc = block.get("includes") or {}
        exc = block.get("excludes") or {}
        if arch in (exc.get("arches") or []):
            continue
        if any(c in bounding for c in exc.get("caps") or []):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if any(c not in bounding for c in inc.get("caps") or []):
            continue
        if block.get("name") and block.get("names"):
            raise Refused(f"a syscall block has both 'name' and 'names': {block['name']}")
        names = [block["name"]] if block.get("name") else list(block.get("names") or [])
        if not names:
            continue
        rule: dict[str, Any] = {"names": names, "action": block["action"]}
        if block.get("errnoRet") is not None:
            rule["errnoRet"] = block["errnoRet"]
        args = []
        for a in block.get("args") or []:
            arg = {"index": a["index"], "value": a.get("value", 0), "op": a["op"]}
            if a.get("valueTwo"):     # specs-go: valueTwo is omitempty
                arg["valueTwo"] = a["valueTwo"]
            args.append(arg)
        if args:
            rule["args"] = args
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def load_profile(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise Refused(f"{path} not found: install containers-common (Debian: golang-github-containers-common, "
                      "which podman pulls in)") from None
    except (OSError, ValueError) as e:
        raise Refused(f"{path}: {e}") from None


# --- config.json ------------------------------------------------------------------------------

def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t)
    except ValueError:
        raise Refused(f"not a size: {text!r} (e.g. 256M)") from None


def split_pair(text: str, what: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise Refused(f"{what} must be SOURCE:DESTINATION, got {text!r}")
    return a, b


def rewrite(config: dict[str, Any], o: argparse.Namespace) -> dict[str, Any]:
    proc = config["process"]
    proc["terminal"] = False
    uid, _, gid = o.user.partition(":")
    if not uid.isdigit() or not gid.isdigit():
        raise Refused(f"--user must be UID:GID (numbers), got {o.user!r}")
    user = proc.setdefault("user", {})
    if user.get("uid") != int(uid) or user.get("gid") != int(gid):
        # umoci resolved the image's user through the rootfs' /etc/passwd; it must agree.
        raise Refused(f"umoci's config.json runs the process as {user.get('uid')}:{user.get('gid')}, "
                      f"not {o.user}: is the image's user the service's?")
    if o.args:
        proc["args"] = o.args
    env = {e.partition("=")[0]: e for e in proc.get("env") or []}
    for e in o.env:
        env[e.partition("=")[0]] = e
    proc["env"] = list(env.values())
    if o.cwd:
        proc["cwd"] = o.cwd
    caps = sorted(set(o.caps))
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    proc["noNewPrivileges"] = True
    proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": o.nofile, "soft": o.nofile}]

    config["hostname"] = o.hostname
    config["root"] = {"path": o.rootfs or "rootfs", "readonly": True}

    # What we mount replaces what umoci put at the same place (it makes the image's
    # volumes tmpfs mounts).
    ours = {spec.partition(":")[0] for spec in o.tmpfs}
    ours |= {split_pair(spec, "--volume")[1] for spec in o.volume}
    ours |= {split_pair(spec, "--ro-bind")[1] for spec in o.ro_bind}
    mounts = [m for m in config.get("mounts") or [] if m.get("destination") not in ours]
    for spec in o.tmpfs:
        dest, _, opts = spec.partition(":")
        options = ["nosuid", "nodev", "noexec", *(opts.split(",") if opts else [])]
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
    for spec in o.volume:
        src, dest = split_pair(spec, "--volume")
        mounts.append({"destination": dest, "type": "bind", "source": os.path.abspath(src),
                       "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]})
    for spec in o.ro_bind:
        src, dest = split_pair(spec, "--ro-bind")
        mounts.append({"destination": dest, "type": "bind", "source": os.path.abspath(src),
                       "options": ["bind", "ro", "nosuid", "nodev", "noexec"]})
    config["mounts"] = mounts

    linux = config.setdefault("linux", {})
    linux["cgroupsPath"] = o.cgroups_path
    resources = linux.setdefault("resources", {})
    resources["memory"] = {"limit": parse_size(o.memory)}
    resources["pids"] = {"limit": o.pids}
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)
    linux["seccomp"] = convert_seccomp(load_profile(Path(o.seccomp_profile)), caps)
    if o.netdev:
        devices = {}
        for spec in o.netdev:
            host, name = split_pair(spec, "--netdev")
            devices[host] = {"name": name}
        linux["netDevices"] = devices
    else:
        linux.pop("netDevices", None)
    return config


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("config", help="rewrite BUNDLE/config.json for a service")
    c.add_argument("--bundle", type=Path, required=True)
    c.add_argument("--rootfs", help="root.path (default: rootfs, in the bundle)")
    c.add_argument("--user", required=True, help="UID:GID the service runs as (must be umoci's)")
    c.add_argument("--hostname", required=True)
    c.add_argument("--cgroups-path", required=True)
    c.add_argument("--memory", required=True, help="memory limit, e.g. 256M")
    c.add_argument("--pids", type=int, required=True, help="pids limit")
    c.add_argument("--nofile", type=int, default=1024, help="RLIMIT_NOFILE soft and hard")
    c.add_argument("--tmpfs", action="append", default=[], metavar="DEST[:OPTIONS]")
    c.add_argument("--volume", action="append", default=[], metavar="HOSTDIR:DEST")
    c.add_argument("--ro-bind", action="append", default=[], metavar="HOSTPATH:DEST")
    c.add_argument("--netdev", action="append", default=[], metavar="HOSTIF:NAME",
                   help="linux.netDevices entry (none: leave the network namespace empty)")
    c.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    c.add_argument("--cwd")
    c.add_argument("--cap", dest="caps", action="append", default=[],
                   help="a capability to keep (default: none)")
    c.add_argument("--seccomp-profile", default=str(CONTAINERS_SECCOMP))
    c.add_argument("args", nargs="*", help="process.args (default: the image's)")

    s = sub.add_parser("seccomp", help="print the profile converted for a capability set")
    s.add_argument("--caps", default="", help="comma-separated bounding set (default: none)")
    s.add_argument("--arch", help="Go architecture name (default: this machine's)")
    s.add_argument("--profile", default=str(CONTAINERS_SECCOMP))

    o = ap.parse_args(argv)
    try:
        if o.cmd == "seccomp":
            caps = [c for c in o.caps.split(",") if c]
            json.dump(convert_seccomp(load_profile(Path(o.profile)), caps, o.arch), sys.stdout, indent=2)
            print()
            return 0
        path = o.bundle / "config.json"
        config = json.loads(path.read_text())
        new = rewrite(config, o)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(new, indent=2) + "\n")
        tmp.replace(path)
        return 0
    except Refused as e:
        print(f"service_config: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
