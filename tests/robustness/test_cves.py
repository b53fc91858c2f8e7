"""CVE regression tests: one per CVE, named after it, each really attempting the
attack (or its essential step) against ocirun and asserting the defence.

Related tests elsewhere (kept where they are; they test neighbouring cases):
tests/integration/test_exec.py::test_exec_cwd_through_a_leaked_host_fd_does_not_escape
(CVE-2024-21626 through exec), test_defences.py::
test_masked_path_with_dev_null_symlink_is_not_followed (CVE-2025-31133, a symlink to a
host file), test_terminal.py::test_symlink_at_dev_console_is_not_followed and
test_host_ptmx_node_in_the_rootfs_is_refused (CVE-2025-52565), test_shim.py::
test_masked_path_refuses_a_replaced_dev_null and
test_mount_target_symlink_stays_inside_the_rootfs (the shim alone).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from pty_peer import ConsolePeer
from robust import OCIRUN, leftovers, one_message, scale, wait_until


def _running(ocirun, bundle, *args: str) -> tuple[str, int]:
    bundle.set_args(*(args or ("sleep", "300")))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    ocirun("start", cid)
    return cid, ocirun.state(cid)["pid"]


def _exec(ocirun, cid: str, *args: str, opts: tuple[str, ...] = (), env: dict | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIRUN, "--root", str(ocirun.root), "exec", *opts, cid, *args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=env)


def _status_field(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


# --------------------------------------------------------------------------- CVE-2019-5736
def _ldd_deps(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    deps = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            deps.append(path)
    return deps


def _runtime_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A disposable copy of the installed runtime (the C front end, the
    ocirun-direct launcher and the Python it runs), never the real one, and the
    environment that lets that Python find its library, stdlib and ocirun."""
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    for name in ("ocirun", "ocirun-direct"):
        shutil.copy2(Path(sys.prefix) / "bin" / name, runtime_dir / name)
    shutil.copy2(os.path.realpath(sys.executable), runtime_dir / "python")
    env = dict(os.environ, PYTHONHOME=sys.base_prefix, OCIRUN_HELPER="off",
               LD_LIBRARY_PATH=sysconfig.get_config_var("LIBDIR") or "",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                           *[p for p in sys.path if p.endswith("site-packages")]]))
    return runtime_dir, env


def _digests(runtime_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(runtime_dir.iterdir())}


