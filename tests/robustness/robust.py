"""Shared by the robustness tests: the integration fixtures (reused, not copied),
the run size, and a per-container leftover check that can run many times in
one test (after every kill, every fuzzed create).

The integration conftest (tests/integration/conftest.py) is loaded here under
the name ``integration_conftest``: its ``Bundle``, ``Runtime``, ``OCIRUN``,
``reap_orphans`` and its fixtures (``bundle_image``, ``bundle``, ``ocirun``
with its leak check) are the ones every root test uses.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
INTEGRATION = TESTS / "integration"
FIXTURES = HERE / "fixtures"
REAL_CONFIGS = FIXTURES / "real-configs"

if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))  # procs.py, which the integration conftest imports


def _load_integration_conftest():
    name = "integration_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, INTEGRATION / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


integration = _load_integration_conftest()
Bundle = integration.Bundle
Runtime = integration.Runtime
OCIRUN = integration.OCIRUN
reap_orphans = integration.reap_orphans
wait_until = integration.wait_until

from procs import my_children  # noqa: E402

# --- run size ------------------------------------------------------------------------
#: OCIRUN_ROBUSTNESS=big: the long run (thousands of fuzzed configs, hundreds of
#: fuzzed creates and kills); unset or "ci": the bounded, deterministic CI run.
PROFILE = os.environ.get("OCIRUN_ROBUSTNESS", "ci")
BIG = PROFILE == "big"


def scale(ci: int, big: int) -> int:
    """A count: ``ci`` in CI, ``big`` with OCIRUN_ROBUSTNESS=big."""
    return big if BIG else ci


# --- leftovers of one container ----------------------------------------------------------
def cgroup_dirs(cid: str) -> list[str]:
    """Every cgroup directory (v1 hierarchies and v2) whose name contains ``cid``."""
    found = []
    for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if cid in d:
                found.append(os.path.join(dirpath, d))
        if dirpath.count("/") > 7:
            dirs[:] = []
    return found


def _pids_in(cgroup_dir: str) -> list[int]:
    pids: list[int] = []
    for dirpath, _, files in os.walk(cgroup_dir):
        if "cgroup.procs" in files:
            try:
                pids += [int(x) for x in Path(dirpath, "cgroup.procs").read_text().split()]
            except OSError:
                pass
    return pids


def live_children() -> list[tuple[int, str]]:
    """Our children that are not zombies: as the subreaper of every init and
    stage-1 whose `ocirun` died, a leaked container process ends up here."""
    reap_orphans()
    return [(pid, stat[:80]) for pid, state, stat in my_children() if state != "Z"]


def leftovers(rt, cid: str, *, bundle: Path | None = None, orphans: bool = True,
              settle: float = 10.0) -> list[str]:
    """What a container left behind once it should be gone: its state directory,
    cgroups named after it, processes in them, orphaned processes (our live
    children, when no other container of ours is running), host mounts under
    the bundle. Looked at again for up to ``settle`` seconds while anything is
    found: a killed process may still be inside its exit (not yet a zombie) when
    the command that killed it returns."""
    deadline = time.monotonic() + settle
    while (found := _left_now(rt, cid, bundle, orphans)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _left_now(rt, cid: str, bundle: Path | None, orphans: bool) -> list[str]:
    found = []
    state_dir = Path(rt.root) / cid
    if state_dir.exists():
        found.append(f"state dir {state_dir}: {sorted(os.listdir(state_dir))}")
    for d in cgroup_dirs(cid):
        found.append(f"cgroup {d} (procs {_pids_in(d)})")
    if orphans:
        for pid, stat in live_children():
            found.append(f"process {pid}: {stat}")
    if bundle is not None:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        under = [m for m in mounts if m.startswith(str(bundle))]
        if under:
            found.append(f"mounts under the bundle: {under}")
    return found


def scrub(rt, cid: str) -> None:
    """Remove whatever ``cid`` left behind (only what is named after it, or our own
    orphaned children), so that a test that found a leak does not fail the next
    one or the stage's leftover check."""
    for d in cgroup_dirs(cid):
        for pid in _pids_in(d):
            _kill(pid)
    for pid, _ in live_children():
        _kill(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reap_orphans()
        if not any(_pids_in(d) for d in cgroup_dirs(cid)) and not live_children():
            break
        time.sleep(0.02)
    for d in sorted(cgroup_dirs(cid), key=lambda p: -p.count("/")):  # deepest first
        for dirpath, _dirs, _ in sorted(os.walk(d, topdown=False), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    state_dir = Path(rt.root) / cid
    if state_dir.exists():
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def delete_force(rt, cid: str) -> tuple[int, bytes]:
    """`delete --force`, reaping meanwhile as a shim would: a pid namespace's init
    finishes exiting only once its other processes are reaped, and the orphans of
    a killed `exec` are ours. (exit status, stderr)"""
    import subprocess
    import tempfile

    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_TEST_")}
    with tempfile.TemporaryFile() as err:
        d = subprocess.Popen([*OCIRUN, "--root", str(rt.root), "delete", "--force", cid], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        while d.poll() is None:
            reap_orphans()
            time.sleep(0.01)
        err.seek(0)
        return d.returncode, err.read()


def one_message(stderr: bytes) -> str:
    """The error message of a failed call: exactly one line that is not a warning,
    never a traceback or an internal error."""
    text = stderr.decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("warning: ")]
    assert "Traceback" not in text and "internal error" not in text, text
    assert len(lines) == 1, text
    return lines[0]
