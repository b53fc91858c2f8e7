"""Private podman and containerd environments (tests/e2e and benchmarks/engines.py).

Everything either engine writes lives under one temporary directory: podman's
containers.conf and storage.conf (pointed to by CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF), its storage, run root, tmp dir, locks (file locks,
not /dev/shm), events log and network config; containerd's config, root,
state, socket, the runtime's state root (`ctr run --runc-root`) and the IO
fifos (`--fifo-dir`).  Containers get cgroups under a parent named
``ocitest-e2e-<hex>`` (podman: `--cgroup-parent`; containerd: the ctr
namespace, which becomes the first cgroup path element).

Two things are not configurable in these versions and are handled here:
containerd 1.6 puts its shims' sockets in /run/containerd/s (removed again
when it did not exist before), and containers/image writes a blob-info cache
to /var/lib/containers/cache (skopeo runs in a private mount namespace with a
tmpfs over /var/lib, so the host's is never touched).

The conmon and containerd-shim processes double-fork; the process using this
module should be a child subreaper (`become_subreaper`) so that they are
reparented to it and reaped (`reap_orphans`), not left as zombies of a pid 1
that does not reap.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ocitest/busybox:latest"
IMAGE_TAG = "busybox"           # the tag bundles/make-busybox-bundle gives its image
CGROUP_ROOT = Path("/sys/fs/cgroup")
PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
# Children started with Popen that their owner waits for: reap_orphans leaves them alone.
_owned_pids: set[int] = set()


# --- processes ---------------------------------------------------------------------------

def become_subreaper() -> None:
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children(state: str | None = None) -> list[int]:
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == me and (state is None or rest[0] == state):
            out.append(int(entry))
    return out


def reap_orphans() -> None:
    """Reap exited children we did not start ourselves (conmon, shims reparented to us)."""
    for pid in _children("Z"):
        if pid in _owned_pids:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    """Popen a process we wait for ourselves (never reaped behind our back)."""
    p = subprocess.Popen(argv, **kw)
    _owned_pids.add(p.pid)
    return p


def release(p: subprocess.Popen) -> None:
    _owned_pids.discard(p.pid)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (our own temp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if any(text in a for a in cmdline(int(entry))):
                try:
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state != "Z":
                    found.append(int(entry))
    return found


def processes_left(text: str, timeout: float = 30) -> list[int]:
    """processes_mentioning(text) once those still exiting after a teardown (conmon running
    its cleanup exit command, containerd's shims) have had ``timeout`` seconds to go."""
    deadline = time.monotonic() + timeout
    while (found := processes_mentioning(text)) and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.05)
    return found


def kill_and_reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in pids):
        time.sleep(0.05)
    reap_orphans()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


# --- mounts and cgroups --------------------------------------------------------------------

def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(prefix: Path) -> list[str]:
    p = str(prefix).rstrip("/")
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = _unescape(line.split()[4])
        if target == p or target.startswith(p + "/"):
            out.append(target)
    return out


def unmount_under(prefix: Path) -> list[str]:
    """Detach every mount at or under ``prefix`` (deepest first); returns what was mounted."""
    found = mounts_under(prefix)
    for target in sorted(set(found), key=lambda t: t.count("/"), reverse=True):
        _libc.umount2(target.encode(), MNT_DETACH)
    return found


def cgroup_dirs(name: str) -> list[Path]:
    """``name`` (a top-level cgroup, e.g. /ocitest-e2e-…) in every hierarchy where it exists."""
    name = name.strip("/")
    out = []
    for hierarchy in CGROUP_ROOT.iterdir():
        d = hierarchy / name
        if d.is_dir():
            out.append(d)
    if (CGROUP_ROOT / "cgroup.controllers").exists() and (CGROUP_ROOT / name).is_dir():
        out.append(CGROUP_ROOT / name)
    return out


def remove_cgroups(name: str) -> list[str]:
    """rmdir the cgroup tree ``name`` in every hierarchy; returns the dirs that existed."""
    existed = []
    for top in cgroup_dirs(name):
        for d in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True):
            existed.append(str(d))
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)   # the last task is still exiting
    return existed


# --- the image ---------------------------------------------------------------------------------

def image_layout() -> Path:
    """The cached busybox OCI image layout of bundles/make-busybox-bundle (tag 'busybox')."""
    out = subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--print-image"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def write_policy(path: Path) -> Path:
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def skopeo_copy(src: str, dest: str, *, env: dict[str, str], policy: Path, tmpdir: Path) -> None:
    """skopeo copy in a private mount namespace whose /var/lib is a tmpfs: containers/image
    writes a blob-info cache to /var/lib/containers/cache for root, and nothing may say where
    else.  Its big temporary files go to ``tmpdir`` (default /var/tmp)."""
    script = 'mount -t tmpfs -o size=16m,mode=0755 ocitest-e2e /var/lib && exec skopeo "$@"'
    tmpdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "skopeo",
                    "--tmpdir", str(tmpdir), "copy", "--quiet", "--policy", str(policy), src, dest],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# --- results -------------------------------------------------------------------------------------

