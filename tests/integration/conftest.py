"""Root integration tests: real containers from the busybox bundle.

Every test gets a fresh copy of the bundle and its own state root, and is
followed by a leak check: no new mounts, no container processes, no cgroups
named after its containers, no state dirs, no new fds in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import my_children

REPO = Path(__file__).resolve().parents[2]
#: OCIRUN_TEST_HELPER=1 (scripts/test's integration-helper stage): every call goes
#: through the installed `ocirun` command, the C front end, and its warm helper
#: (docs/helper.md); otherwise through the direct path, `python -m ocirun`.
HELPER = os.environ.get("OCIRUN_TEST_HELPER", "") not in ("", "0", "off", "no")
FRONT_END = Path(sys.prefix) / "bin" / "ocirun"
DIRECT = Path(sys.prefix) / "bin" / "ocirun-direct"
OCIRUN = [str(FRONT_END)] if HELPER else [sys.executable, "-m", "ocirun"]
PR_SET_CHILD_SUBREAPER = 36

pytestmark = pytest.mark.root
_own_helper_dir: str | None = None


def pytest_configure(config):
    global _own_helper_dir
    if os.geteuid() != 0:
        return
    # Container inits outlive the `ocirun create` that made them; they are
    # reparented to us (as to conmon or containerd's shim) and reaped by reap_orphans().
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if HELPER and not os.environ.get("OCIRUN_HELPER_DIR"):
        # a helper of this session's own (stopped at its end), not the machine's
        import tempfile

        _own_helper_dir = tempfile.mkdtemp(prefix="ocirun-helper-test.")
        os.environ["OCIRUN_HELPER_DIR"] = _own_helper_dir


def pytest_unconfigure(config):
    if HELPER and os.geteuid() == 0:
        stop_helper()
        if _own_helper_dir is not None:
            shutil.rmtree(_own_helper_dir, ignore_errors=True)


def stop_helper(env: dict[str, str] | None = None) -> None:
    """`ocirun helper stop` for the helper the tests' calls use (and reap it: it was
    reparented to us)."""
    subprocess.run([str(DIRECT), "helper", "stop"], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    reap_orphans()


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` has passed (False)."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


def written(path: Path, timeout: float = 10.0) -> str:
    """The text a process writes to ``path`` with one shell line (``echo x > path``),
    once it is there whole: the redirection creates the file before echo writes,
    so it is read once it ends with a newline ("" if it never does)."""
    def whole() -> bool:
        try:
            return path.read_text().endswith("\n")
        except FileNotFoundError:
            return False
    return path.read_text() if wait_until(whole, timeout) else ""


def program_args(pid: int, want: bytes, timeout: float = 5.0) -> bytes:
    """/proc/PID/cmdline once a process that `start` or `exec` reported running has
    its arguments: they return on the exec fifo's close-on-exec, a moment before the
    kernel sets the new program's arguments (empty meanwhile; never the runtime's)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    first = cmdline.read_bytes()
    assert first in (b"", want), first
    wait_until(lambda: cmdline.read_bytes() == want, timeout, step=0.001)
    return cmdline.read_bytes()