def test_CVE_2019_5736_runtime_binary_cannot_be_overwritten_through_proc_self_exe(ocirun, bundle, tmp_path):
    """The container execs /proc/self/exe (as `ocirun exec` would run a binary the
    attacker replaced by "#!/proc/self/exe"): in the window before execve that link
    names the binary of the process that cloned it. A process of the container
    grabs it through /proc/PID/exe and, once it has exited, reopens it for
    writing. The runtime here is a copy of the installed command (front end,
    launcher, Python), run on the direct path: the Python that clones runs from a
    sealed memfd copy (runc's defence), so the grab gets the memfd, the write is
    refused, and no file of the runtime changes."""
    runtime_dir, env = _runtime_copy(tmp_path)
    before = _digests(runtime_dir)
    # The container must be able to run that binary: its loader, libraries and stdlib.
    for dep in _ldd_deps(str(runtime_dir / "python")):
        dest = bundle.rootfs / dep.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(dep), dest)
    stdlib = sysconfig.get_paths()["stdlib"]
    attacker = textwrap.dedent("""\
        me=$$
        while :; do
          for d in /proc/[0-9]*; do
            p=${d#/proc/}
            [ "$p" = 1 ] || [ "$p" = "$me" ] && continue
            case "$(cat $d/cmdline 2>/dev/null)" in *sleep-in-runtime*)
              # "command": a failed redirection of the special built-in exec would end
              # this shell, the container's init, and every process of the container with it
              command exec 3<$d/exe || continue
              # what was grabbed (not $d/exe: before its execve the process may not be readable)
              readlink /proc/self/fd/3 >/tmp/exe
              while [ -e $d ]; do :; done
              n=0  # "text file busy" while any process runs it: the runtime itself, until it exits
              until echo pwned 2>/tmp/why >/proc/self/fd/3; do
                n=$((n+1)); [ $n -gt 40 ] && break; sleep 0.05
              done
              # written whole, then renamed: the test reads it as soon as it exists
              if [ $n -le 40 ]; then echo overwritten >/tmp/result.new
              else echo "refused: $(cat /tmp/why)" >/tmp/result.new; fi
              mv /tmp/result.new /tmp/result
              exec sleep 300;;
            esac
          done
        done
        """)
    (bundle.rootfs / "attacker.sh").write_text(attacker)
    bundle.edit(lambda c: c["mounts"].append({"destination": stdlib, "type": "bind", "source": stdlib,
                                              "options": ["rbind", "ro"]}))
    cid, _ = _running(ocirun, bundle, "sh", "/attacker.sh")
    victim = subprocess.run([str(runtime_dir / "ocirun"), "--root", str(ocirun.root), "exec", cid,
                             "/proc/self/exe", "-c", "import time; time.sleep(1.5)", "sleep-in-runtime"],
                            env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    result = bundle.rootfs / "tmp" / "result"
    wait_until(result.exists, timeout=60)  # 41 tries of the write, a fork each, on a loaded machine
    assert result.exists(), f"the attacker never saw the process: {victim}"
    outcome = result.read_text().strip()
    assert _digests(runtime_dir) == before, f"runtime binary overwritten ({outcome})"
    assert outcome.startswith("refused"), outcome
    exe = (bundle.rootfs / "tmp" / "exe").read_text()
    assert exe.startswith("/memfd:python"), (exe, outcome)
    assert victim.returncode == 0, victim.stderr  # the exec'd copy of Python ran inside, harmlessly


@pytest.mark.parametrize("helper", ["off", "on"])
def test_CVE_2019_5736_the_container_processes_are_clones_of_a_sealed_copy(ocirun, bundle, tmp_path, helper):
    """Both paths of the installed command: the process that clones the init (the
    direct path's Python, or the front end with a warm helper) runs from a sealed
    memfd copy, so the created init's /proc/PID/exe, what a container could reopen
    through it, is no file of the host, and it is sealed against writes. (Nothing
    is written here: the installed runtime is used, with a helper of the test's own.)"""
    front_end = Path(sys.prefix) / "bin" / "ocirun"
    env = dict(os.environ, OCIRUN_HELPER=helper, OCIRUN_HELPER_DIR=str(tmp_path / "helper"),
               OCIRUN_HELPER_TIMEOUT="60000")  # served, however busy the machine (not 5 s, then direct)
    cmd = [str(front_end), "--root", str(ocirun.root)]
    run = {"env": env, "timeout": 60, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
           "stderr": subprocess.DEVNULL}  # not pipes: the init inherits the caller's stdio
    try:
        if helper == "on":
            subprocess.run([*cmd, "helper", "start"], check=True, **run)
        bundle.set_args("sleep", "300")
        cid = ocirun.new_id()
        subprocess.run([*cmd, "create", "--bundle", str(bundle.path), cid], check=True, **run)
        pid = ocirun.state(cid)["pid"]
        exe = os.readlink(f"/proc/{pid}/exe")
        assert exe.startswith("/memfd:python" if helper == "off" else "/memfd:ocirun"), exe
        fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY)
        try:
            import fcntl

            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        finally:
            os.close(fd)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL, hex(seals)
        ocirun("delete", "--force", cid)
    finally:
        if helper == "on":
            subprocess.run([*cmd, "helper", "stop"], **run)


