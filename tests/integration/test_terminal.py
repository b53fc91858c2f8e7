"""process.terminal: the pty made in the container's devpts, the console socket,
the foreground proxy of `run`, the flag errors, and symlinks planted where the
pty and /dev/console are made. runc (Debian's 1.1.5) is the oracle where it
is meaningful."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shutil
import signal
import stat
import struct
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest
from conftest import OCIRUN, Bundle, reap_orphans
from pty_peer import ConsolePeer, read_until

HAVE_RUNC = shutil.which("runc") is not None
needs_runc = pytest.mark.skipif(not HAVE_RUNC, reason="runc is not installed")
TIMEOUT = 30.0


# ------------------------------------------------------------ the test's peer


def read_until_eio(master: int, timeout: float = TIMEOUT) -> bytes:
    """Everything the pty gives until its slave side is closed by all (EIO)."""
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:
                return out
            raise
        if not data:
            return out
        out += data
    raise AssertionError(f"the pty stayed open; got so far: {out!r}")


def terminal_bundle(bundle: Bundle, *args: str, size: tuple[int, int] | None = None) -> None:
    def f(c):
        c["process"]["args"] = list(args) or ["/bin/sh"]
        c["process"]["terminal"] = True
        if size is not None:
            c["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
    bundle.edit(f)


def lines(output: bytes) -> list[str]:
    return output.decode(errors="replace").replace("\r", "").splitlines()


class Session:
    """create --console-socket, start, drive the shell through the master, wait."""

    def __init__(self, runtime: list[str], bundle: Bundle, cid: str, sock_path: Path):
        self.runtime, self.bundle, self.cid, self.sock_path = runtime, bundle, cid, sock_path

    def run(self, script: bytes) -> tuple[bytes, bytes, int]:
        peer = ConsolePeer(self.sock_path)
        master = -1
        try:
            self._cli("create", "--bundle", str(self.bundle.path), "--console-socket",
                      str(self.sock_path), self.cid)
            name, master = peer.receive()
            st = os.fstat(master)
            assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 5 and os.minor(st.st_rdev) == 2, \
                "the fd received is not a pty master (ptmx)"
            pid = int(self._cli("state", self.cid).split(b'"pid": ')[1].split(b",")[0])
            self._cli("start", self.cid)
            os.write(master, script)
            out = read_until_eio(master)
            # the init is our child (we are a subreaper): its exit status is ours to read
            _, wstatus = os.waitpid(pid, 0)
            assert b'"status": "stopped"' in self._cli("state", self.cid)
            return name, out, os.waitstatus_to_exitcode(wstatus)
        finally:
            if master >= 0:
                os.close(master)
            peer.close()
            self._cli("delete", "--force", self.cid, check=False)

    def _cli(self, *args: str, check: bool = True) -> bytes:
        p = subprocess.run([*self.runtime, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60)
        if check:
            assert p.returncode == 0, (args, p.stderr.decode())
        return p.stdout


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (sun_path holds 108 bytes; pytest's
    tmp_path of a parametrized test can be longer)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="octty-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def ocirun_cmd(ocirun) -> list[str]:
    return [*OCIRUN, "--root", str(ocirun.root)]


def runc_cmd(tmp_path: Path) -> list[str]:
    return ["runc", "--root", str(tmp_path / "runc-root")]


SCRIPT = b"echo hi; tty; exit 3\n"


def test_console_socket_peer_drives_a_shell(ocirun, bundle, sockdir):
    terminal_bundle(bundle)
    name, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(SCRIPT)
    assert name == b"/dev/ptmx"  # what runc's SendFile sends as the data
    got = lines(out)
    assert "hi" in got
    assert "/dev/pts/0" in got  # the shell's stdin is the pty's slave, first of its devpts
    assert status == 3


@needs_runc
def test_console_socket_session_matches_runc(ocirun, bundle, tmp_path, sockdir):
    terminal_bundle(bundle, size=(33, 77))
    script = (b"tty; stty size; ls -l /dev/console | awk '{print $1, $3, $4, $5, $6}';"
              b" readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2;"
              b" ls -l /dev/ptmx | awk '{print $1, $NF}'; exit 7\n")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    ours_name, ours, ours_status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(),
                                           sockdir / "o.sock").run(script)
    runc_name, ref, ref_status = Session(runc_cmd(tmp_path), theirs, f"runc-{uuid.uuid4().hex[:8]}",
                                         sockdir / "r.sock").run(script)
    assert ours_name == runc_name
    assert ours_status == ref_status == 7

    def answers(out: bytes) -> list[str]:
        got = lines(out)
        # what follows the echoed command line, minus the banner and prompts
        i = max(n for n, line in enumerate(got) if "exit 7" in line)
        return [line for line in got[i + 1:] if line and not line.startswith("/ #")]

    assert answers(ours) == answers(ref)
    assert answers(ours)[:2] == ["/dev/pts/0", "33 77"]
    # /dev/console is the pty itself (char 136:0), as in runc
    assert answers(ours)[2].startswith("crw--w---- root 5 136, 0")


def test_console_size_is_applied(ocirun, bundle, sockdir):
    terminal_bundle(bundle, "/bin/sh", "-c", "stty size", size=(12, 34))
    _, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(b"")
    assert status == 0
    assert "12 34" in lines(out)


def test_dev_console_is_the_pty(ocirun, bundle, sockdir):
    terminal_bundle(bundle, "/bin/sh", "-c",
                    "stat -L -c '%t:%T %F' /dev/console /proc/self/fd/0; readlink /proc/self/fd/0;"
                    " ls -l /dev/console; grep ' /dev/console ' /proc/self/mountinfo | wc -l")
    _, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(b"")
    assert status == 0
    got = lines(out)
    assert got[0] == got[1] == "88:0 character special file"  # 136:0 in hex
    assert got[2] == "/dev/pts/0"
    assert got[3].startswith("crw--w----")  # the pty's own mode (devpts mode=0620)
    assert got[4] == "1"  # one bind mount over /dev/console


def test_no_master_reaches_the_container(ocirun, bundle, sockdir):
    """The init closes its copy of the master after sending it: only the slave is open."""
    terminal_bundle(bundle, "/bin/sh", "-c", "for f in 0 1 2; do readlink /proc/1/fd/$f; done;"
                    " ls -l /proc/1/fd/ 2>/dev/null | grep -c ptmx")
    # ls's stderr is dropped: the pipe sh (pid 1) makes for the pipeline shows as fds 3
    # and 4 while ls lists the directory, and is gone when ls reads the links
    _, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(b"")
    got = lines(out)
    assert got == ["/dev/pts/0"] * 3 + ["0"], got
    assert status == 1  # grep -c found nothing


def test_terminal_in_a_user_namespace(ocirun, bundle, sockdir):
    terminal_bundle(bundle, "/bin/sh", "-c", "id -u; tty; stat -c %u /proc/self/fd/0; stty size",
                    size=(21, 42))
    bundle.add_user_namespace()
    _, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(b"")
    assert status == 0
    assert lines(out)[:4] == ["0", "/dev/pts/0", "0", "21 42"]


def test_run_detached_sends_the_master_to_the_socket(ocirun, bundle, sockdir):
    terminal_bundle(bundle)
    cid = ocirun.new_id()
    peer = ConsolePeer(sockdir / "c.sock")
    master = -1
    try:
        ocirun("run", "-d", "--bundle", str(bundle.path), "--console-socket", str(peer.path), cid)
        name, master = peer.receive()
        assert name == b"/dev/ptmx"
        st = ocirun.state(cid)
        assert st["status"] == "running"
        os.write(master, b"echo hi-$((40+2)); exit 9\n")
        assert "hi-42" in lines(read_until_eio(master))
        _, wstatus = os.waitpid(st["pid"], 0)
        assert os.waitstatus_to_exitcode(wstatus) == 9
    finally:
        if master >= 0:
            os.close(master)
        peer.close()


def test_terminal_for_a_non_root_user(ocirun, bundle, sockdir):
    """The user owns their terminal (runc's fixStdioPermissions)."""
    terminal_bundle(bundle, "/bin/sh", "-c", "id -u; stat -c %u /proc/self/fd/0; echo ok > /dev/tty")
    bundle.edit(lambda c: c["process"]["user"].update({"uid": 1000, "gid": 1000}))
    _, out, status = Session(ocirun_cmd(ocirun), bundle, ocirun.new_id(), sockdir / "c.sock").run(b"")
    assert status == 0
    assert lines(out)[:3] == ["1000", "1000", "ok"]


# ------------------------------------------------------- run in the foreground


def _winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _size_seen(master: int, want: str, timeout: float = 10) -> bool:
    """Whether the container's shell sees the size ``want`` ("rows cols") within
    ``timeout``: SIGWINCH reaches the runtime asynchronously (through the front end
    and its worker on the helper path), so a command typed at once may run first."""
    end = time.monotonic() + timeout
    for n in range(100, 10000):
        os.write(master, f"stty size; echo SIZE-$(({n}+1))\n".encode())
        if want in lines(read_until(master, f"SIZE-{n + 1}\r\n".encode())):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return False


def test_run_in_the_foreground_proxies_the_terminal(ocirun, bundle):
    """`run` with a terminal and no socket: our stdin in raw mode, both ways
    copied, SIGWINCH passed on as a resize, the terminal restored, the exit status."""
    terminal_bundle(bundle, size=(5, 5))
    master, slave = os.openpty()
    _winsize(master, 40, 100)
    before = termios.tcgetattr(slave)
    cid = ocirun.new_id()
    proc = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "run", "--bundle", str(bundle.path), cid],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        read_until(master, b"# ")
        during = termios.tcgetattr(slave)
        assert not during[3] & (termios.ICANON | termios.ECHO), "our terminal is not in raw mode"
        os.write(master, b"stty size; tty; echo MARK-$((1+1))\n")
        out = lines(read_until(master, b"MARK-2\r\n"))
        assert "40 100" in out  # our terminal's size beats consoleSize, as in runc
        assert "/dev/pts/0" in out
        _winsize(master, 20, 60)
        proc.send_signal(signal.SIGWINCH)  # what the kernel sends a session with this ctty
        assert _size_seen(master, "20 60")
        os.write(master, b"exit 5\n")
        assert proc.wait(timeout=TIMEOUT) == 5
        assert termios.tcgetattr(slave) == before, "the terminal was not restored"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert ocirun("list", "-q").stdout.strip() == b""  # run deletes the container