class Result:
    def __init__(self, argv: list[str], rc: int, out: str, err: str):
        self.argv, self.returncode, self.stdout, self.stderr = argv, rc, out, err

    def __repr__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


class CommandFailed(AssertionError):
    pass


def run_cmd(argv: list[str], *, env: dict[str, str], check: bool, timeout: float,
            input: str | None = None, cwd: Path | None = None) -> Result:
    import tempfile

    # Files, not pipes: a detached container's processes may hold our stdio.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, env=env, stdout=out, stderr=err, timeout=timeout, cwd=cwd,
                           input=input.encode() if input is not None else None,
                           stdin=None if input is not None else subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        res = Result(argv, p.returncode, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"))
    reap_orphans()
    if check and res.returncode != 0:
        raise CommandFailed(repr(res))
    return res


def host_ulimits() -> list[str]:
    """default_ulimits for containers.conf within this machine's hard limits.

    Rootful podman otherwise asks for nofile and nproc 1048576, above the hard
    limits here, and root has no CAP_SYS_RESOURCE to raise them.  podman runs
    conmon (and so the runtime) with nproc lowered to 32768."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


def runtime_name(binary: Path) -> str:
    # ocirun-direct is ocirun's direct path (docs/helper.md): to podman, still "ocirun"
    return "ocirun" if binary.name == "ocirun-direct" else binary.name


# --- podman ----------------------------------------------------------------------------------------

def containers_conf(root: Path, runtimes: dict[str, Path], default: str, rootless: bool = False) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    table = "\n".join(f"{name} = {toml_list([str(path)])}" for name, path in runtimes.items())
    # conmon (which runs the runtime) gets only these: the runtime's OCIRUN_HELPER* settings
    # (docs/helper.md: on or off, the test stage's helper directory) are passed on too
    conmon_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    # (rootless: not the stage's helper directory, root's alone; the user's helper lives
    # in its XDG_RUNTIME_DIR, which conmon gets from podman)
    conmon_env += [f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith("OCIRUN_HELPER") and not (rootless and k == "OCIRUN_HELPER_DIR")]
    return f"""\
# Written by tests/e2e/engines.py: everything podman keeps is under {root}.
[containers]
default_ulimits = {toml_list(host_ulimits())}
netns = "none"
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{root}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
lock_type = "file"
tmp_dir = "{root}/libpod-tmp"
static_dir = "{root}/storage/libpod"
volume_path = "{root}/storage/volumes"
image_copy_tmp_dir = "{root}/tmp"
runtime = "{default}"
runtime_supports_json = {toml_list(list(runtimes))}
conmon_env_vars = {toml_list(conmon_env)}

[engine.runtimes]
{table}
"""


class Podman:
    """podman with a private containers.conf/storage.conf under ``root``."""

    def __init__(self, root: Path, runtime: Path, *, storage_driver: str = "overlay",
                 extra_runtimes: dict[str, Path] | None = None):
        self.root = root
        self.runtime = runtime
        self.runtime_name = runtime_name(runtime)
        self.cgroup_parent = f"/ocitest-e2e-{uuid.uuid4().hex[:8]}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        runtimes = {self.runtime_name: runtime, **(extra_runtimes or {})}
        self.containers_conf = root / "containers.conf"
        self.containers_conf.write_text(containers_conf(root, runtimes, self.runtime_name))
        self.storage_conf = root / "storage.conf"
        self.storage_conf.write_text(f'[storage]\ndriver = "{storage_driver}"\n'
                                     f'graphroot = "{root}/storage"\nrunroot = "{root}/runroot"\n')
        self.policy = write_policy(root / "policy.json")
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "TMPDIR": str(root / "tmp"),
        }
        self.env.pop("CONTAINERS_REGISTRIES_CONF", None)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None) -> Result:
        return run_cmd(["podman", *args], env=self.env, check=check, timeout=timeout, input=input)

    @property
    def create_opts(self) -> list[str]:
        """What every `podman run/create` outside a pod gets: our cgroup parent."""
        return ["--cgroup-parent", self.cgroup_parent]

    def run(self, *args: str, **kw) -> Result:
        return self("run", *self.create_opts, *args, **kw)

    def load_image(self, layout: Path) -> None:
        skopeo_copy(f"oci:{layout}:{IMAGE_TAG}", f"containers-storage:{IMAGE}", env=self.env,
                    policy=self.policy, tmpdir=self.root / "tmp")

    def remove_all(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False, timeout=180)
        self("pod", "rm", "--all", "--force", "--time", "0", check=False, timeout=180)

    def close(self) -> list[str]:
        """Tear everything down; returns what had to be cleaned up by force (leaks)."""
        leaks: list[str] = []
        self.remove_all()
        left = self("ps", "--all", "--quiet", check=False).stdout.split()
        if left:
            leaks.append(f"podman containers still there after rm --all: {left}")
        stray = processes_left(str(self.root))
        if stray:
            leaks.append(f"processes still running: {[' '.join(cmdline(p)) for p in stray]}")
            kill_and_reap(stray)
        # containers/storage keeps its overlay home bind-mounted (private) while in use;
        # anything else left mounted (rootfs overlays, shm) is a leak.
        for m in unmount_under(self.root):
            if m != str(self.root / "storage" / "overlay"):
                leaks.append(f"mounted: {m}")
        # The parent and conmon's shared cgroup under it stay by design; a container's
        # (libpod-<id>) or a pod's cgroup should have gone with it.
        for d in remove_cgroups(self.cgroup_parent):
            if Path(d).name.startswith("libpod-"):
                leaks.append(f"cgroup left: {d}")
        shutil.rmtree(self.root, ignore_errors=True)
        return leaks


class RootlessPodman(Podman):
    """Rootless podman: ``user`` (tests/integration/rootless_user.RootlessUser) runs it,
    with the same private containers.conf as root's (cgroupfs, no network, file
    events and locks) and a storage.conf whose rootless_storage_path keeps its
    storage under ``root`` too (rootless podman ignores graphroot). No
    --cgroup-parent: on cgroup v1 rootless podman makes no cgroups, on v2 the
    user's own delegated subtree decides. The user's XDG_RUNTIME_DIR holds
    podman's run root and the runtime's default state root."""

    def __init__(self, root: Path, runtime: Path, user, *, storage_driver: str = "overlay"):
        super().__init__(root, runtime, storage_driver=storage_driver)
        self.containers_conf.write_text(containers_conf(root, {self.runtime_name: runtime}, self.runtime_name,
                                                        rootless=True))
        self.user = user
        self.storage_conf.write_text(f'[storage]\ndriver = "{storage_driver}"\n'
                                     f'graphroot = "{root}/storage"\nrunroot = "{root}/runroot"\n'
                                     f'rootless_storage_path = "{root}/storage"\n')
        self.env = user.env(CONTAINERS_CONF=str(self.containers_conf),
                            CONTAINERS_STORAGE_CONF=str(self.storage_conf), TMPDIR=str(root / "tmp"))
        user.give(root)

    def argv(self, *args: str) -> list[str]:
        return self.user.argv(["podman", *args])

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None) -> Result:
        return run_cmd(self.argv(*args), env=self.env, check=check, timeout=timeout, input=input,
                       cwd=self.user.home)

    @property
    def create_opts(self) -> list[str]:
        return []

    def load_image(self, layout: Path) -> None:
        """skopeo as the user (it enters podman's user namespace for containers-storage)
        from a copy of the layout the user can read."""
        mine = self.root / "image"
        shutil.copytree(layout, mine, symlinks=True)
        self.user.give(mine)
        run_cmd(self.user.argv(["skopeo", "copy", "--quiet", "--policy", str(self.policy),
                                f"oci:{mine}:{IMAGE_TAG}", f"containers-storage:{IMAGE}"]),
                env=self.env, check=True, timeout=300, cwd=self.user.home)

    def pause_pids(self) -> set[int]:
        """Podman's rootless pause process (it holds the user namespace), if running."""
        pids = set()
        for f in (*self.root.rglob("pause.pid"), *self.user.runtime_dir.rglob("pause.pid")):
            try:
                pids.add(int(f.read_text().strip()))
            except (OSError, ValueError):
                pass
        return {p for p in pids if Path(f"/proc/{p}").exists()}

    def close(self) -> list[str]:
        leaks: list[str] = []
        self.remove_all()
        left = self("ps", "--all", "--quiet", check=False).stdout.split()
        if left:
            leaks.append(f"podman containers still there after rm --all: {left}")
        leaks += self.user.stop_helpers()  # the runtime's warm helpers (docs/helper.md)
        pause = self.pause_pids()
        deadline = time.monotonic() + 10
        while (stray := [p for p in self.user.processes() if p not in pause]) and time.monotonic() < deadline:
            reap_orphans()  # conmon and the containers' last processes may still be exiting
            time.sleep(0.05)
        if stray:
            leaks.append(f"processes still running: {[' '.join(cmdline(p)) for p in stray]}")
        # the pause process, and anything else of the user's, goes with the user
        self.user.kill_all()
        reap_orphans()
        for m in unmount_under(self.root):
            leaks.append(f"mounted: {m}")
        shutil.rmtree(self.root, ignore_errors=True)
        return leaks


# --- containerd -------------------------------------------------------------------------------------

CONTAINERD_DISABLED = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
]
SHIM_SOCKET_DIR = Path("/run/containerd")   # containerd 1.6: fixed, not configurable