# --------------------------------------------------------------------------- CVE-2024-21626
@pytest.mark.parametrize("verb", ["create", "exec"])
def test_CVE_2024_21626_leaked_host_fd_cannot_become_the_cwd(ocirun, bundle, tmp_path, verb):
    """runc leaked a host directory fd (of /sys/fs/cgroup) into its init; with
    cwd /proc/self/fd/N the process started in the host's filesystem. Here the
    caller leaks a host directory fd into `ocirun create` / `exec`, and the cwd
    names it and every other low fd: the process never runs with a cwd outside
    the container."""
    secret = tmp_path / "host-dir"
    secret.mkdir()
    (secret / "host-secret").write_text("host\n")
    fd = os.open(secret, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        if verb == "exec":
            cid, _ = _running(ocirun, bundle)
        for n in sorted({fd, *range(3, 16)}):
            cwd = f"/proc/self/fd/{n}"
            if verb == "create":
                bundle.edit(lambda c, cwd=cwd: c["process"].update(cwd=cwd, args=["sh", "-c", "ls; pwd"],
                                                                    terminal=False))
                cid = ocirun.new_id()
                p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "run", "--bundle", str(bundle.path),
                                    cid], capture_output=True, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                   timeout=60)
            else:
                p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "exec", "--cwd", cwd, cid, "sh", "-c",
                                    "ls; pwd"], capture_output=True, pass_fds=(fd,),
                                   stdin=subprocess.DEVNULL, timeout=60)
            assert b"host-secret" not in p.stdout and str(secret).encode() not in p.stdout, (n, p.stdout)
            assert p.returncode != 0, (n, p.stdout)  # no such cwd in the container, or refused
            if verb == "create":
                ocirun("delete", "--force", cid, check=False)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- CVE-2025-31133
def _own_dev(bundle) -> Path:
    """/dev of the container is a directory the image controls (bound), not a tmpfs."""
    evil = bundle.path / "evil-dev"
    evil.mkdir()

    def f(c):
        c["mounts"] = [m for m in c["mounts"] if not m["destination"].startswith("/dev")]
        c["mounts"].insert(1, {"destination": "/dev", "type": "bind", "source": str(evil),
                               "options": ["rbind", "nosuid"]})
    bundle.edit(f)
    return evil


@pytest.mark.parametrize("null", ["symlink-to-host-file", "symlink-to-core_pattern", "regular-file", "missing"])
def test_CVE_2025_31133_masked_path_refuses_a_swapped_dev_null(ocirun, bundle, tmp_path, null):
    """runc bound the container's /dev/null over each masked path: a /dev/null the
    image made a symlink (to a host file, or to /proc/sys/kernel/core_pattern: an
    arbitrary mount gadget) was followed, a deleted one skipped the masking. The
    runtime must bind only a verified null device (char 1:3), else fail."""
    evil = _own_dev(bundle)
    victim = tmp_path / "host-file"
    victim.write_text("host secret\n")
    if null == "symlink-to-host-file":
        (evil / "null").symlink_to(victim)
    elif null == "symlink-to-core_pattern":
        (evil / "null").symlink_to("/proc/sys/kernel/core_pattern")
    elif null == "regular-file":
        (evil / "null").write_text("")
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    bundle.edit(lambda c: (c["linux"].update(maskedPaths=["/proc/timer_list"], devices=[]),
                           c["process"].update(args=["cat", "/proc/timer_list"], terminal=False)))
    cid = ocirun.new_id()
    p = ocirun("run", "--bundle", str(bundle.path), cid, check=False)
    message = one_message(p.stderr)
    assert p.returncode == 1, p.stdout
    if null == "missing":
        assert message == "mask /proc/timer_list: no such file or directory", message
    else:
        assert message == ("mask /proc/timer_list: refusing to bind /dev/null over it: /dev/null in the "
                           "container is not the null device (char 1:3)"), message
    assert b"host secret" not in p.stdout and victim.read_text() == "host secret\n"
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern
    assert not leftovers(ocirun, cid, bundle=bundle.path)