def test_run_in_the_foreground_without_any_terminal_is_runcs_error(ocirun, bundle, tmp_path):
    """No terminal on stdio and no controlling terminal: nothing to proxy to."""
    terminal_bundle(bundle, "/bin/sh", "-c", "exit 4")
    expected = "open /dev/tty: no such device or address"

    def run(cmd):
        return subprocess.run([*cmd, "run", "--bundle", str(bundle.path), f"t-{uuid.uuid4().hex[:8]}"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                              start_new_session=True)

    p = run(ocirun_cmd(ocirun))
    assert p.returncode == 1
    assert p.stderr.decode() == expected + "\n"
    assert ocirun("list", "-q").stdout.strip() == b""
    if HAVE_RUNC:
        r = run(runc_cmd(tmp_path))
        reap_orphans()
        assert r.returncode == 1 and expected in r.stderr.decode()


def test_run_in_the_foreground_with_only_stdout_a_terminal(ocirun, bundle):
    """stdin from a file, stdout a terminal: the terminal sets the size, input is copied."""
    terminal_bundle(bundle, "/bin/sh")
    master, slave = os.openpty()
    _winsize(master, 30, 90)
    script = bundle.path / "input"
    script.write_bytes(b"stty size; exit 6\n")
    try:
        with open(script, "rb") as stdin:
            proc = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "run", "--bundle", str(bundle.path),
                                     ocirun.new_id()], stdin=stdin, stdout=slave, stderr=slave,
                                    start_new_session=True)
            out = read_until(master, b"30 90")
            assert proc.wait(timeout=TIMEOUT) == 6, out
    finally:
        os.close(master)
        os.close(slave)