def reap_orphans() -> None:
    """Reap exited children we did not start through subprocess (orphaned inits)."""
    for pid, state, _ in my_children():
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture(scope="session")
def bundle_image(tmp_path_factory) -> Path:
    """The busybox bundle made once by bundles/make-busybox-bundle, copied per test."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root")
    out = tmp_path_factory.mktemp("image") / "busybox"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


class Bundle:
    def __init__(self, path: Path):
        self.path = path

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())

    def write(self, config: dict) -> None:
        self.config_path.write_text(json.dumps(config, indent=2))

    def edit(self, fn) -> None:
        c = self.config()
        fn(c)
        self.write(c)

    def set_args(self, *args: str) -> None:
        def f(c):
            c["process"]["args"] = list(args)
            c["process"]["terminal"] = False

        self.edit(f)

    def add_user_namespace(self, host_id: int = 100000, size: int = 65536) -> None:
        """A new user namespace, container ids 0.. mapped to host_id.., and the
        rootfs owned by the mapped root so that it can write there."""
        def f(c):
            c["linux"]["namespaces"].append({"type": "user"})
            c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]

        self.edit(f)
        os.chown(self.rootfs, host_id, host_id)

    def copy(self, dest: Path) -> Bundle:
        shutil.copytree(self.path, dest, symlinks=True)
        return Bundle(dest)


@pytest.fixture
def bundle(bundle_image, tmp_path) -> Bundle:
    b = Bundle(bundle_image).copy(tmp_path / "bundle")
    b.set_args("true")
    return b


class Runtime:
    """Runs the real CLI (a new interpreter per call, as clients do)."""

    def __init__(self, root: Path):
        self.root = root
        self.ids: list[str] = []

    def new_id(self, prefix: str = "ocitest") -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None,
                 timeout: float = 60, global_args: tuple[str, ...] = (), cwd=None,
                 stdin=None) -> subprocess.CompletedProcess:
        cmd = [*OCIRUN, "--root", str(self.root), *global_args, *args]
        # Files, not pipes: a created container's init inherits the caller's stdio
        # (as with runc), so a pipe would not reach EOF until the container exits.
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(cmd, stdout=out, stderr=err, input=input, timeout=timeout, cwd=cwd,
                               stdin=None if input is not None else (stdin if stdin is not None else subprocess.DEVNULL))
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        reap_orphans()
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {p.returncode}\nstdout: {p.stdout.decode()}\nstderr: {p.stderr.decode()}"
            )
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> str:
        """Poll `state` until the container reaches ``status``; return the last status seen."""
        import time

        end = time.monotonic() + timeout
        while True:
            st = self.state(cid)["status"]
            if st == status or time.monotonic() > end:
                return st
            time.sleep(0.05)


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def _fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _cgroup_dirs(ids: list[str]) -> list[str]:
    found = []
    for top in ("/sys/fs/cgroup",):
        for dirpath, dirs, _ in os.walk(top):
            for d in dirs:
                if any(cid in d for cid in ids):
                    found.append(os.path.join(dirpath, d))
            if dirpath.count("/") > 7:
                dirs[:] = []
    return found


def _processes_of(ids: list[str], root: Path) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cg = Path(f"/proc/{entry}/cgroup").read_text()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] == "Z":
            continue
        if any(cid in cg for cid in ids):
            found.append(f"{entry}: {stat[:60]}")
    return found


@pytest.fixture
def ocirun(tmp_path) -> Iterator[Runtime]:
    """The CLI with this test's own state root; afterwards, a leak check.

    The check runs after the containers the test made are deleted (forcibly
    if the test did not): what it finds is what ocirun itself left behind.
    """
    mounts_before = _mounts()
    fds_before = _fds()
    rt = Runtime(tmp_path / "state-root")
    yield rt
    for cid in rt.ids:
        rt("delete", "--force", cid, check=False)
    reap_orphans()
    leaks = []
    new_mounts = _mounts() - mounts_before
    if new_mounts:
        leaks.append(f"mounts: {sorted(new_mounts)}")
    if rt.ids:
        procs = _processes_of(rt.ids, rt.root)
        if procs:
            leaks.append(f"processes: {procs}")
        cgs = _cgroup_dirs(rt.ids)
        if cgs:
            leaks.append(f"cgroups: {cgs}")
    if rt.root.exists():
        left = [p for p in os.listdir(rt.root) if not p.startswith(".")]
        if left:
            leaks.append(f"state dirs: {left}")
    new_fds = _fds() - fds_before
    if new_fds:
        leaks.append(f"fds: {sorted(new_fds)}")
    assert not leaks, "test left things behind: " + "; ".join(leaks)


@pytest.fixture
def api(ocirun):
    """ocirun.Runtime (the library, in this process) on the ``ocirun`` fixture's state
    root: the CLI sees its containers, and the same leak check follows the test.
    Take ids from ``ocirun.new_id()``."""
    from ocirun import Runtime

    return Runtime(root=ocirun.root)
