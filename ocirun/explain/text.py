"""The explain document as text for people, and the phrases the steps share."""

from __future__ import annotations

from typing import Any

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
                     f"{argv_text(proc['args'])} as {proc['user']['uid']}:{proc['user']['gid']} in {proc['cwd']}")
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


def argv_text(args: list[str]) -> str:
    import shlex

    return shlex.join(args[1:]) if len(args) > 1 else ""


def hook_text(h: dict[str, Any]) -> str:
    args = " ".join(h["args"][1:]) if len(h["args"]) > 1 else ""
    timeout = f", timeout {h['timeout']}s" if h["timeout"] else ""
    return f"run the {h['kind']} hook {h['path']} {args}".rstrip() + f" ({h['namespace']} namespace, state " \
           f"status {h['status']}{timeout})"


def seccomp_text(s: dict[str, Any]) -> str:
    per = ", ".join(f"{n} {a}" for a, n in sorted(s["rulesPerAction"].items()))
    return (f"load the seccomp filter ({s['instructions']} BPF instructions): default {s['defaultAction']}, "
            f"{s['rules']} rules ({per or 'none'}), architectures {' '.join(s['architectures']) or 'native'}"
            + (f", flags {' '.join(s['flags'])}" if s["flags"] else "")
            + (f", listener {s['listenerPath']}" if s["notify"] else "") + f"; {s['loaded']}")


def star_text(n: int | None) -> str:
    return "*" if n is None else str(n)