# ------------------------------------------------------------------- errors

ERR_TTY = "cannot allocate tty if runc will detach without setting console socket"
ERR_SOCK = "cannot use console socket if runc will not detach or allocate tty"


@pytest.mark.parametrize("verb,terminal,with_socket,expected", [
    (("create",), True, False, ERR_TTY),
    (("run", "--detach"), True, False, ERR_TTY),
    (("create",), False, True, ERR_SOCK),
    (("run", "--detach"), False, True, ERR_SOCK),
    (("run",), True, True, ERR_SOCK),  # a foreground run proxies: no socket
    (("run",), False, True, ERR_SOCK),
])
def test_terminal_flag_errors_as_runc(ocirun, bundle, tmp_path, sockdir, verb, terminal, with_socket, expected):
    bundle.edit(lambda c: c["process"].update({"terminal": terminal}))
    peer = ConsolePeer(sockdir / "c.sock")
    sock = ("--console-socket", str(peer.path)) if with_socket else ()
    try:
        p = ocirun(*verb, "--bundle", str(bundle.path), *sock, ocirun.new_id(), check=False)
        assert p.returncode == 1
        assert p.stderr.decode() == expected + "\n"
        assert ocirun("list", "-q").stdout.strip() == b""
        if HAVE_RUNC:
            r = subprocess.run([*runc_cmd(tmp_path), *verb, "--bundle", str(bundle.path), *sock,
                                f"runc-{uuid.uuid4().hex[:8]}"], capture_output=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            reap_orphans()
            assert r.returncode == 1
            assert expected in r.stderr.decode()
    finally:
        peer.close()


def test_console_socket_that_does_not_exist(ocirun, bundle, tmp_path, sockdir):
    terminal_bundle(bundle)
    path = sockdir / "missing.sock"
    p = ocirun("create", "--bundle", str(bundle.path), "--console-socket", str(path),
               ocirun.new_id(), check=False)
    assert p.returncode == 1
    expected = f"dial unix {path}: connect: no such file or directory"
    assert p.stderr.decode() == expected + "\n"
    assert ocirun("list", "-q").stdout.strip() == b""
    if HAVE_RUNC:
        r = subprocess.run([*runc_cmd(tmp_path), "create", "--bundle", str(bundle.path),
                            "--console-socket", str(path), "runc-x"], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and expected in r.stderr.decode()


# ----------------------------------------------------- symlinks in the rootfs


def _own_dev(bundle: Bundle, devpts: bool) -> Path:
    """/dev of the container is a directory of the rootfs (bound), not a fresh
    tmpfs: what the image put there is what the runtime finds."""
    evil = bundle.rootfs / "evil-dev"
    evil.mkdir()

    def f(c):
        mounts = [m for m in c["mounts"] if m["destination"] != "/dev"
                  and (devpts or m["destination"] != "/dev/pts")]
        mounts.insert(0, {"destination": "/dev", "type": "bind", "source": str(evil),
                          "options": ["rbind", "nosuid"]})
        c["mounts"] = mounts
    bundle.edit(f)
    return evil


def _create_fails(ocirun, bundle, sockdir) -> str:
    peer = ConsolePeer(sockdir / "c.sock")
    try:
        p = ocirun("create", "--bundle", str(bundle.path), "--console-socket", str(peer.path),
                   ocirun.new_id(), check=False)
    finally:
        peer.close()
    assert p.returncode == 1, p.stdout
    assert ocirun("list", "-q").stdout.strip() == b""
    return p.stderr.decode()


def test_symlink_at_dev_console_is_not_followed(ocirun, bundle, tmp_path, sockdir):
    terminal_bundle(bundle)
    evil = _own_dev(bundle, devpts=True)
    target = tmp_path / "host-file"
    target.write_text("host\n")
    (evil / "console").symlink_to(target)
    err = _create_fails(ocirun, bundle, sockdir)
    assert err.startswith("create /dev/console: ") and "symlink" in err, err
    assert target.read_text() == "host\n"
    with open("/proc/self/mountinfo") as mi:
        assert str(target) not in mi.read()  # nothing was mounted over the host file


def test_symlink_at_dev_pts_ptmx_is_resolved_inside_the_container(ocirun, bundle, sockdir):
    terminal_bundle(bundle)
    evil = _own_dev(bundle, devpts=False)
    (evil / "pts").mkdir()
    # a host ptmx, if it were followed out of the root
    (evil / "pts" / "ptmx").symlink_to("/dev/pts/../../dev/ptmx")
    (evil / "ptmx").unlink(missing_ok=True)
    err = _create_fails(ocirun, bundle, sockdir)
    # inside the root: rootfs/evil-dev/ptmx is the runtime's "pts/ptmx" link, a loop; never the host's
    assert err.startswith("open /dev/pts/ptmx: "), err


def test_host_ptmx_node_in_the_rootfs_is_refused(ocirun, bundle, sockdir):
    """A copy of the host's ptmx (char 5:2) would give a pty of the host's devpts."""
    terminal_bundle(bundle)
    evil = _own_dev(bundle, devpts=False)
    (evil / "pts").mkdir()
    os.mknod(evil / "pts" / "ptmx", 0o666 | stat.S_IFCHR, os.makedev(5, 2))
    err = _create_fails(ocirun, bundle, sockdir)
    assert err.startswith("open /dev/pts/ptmx: ") and "not the ptmx of a devpts" in err, err


# -------------------------------------------------------------------- exec -t


def _running(ocirun, bundle) -> str:
    bundle.set_args("sleep", "300")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    return cid


def test_exec_tty_detached_sends_the_master_to_the_socket(ocirun, bundle, sockdir, tmp_path):
    cid = _running(ocirun, bundle)
    peer = ConsolePeer(sockdir / "c.sock")
    master = -1
    pid_file = tmp_path / "exec.pid"
    try:
        ocirun("exec", "-t", "-d", "--console-socket", str(peer.path), "--pid-file", str(pid_file),
               cid, "sh")
        name, master = peer.receive()
        assert name == b"/dev/ptmx"
        os.write(master, b"tty; readlink /proc/self/fd/0; ls /proc/1/fd | wc -l; exit 8\n")
        got = lines(read_until_eio(master))
        # the pty comes from the container's devpts; the init has none
        assert "/dev/pts/0" in got
        _, wstatus = os.waitpid(int(pid_file.read_text()), 0)
        assert os.waitstatus_to_exitcode(wstatus) == 8
    finally:
        if master >= 0:
            os.close(master)
        peer.close()


def test_exec_tty_in_the_foreground_proxies_the_terminal(ocirun, bundle):
    cid = _running(ocirun, bundle)
    master, slave = os.openpty()
    _winsize(master, 33, 99)
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "exec", "-t", cid, "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    try:
        read_until(master, b"# ")
        os.write(master, b"stty size; tty; echo MARK-$((1+1))\n")
        out = lines(read_until(master, b"MARK-2\r\n"))
        assert "33 99" in out and "/dev/pts/0" in out
        _winsize(master, 22, 44)
        proc.send_signal(signal.SIGWINCH)
        assert _size_seen(master, "22 44")
        os.write(master, b"exit 6\n")
        assert proc.wait(timeout=TIMEOUT) == 6
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert ocirun.state(cid)["status"] == "running"  # the container goes on


@pytest.mark.parametrize("flags,expected", [
    (("-t", "-d"), ERR_TTY),
    (("--console-socket", "SOCK"), ERR_SOCK),
    (("-d", "--console-socket", "SOCK"), ERR_SOCK),
    (("-t", "--console-socket", "SOCK"), ERR_SOCK),
])
def test_exec_terminal_flag_errors_as_runc(ocirun, bundle, sockdir, tmp_path, flags, expected):
    peer = ConsolePeer(sockdir / "c.sock")
    flags = tuple(str(peer.path) if f == "SOCK" else f for f in flags)
    try:
        cid = _running(ocirun, bundle)
        p = ocirun("exec", *flags, cid, "true", check=False)
        assert p.returncode == 255  # runc: fatalWithCode(..., 255)
        assert p.stderr.decode() == f"exec failed: {expected}\n"
        if HAVE_RUNC:
            theirs = bundle.copy(tmp_path / "runc-bundle")
            rid = f"runc-{uuid.uuid4().hex[:8]}"
            run = [*runc_cmd(tmp_path)]
            try:
                # not pipes: the init inherits them and would keep them open
                subprocess.run([*run, "run", "-d", "--bundle", str(theirs.path), rid], check=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
                r = subprocess.run([*run, "exec", *flags, rid, "true"], capture_output=True, timeout=60,
                                   stdin=subprocess.DEVNULL)
                assert r.returncode == 255
                assert f"exec failed: {expected}" in r.stderr.decode()
            finally:
                subprocess.run([*run, "delete", "-f", rid], capture_output=True, timeout=60)
                reap_orphans()
    finally:
        peer.close()
