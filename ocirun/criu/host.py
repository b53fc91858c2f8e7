"""What CRIU on this host can do, and why it cannot: its version, its features,
and ``criu check``'s complaint when the kernel does not give it what it needs.

runc's rules: CRIU 3.0 or newer for anything (the VERSION request appeared
then), 3.11 for an external network namespace, 3.14 for the cgroup v2
freezer, 3.15 for an external pid namespace, 3.16 for --lsm-profile and
--lsm-mount-context; pre-dump needs the ``mem_track`` feature, lazy pages the
``lazy_pages`` one (asked with a FEATURE_CHECK request).
"""

from __future__ import annotations

import os

from ocirun.criu import rpc
from ocirun.criu.swrk import Swrk, first_error_line
from ocirun.errors import CriuError

MIN_VERSION = (3, 0, 0)


def version(binary: str) -> tuple[int, int, int]:
    """CRIU's (major, minor, sublevel), from a VERSION request."""
    resp = Swrk(binary).call({"type": rpc.REQ_TYPES["VERSION"]})
    v = resp.get("version") or {}
    return (v.get("major_number", 0), v.get("minor_number", 0), v.get("sublevel", 0))


def text(v: tuple[int, int, int]) -> str:
    return ".".join(str(n) for n in v)


def require_version(binary: str, minimum: tuple[int, int, int] = MIN_VERSION, what: str = "") -> tuple[int, int, int]:
    """CRIU's version; CriuError if it is older than ``minimum`` (for ``what``)."""
    have = version(binary)
    if have < minimum:
        need = f" for {what}" if what else ""
        raise CriuError(f"CRIU {text(have)} is too old: ocirun needs CRIU {text(minimum)} or newer{need}")
    return have


def features(binary: str) -> dict[str, bool]:
    """CRIU's answer to FEATURE_CHECK: mem_track (pre-dump), lazy_pages, pidfd_store.

    CRIU answers for the features it is asked about, and fails the request when
    it cannot even inspect the kernel (that is what ``criu check`` reports too)."""
    asked = {"mem_track": True, "lazy_pages": True, "pidfd_store": True}
    resp = Swrk(binary).call({"type": rpc.REQ_TYPES["FEATURE_CHECK"], "features": asked})
    got = resp.get("features") or {}
    return {name: bool(got.get(name, False)) for name in asked}


def require_feature(binary: str, name: str, what: str) -> None:
    if not features(binary).get(name):
        raise CriuError(f"{what} needs CRIU's {name} feature, which CRIU {text(version(binary))} "
                        "on this kernel does not have")


def kernel_problem(binary: str, timeout: float = 120) -> str | None:
    """None if ``criu check`` passes ("Looks good."), else the first line of its complaint."""
    import subprocess

    try:
        p = subprocess.run([binary, "check"], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except FileNotFoundError:
        return f"{binary} not found"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"criu check: {e}"
    if p.returncode == 0:
        return None
    out = (p.stderr + p.stdout).decode(errors="replace")
    return first_error_line(out) or f"criu check exited with status {p.returncode}"


def explain_failure(err: CriuError, binary: str, verb: str, log: str | None) -> CriuError:
    """The one error a failed dump or restore becomes: CRIU's kernel complaint when
    ``criu check`` fails here (nothing else can work then), else CRIU's answer with
    the first error line of its log and where the log is."""
    problem = kernel_problem(binary)
    if problem is not None:
        return CriuError(f"{verb}: CRIU cannot work on this kernel (criu check fails): {problem}")
    text_ = f"{verb}: {err}"
    if log:
        first = _first_log_error(log)
        if first and first not in text_:
            text_ += f": {first}"
        if os.path.exists(log):
            text_ += f" (log: {log})"
    return CriuError(text_)


def _first_log_error(path: str) -> str:
    """The first 'Error' line of a CRIU log, without its timestamp."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if "Error" in line:
                    line = line.strip()
                    if line.startswith("(") and ") " in line:
                        line = line.split(") ", 1)[1]
                    return line
    except OSError:
        pass
    return ""


def describe(binary: str) -> dict[str, str]:
    """The features document's annotations on checkpoint/restore: whether CRIU
    works here, its version, what it allows (pre-dump needs mem_track, lazy
    pages lazy_pages) and, when it does not work, CRIU's own first complaint."""
    prefix = "org.ocirun.checkpoint."
    out = {prefix + "enabled": "false"}
    try:
        have = require_version(binary)
    except CriuError as e:
        out[prefix + "problem"] = str(e)
        return out
    out[prefix + "criu.version"] = text(have)
    try:
        feats = features(binary)
    except CriuError as e:
        out[prefix + "problem"] = kernel_problem(binary) or str(e)
        return out
    out[prefix + "enabled"] = "true"
    out[prefix + "preDump"] = str(feats["mem_track"]).lower()
    out[prefix + "lazyPages"] = str(feats["lazy_pages"]).lower()
    return out