def containerd_config(root: Path) -> str:
    disabled = ", ".join(json.dumps(p) for p in CONTAINERD_DISABLED)
    return f"""\
# Written by tests/e2e/engines.py: everything containerd keeps is under {root}.
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.monitor.v1.cgroups"]
  no_prometheus = true
"""


class Containerd:
    """A private containerd daemon under ``root``; `ctr` talks to it with --address."""

    def __init__(self, root: Path, runtime: Path):
        self.root = root
        self.runtime = runtime
        self.namespace = f"ocitest-e2e-{uuid.uuid4().hex[:8]}"
        self.address = root / "containerd.sock"
        self.runtime_root = root / "runtime-root"
        self.fifo_dir = root / "fifo"
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "config.toml"
        self.config.write_text(containerd_config(root))
        self.policy = write_policy(root / "policy.json")
        self.env = {**os.environ, "TMPDIR": str(root)}
        self.proc: subprocess.Popen | None = None
        self._socket_dir_existed = SHIM_SOCKET_DIR.exists()

    def start(self) -> None:
        self.log = open(self.root / "containerd.log", "wb")
        self.proc = spawn(["containerd", "--config", str(self.config)], stdin=subprocess.DEVNULL,
                          stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}: "
                                   + (self.root / "containerd.log").read_text()[-2000:])
            if self.address.exists() and self.ctr("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("containerd did not come up in 30 s")
            time.sleep(0.05)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> Result:
        return run_cmd(["ctr", "--address", str(self.address), "--namespace", self.namespace, *args],
                       env=self.env, check=check, timeout=timeout, input=input)

    @property
    def ctr_argv(self) -> list[str]:
        return ["ctr", "--address", str(self.address), "--namespace", self.namespace]

    @property
    def runtime_opts(self) -> list[str]:
        """`ctr run` options choosing the runtime binary (BinaryName) and its state root."""
        return ["--runc-binary", str(self.runtime), "--runc-root", str(self.runtime_root),
                "--fifo-dir", str(self.fifo_dir)]

    def run(self, *args: str, **kw) -> Result:
        return self.ctr("run", *self.runtime_opts, *args, **kw)

    def load_image(self, layout: Path) -> None:
        archive = self.root / "busybox.oci.tar"
        skopeo_copy(f"oci:{layout}:{IMAGE_TAG}", f"oci-archive:{archive}:{IMAGE}", env=self.env,
                    policy=self.policy, tmpdir=self.root / "tmp")
        self.ctr("images", "import", "--base-name", IMAGE.rsplit(":", 1)[0], str(archive))

    def containers(self) -> list[str]:
        return self.ctr("containers", "list", "--quiet", check=False).stdout.split()

    def remove_all(self) -> None:
        tasks = self.ctr("tasks", "list", check=False).stdout.splitlines()[1:]
        for line in tasks:
            cid = line.split()[0]
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, check=False)
        for cid in self.containers():
            self.ctr("tasks", "delete", "--force", cid, check=False)
            self.ctr("containers", "delete", cid, check=False)

    def close(self) -> list[str]:
        leaks: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self.remove_all()
            left = self.containers()
            if left:
                leaks.append(f"containerd containers still there: {left}")
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                leaks.append("containerd did not stop on SIGTERM")
        if self.proc is not None:
            release(self.proc)
            self.log.close()
        stray = processes_left(str(self.root))
        if stray:
            leaks.append(f"processes still running: {[' '.join(cmdline(p)) for p in stray]}")
            kill_and_reap(stray)
        reap_orphans()
        for m in unmount_under(self.root):
            leaks.append(f"mounted: {m}")
        for d in remove_cgroups(self.namespace):
            if d.count("/") > 5:       # /sys/fs/cgroup/<ctl>/<ns>/<id>: a container's
                leaks.append(f"cgroup left: {d}")
        if not self._socket_dir_existed:
            for d in (SHIM_SOCKET_DIR / "s", SHIM_SOCKET_DIR / "fifo", SHIM_SOCKET_DIR):
                try:
                    d.rmdir()
                except OSError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        return leaks


def until(predicate, *, timeout: float = 30, what: str = "condition", interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# A shell snippet that prints the memory limit and pids limit of the container's
# own cgroup as the container sees it (cgroup v1 hierarchies or the v2 unified one).
SHOW_LIMITS = (
    "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; "
    "else cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; fi"
)
SHOW_MEMORY = (
    "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max; "
    "else cat /sys/fs/cgroup/memory/memory.limit_in_bytes; fi"
)
# Writes an ever-growing counter to /tmp/n: it stops while the container is frozen.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done"