# --------------------------------------------------------------------------- CVE-2025-52565
@pytest.mark.parametrize("swap", ["dev-console-symlink", "dev-pts-ptmx-symlink", "dev-pts-not-devpts"])
def test_CVE_2025_52565_console_bind_never_targets_or_binds_a_swapped_path(ocirun, bundle, swap):
    """runc bound /dev/pts/$n over /dev/console before masking and read-only
    paths, trusting both paths: an image whose /dev/console (or /dev/pts) is a
    symlink to /proc/sys/kernel/core_pattern got a writable copy of it. The
    runtime must refuse a /dev/console symlink and a ptmx that is not its devpts's,
    and never leave core_pattern bound anywhere."""
    evil = _own_dev(bundle)
    if swap == "dev-console-symlink":
        (evil / "console").symlink_to("/proc/sys/kernel/core_pattern")
        bundle.edit(lambda c: c["mounts"].insert(2, {
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}))
        expected = "create /dev/console: /dev/console is a symlink; refusing to follow it"
    elif swap == "dev-pts-ptmx-symlink":
        (evil / "pts").mkdir()
        (evil / "pts" / "ptmx").symlink_to("/proc/sys/kernel/core_pattern")
        expected = "open /dev/pts/ptmx: not the ptmx of a devpts filesystem (mount devpts with newinstance at /dev/pts)"
    else:
        (evil / "pts").mkdir()
        (evil / "pts" / "ptmx").write_text("")
        (evil / "pts" / "0").symlink_to("/proc/sys/kernel/core_pattern")
        expected = "open /dev/pts/ptmx: not the ptmx of a devpts filesystem (mount devpts with newinstance at /dev/pts)"
    bundle.edit(lambda c: (c["process"].update(terminal=True, args=["sleep", "300"]),
                           c["linux"].update(devices=[], maskedPaths=[], readonlyPaths=["/proc/sys"])))
    sockdir = Path(tempfile.mkdtemp(prefix="occve-", dir="/tmp"))
    peer = ConsolePeer(sockdir / "c.sock")
    cid = ocirun.new_id()
    try:
        p = ocirun("create", "--bundle", str(bundle.path), "--console-socket", str(peer.path), cid, check=False)
    finally:
        peer.close()
        shutil.rmtree(sockdir, ignore_errors=True)
    assert p.returncode == 1, "created"
    assert one_message(p.stderr) == expected
    assert not leftovers(ocirun, cid, bundle=bundle.path)


# --------------------------------------------------------------------------- CVE-2025-52881
def test_CVE_2025_52881_sysctl_writes_are_not_redirected(ocirun, bundle, tmp_path):
    """runc wrote sysctls (and LSM labels) through the container's /proc, where a
    mount (a racing container's shared mount, or the config's) redirected them to
    another file. Here a bind over /proc/sys/net/ipv4 offers a fake ip_forward and
    a symlink to another procfs file: the real sysctl of the container's network
    namespace must be set and the fakes untouched."""
    fake = tmp_path / "fake-ipv4"
    fake.mkdir()
    (fake / "ip_forward").write_text("fake\n")
    (fake / "ip_default_ttl").symlink_to("/proc/sys/kernel/hostname")
    bundle.edit(lambda c: (
        c["mounts"].insert(1, {"destination": "/proc/sys/net/ipv4", "type": "bind", "source": str(fake),
                               "options": ["rbind"]}),
        c["linux"].update(sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.ip_default_ttl": "77"},
                          readonlyPaths=[], maskedPaths=[])))
    cid, pid = _running(ocirun, bundle)
    assert (fake / "ip_forward").read_text() == "fake\n"
    real = subprocess.run(["nsenter", "-t", str(pid), "-n", "sh", "-c",
                           "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_default_ttl"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert real == ["1", "77"]
    host = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert host == bundle.config()["hostname"]


def test_CVE_2025_52881_masks_and_read_only_paths_are_not_redirected_through_proc_self_fd(ocirun, bundle,
                                                                                         tmp_path):
    """After pivot_root the runtime reaches its own fds through /proc/self/fd/N to
    bind /dev/null over masked paths, make paths read-only and reopen the exec fifo.
    A config mount over /proc/1/fd (the init is pid 1) turns those into paths of
    the attacker's choice. Masked and read-only paths must be exactly those of the
    config, and the exec fifo the runtime's."""
    fake = tmp_path / "fake-fd"
    fake.mkdir()
    fifo = bundle.rootfs / "tmp" / "fifo"
    os.mkfifo(fifo)
    for n in range(64):
        (fake / str(n)).symlink_to("/tmp/fifo")
    bundle.edit(lambda c: (
        c["mounts"].insert(1, {"destination": "/proc/1/fd", "type": "bind", "source": str(fake),
                               "options": ["rbind"]}),
        c["linux"].update(maskedPaths=["/proc/timer_list", "/proc/keys"], readonlyPaths=["/proc/acpi"])))
    bundle.set_args("sleep", "300")
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    if p.returncode != 0:  # refusing such a /proc is a defence too
        assert not leftovers(ocirun, cid, bundle=bundle.path)
        return
    pid = ocirun.state(cid)["pid"]
    points = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        f = line.split()
        points.setdefault(f[4], []).append(f)
    assert "/tmp/fifo" not in points, "a mount meant for a masked or read-only path landed on /tmp/fifo"
    assert "/proc/timer_list" in points and "/proc/keys" in points, "masked paths not masked"
    assert os.statvfs(f"/proc/{pid}/root/proc/acpi").f_flag & os.ST_RDONLY, "/proc/acpi is not read-only"
    ocirun("start", cid)
    assert wait_until(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"), timeout=10)


# --------------------------------------------------------------------------- CVE-2021-30465
_EXCHANGER = textwrap.dedent("""\
    import ctypes, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    a, b, until = sys.argv[1].encode(), sys.argv[2].encode(), time.monotonic() + float(sys.argv[3])
    while time.monotonic() < until:
        libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
    """)


def test_CVE_2021_30465_mount_targets_do_not_follow_a_swapped_symlink(ocirun, bundle, tmp_path):
    """runc resolved a mount destination in userspace, then mounted on the path:
    a container sharing a volume swapped a directory of it for a symlink in
    between (renameat2 RENAME_EXCHANGE) and the mount landed outside the rootfs.
    Here a host process swaps rootfs/race with a symlink to a host directory
    (the decoy) while `create` mounts twenty tmpfs below /race; the decoy is bound
    into the container afterwards, so a mount that landed on it would show there.
    Every mount must be inside the rootfs, the decoy untouched."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("libc has no renameat2")
    decoy = tmp_path / "decoy"
    race, link = bundle.rootfs / "race", bundle.rootfs / "race-link"
    for d in (decoy, race):
        for i in range(20):
            (d / f"m{i}").mkdir(parents=True)
    link.symlink_to(decoy)
    bundle.set_args("sleep", "300")
    bundle.edit(lambda c: c["mounts"].extend(
        [{"destination": f"/race/m{i}", "type": "tmpfs", "source": "tmpfs", "options": ["size=16k"]}
         for i in range(20)]
        + [{"destination": "/seen", "type": "bind", "source": str(decoy), "options": ["rbind"]}]))
    escaped, created = [], 0
    for _ in range(scale(6, 60)):
        swapper = subprocess.Popen([sys.executable, "-c", _EXCHANGER, str(race), str(link), "30"])
        cid = ocirun.new_id()
        try:
            time.sleep(0.05)
            p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
        finally:
            swapper.kill()
            swapper.wait()
        if not race.is_dir() or race.is_symlink():  # put the directory back in place
            libc.renameat2(-100, str(race).encode(), -100, str(link).encode(), 2)
        if p.returncode == 0:
            created += 1
            pid = ocirun.state(cid)["pid"]
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
                point = line.split()[4]
                if point.startswith("/seen/"):
                    escaped.append(point)
        else:
            one_message(p.stderr)
        ocirun("delete", "--force", cid)
        with open("/proc/self/mountinfo") as f:
            assert str(decoy) not in f.read()
        assert sorted(os.listdir(decoy)) == sorted(f"m{i}" for i in range(20))
    assert not escaped, f"mounts landed on the decoy outside the rootfs: {escaped}"
    assert created > 0, "no create succeeded: the race never let one through"


# --------------------------------------------------------------------------- CVE-2022-29162
def _file_caps_inheritable(path: Path, cap: int) -> None:
    """security.capability (VFS_CAP_REVISION_2): permitted none, inheritable ``cap``, effective."""
    lo, hi = (1 << cap, 0) if cap < 32 else (0, 1 << (cap - 32))
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000000 | 1, 0, lo, 0, hi))


CAP_NET_RAW = 13


def test_CVE_2022_29162_exec_does_not_grant_inheritable_capabilities(ocirun, bundle):
    """runc exec gave the process inheritable capabilities (the container's whole
    set), so a program with inheritable file capabilities gained them in its
    permitted set even as a non-root user. Here the container's inheritable set is
    empty and a busybox in it carries cap_net_raw+ei: run by `exec` as uid 1000
    (with and without --cap CAP_NET_RAW) it must not get CAP_NET_RAW. A positive
    control (the same with CAP_NET_RAW inheritable in the config) shows the file
    capability works here."""
    capbb = bundle.rootfs / "capdir" / "cat"  # busybox runs the applet its name says
    capbb.parent.mkdir()
    shutil.copy2(bundle.rootfs / "bin" / "busybox", capbb)
    try:
        _file_caps_inheritable(capbb, CAP_NET_RAW)
    except OSError as e:
        pytest.skip(f"cannot set file capabilities here: {e}")
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]

    def configure(inheritable):
        bundle.edit(lambda c: c["process"].update(noNewPrivileges=False, capabilities={
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": inheritable}))

    def exec_status(cid, *extra):
        p = _exec(ocirun, cid, "/capdir/cat", "/proc/self/status", opts=("--user", "1000:1000", *extra))
        assert p.returncode == 0, p.stderr
        text = p.stdout.decode()
        return {k: int(_status_field(text, k), 16) for k in ("CapInh", "CapPrm", "CapEff")}

    configure(caps)  # the control
    cid, _ = _running(ocirun, bundle)
    control = exec_status(cid)
    ocirun("delete", "--force", cid)
    if not control["CapPrm"] & (1 << CAP_NET_RAW):
        pytest.skip(f"file capabilities are not honoured here (control: {control})")

    configure([])
    cid, _ = _running(ocirun, bundle)
    for extra in ((), ("--cap", "CAP_NET_RAW")):
        got = exec_status(cid, *extra)
        assert got["CapInh"] == 0, (extra, got)
        assert not got["CapPrm"] & (1 << CAP_NET_RAW) and not got["CapEff"] & (1 << CAP_NET_RAW), (extra, got)


# --------------------------------------------------------------------------- CVE-2016-9962
_SNOOP = textwrap.dedent("""\
    for d in /proc/[0-9]*; do
      [ "${d#/proc/}" = "$$" ] && continue
      case "$(tr '\\0' ' ' <$d/cmdline 2>/dev/null)" in *"-m oc"irun*|*"ocirun-dir"ect*)
        echo "pid ${d#/proc/}"
        ok=; for f in $d/fd/*; do readlink $f >/dev/null 2>&1 && ok=1; done
        [ -n "$ok" ] && echo "fd: readable" || echo "fd: denied"
        readlink $d/exe >/dev/null 2>&1 && echo "exe: readable" || echo "exe: denied"
        cat $d/environ >/dev/null 2>&1 && echo "environ: readable" || echo "environ: denied"
        dd if=$d/mem bs=1 count=1 >/dev/null 2>&1 && echo "mem: readable" || echo "mem: denied"
        head -c1 $d/root/ >/dev/null 2>&1; ls $d/root/ >/dev/null 2>&1 && echo "root: readable" || echo "root: denied"
        ;;
      esac
    done
    """)


def test_CVE_2016_9962_joining_process_cannot_be_inspected_from_the_container(ocirun, bundle):
    """runc's init was dumpable while it joined the container: a container process
    could ptrace it (or read /proc/PID/fd, mem, exe, environ) and reach the fds and
    memory it brought from the host. Here `exec` is stopped (SIGSTOP, the test
    hook) once its process is inside the container's pid namespace, before it
    execs; a container process as root without CAP_SYS_PTRACE tries every way in."""
    cid, _ = _running(ocirun, bundle)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_TEST_")}
    stopped = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "exec", cid, "sleep", "1"],
                               env=dict(env, OCIRUN_TEST_STOP_AT="exec:EXEC_PID"), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def is_stopped() -> bool:
            try:
                s = Path(f"/proc/{stopped.pid}/stat").read_text()
            except OSError:
                return False
            return s[s.rfind(")") + 2] == "T"

        assert wait_until(is_stopped, timeout=30)
        p = _exec(ocirun, cid, "sh", "-c", _SNOOP, env=env)
        assert p.returncode == 0, p.stderr
        report = p.stdout.decode()
        assert "pid " in report, "the joining process is not visible in the container"
        assert "readable" not in report, report
        assert report.count("denied") >= 5
    finally:
        stopped.send_signal(signal.SIGCONT)
        stopped.wait(timeout=30)
    assert stopped.returncode == 0
