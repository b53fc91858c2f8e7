"""Bad input, given to the real CLI: one clear message naming what is wrong, exit
status 1 (255 for exec, as runc), and nothing left behind (the conftest's leak
check). Where runc refuses the same input it is run too, as the oracle of the
verdict (not of the wording, which names the JSON path in ocirun)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


def _refused(p: subprocess.CompletedProcess, *texts: str, status: int = 1) -> str:
    """The one error line of a refused command, checked for ``texts``."""
    err = p.stderr.decode()
    assert p.returncode == status, (p.returncode, err)
    assert "internal error" not in err and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def _runc(tmp_path, *args: str, cwd=None) -> subprocess.CompletedProcess:
    # Files, not pipes: a detached init inherits them and would hold a pipe open.
    import tempfile

    root = tmp_path / "runc-root"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(["runc", "--root", str(root), *args], stdout=out, stderr=err,
                           stdin=subprocess.DEVNULL, timeout=60, cwd=cwd)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    return p


def _runc_run(tmp_path, bundle) -> subprocess.CompletedProcess:
    cid = f"runc-{uuid.uuid4().hex[:8]}"
    try:
        return _runc(tmp_path, "run", "--bundle", str(bundle.path), cid)
    finally:
        _runc(tmp_path, "delete", "--force", cid)


# --------------------------------------------------------------------------- #11 item 3: ids


@pytest.mark.parametrize("where, value", [
    ("uid", 4294967295),  # (uid_t)-1: setresuid would leave the process root
    ("uid", 2147483648),
    ("gid", 4294967295),
    ("additionalGids", 4294967295),
])
@needs_runc
def test_ids_above_runcs_range_are_refused(ocirun, bundle, tmp_path, where, value):
    bundle.set_args("id")

    def edit(c):
        user = c["process"]["user"]
        if where == "additionalGids":
            user[where] = [value]
        else:
            user[where] = value

    bundle.edit(edit)
    theirs = bundle.copy(tmp_path / "runc-bundle")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    path = "$.process.user." + (f"{where}[0]" if where == "additionalGids" else where)
    _refused(p, path, "uids and gids must be in range 0-2147483647")
    assert p.stdout == b""  # the container never ran (it would have printed uid=0)
    r = _runc_run(tmp_path, theirs)
    assert r.returncode == 1 and b"uids and gids must be in range 0-2147483647" in r.stderr


def test_device_owner_above_the_range_is_refused(ocirun, bundle):
    bundle.edit(lambda c: c["linux"].__setitem__("devices", [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "uid": 4294967295, "gid": 0}]))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    _refused(p, "$.linux.devices[0].uid", "must be in range 0-2147483647")


def test_mount_uid_option_above_the_range_is_refused(ocirun, bundle):
    bundle.edit(lambda c: c["mounts"].append(
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["uid=2147483648"]}))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    _refused(p, "$.mounts[", ".options[0]", "'uid=2147483648'")


def test_overlapping_id_mappings_are_refused_before_anything_exists(ocirun, bundle):
    bundle.add_user_namespace()
    bundle.edit(lambda c: c["linux"]["uidMappings"].append(
        {"containerID": 100, "hostID": 300000, "size": 10}))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    _refused(p, "$.linux.uidMappings[1]", "container ids 100-109 overlap those of [0]")


@needs_runc
def test_exec_user_above_the_range_is_refused_as_runc_does(ocirun, bundle, tmp_path):
    bundle.set_args("sleep", "1000")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    assert _runc(tmp_path, "run", "-d", "--bundle", str(theirs.path), rid).returncode == 0
    try:
        for flags, path in ((["--user", "4294967295"], "$.process.user.uid"),
                            (["--user", "0:2147483648"], "$.process.user.gid"),
                            (["--additional-gids", "4294967295"], "$.process.user.additionalGids[0]")):
            p = ocirun("exec", *flags, cid, "id", check=False)
            _refused(p, "exec failed: ", path, "uids and gids must be in range", status=255)
            assert p.stdout == b""
            r = _runc(tmp_path, "exec", *flags, rid, "id")
            assert r.returncode == 255 and b"uids and gids must be in range 0-2147483647" in r.stderr
        proc = tmp_path / "p.json"
        proc.write_text(json.dumps({"args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 4294967295}}))
        p = ocirun("exec", "--process", str(proc), cid, check=False)
        _refused(p, "$.process.user.gid", status=255)
    finally:
        _runc(tmp_path, "delete", "--force", rid)


# --------------------------------------------------------------------------- #11 item 4: rootfs symlinks


@pytest.mark.parametrize("how", ["rootfs-to-host-root", "rootfs-to-dir", "component", "absolute-through-link"])
@needs_runc
def test_rootfs_through_a_symlink_is_refused_as_runc_does(ocirun, bundle, tmp_path, how):
    marker = f"ocirun-test-{uuid.uuid4().hex[:8]}"
    # were the link followed to the host's /, this would create /<marker> on the host
    bundle.set_args("touch", f"/{marker}")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    for b in (bundle, theirs):
        if how == "rootfs-to-host-root":
            b.edit(lambda c: c["root"].__setitem__("path", "hostroot"))
            (b.path / "hostroot").symlink_to("/")
        elif how == "rootfs-to-dir":
            (b.path / "rootfs").rename(b.path / "real")
            (b.path / "rootfs").symlink_to("real")
        elif how == "component":
            (b.path / "d").mkdir()
            (b.path / "rootfs").rename(b.path / "d" / "rootfs")
            (b.path / "via").symlink_to("d")
            b.edit(lambda c: c["root"].__setitem__("path", "via/rootfs"))
        else:
            (b.path / "link").symlink_to(b.path)
            b.edit(lambda c, b=b: c["root"].__setitem__("path", f"{b.path}/link/rootfs"))
    try:
        p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
        _refused(p, "$.root.path: invalid rootfs: not an absolute path, or a symlink")
        r = _runc_run(tmp_path, theirs)
        assert r.returncode == 1 and b"invalid rootfs: not an absolute path, or a symlink" in r.stderr
    finally:
        import os

        assert not os.path.exists(f"/{marker}")


@needs_runc
def test_bundle_reached_through_a_symlink_runs_and_is_recorded_resolved(ocirun, bundle, tmp_path):
    """As `runc create --bundle LINK`: the state's bundle is the real directory."""
    bundle.set_args("sleep", "30")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    (tmp_path / "ours-link").symlink_to(bundle.path)
    (tmp_path / "theirs-link").symlink_to(theirs.path)
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(tmp_path / "ours-link"), cid)
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    try:
        assert _runc(tmp_path, "create", "--bundle", str(tmp_path / "theirs-link"), rid).returncode == 0
        runc_state = json.loads(_runc(tmp_path, "state", rid).stdout)
    finally:
        _runc(tmp_path, "delete", "--force", rid)
    state = ocirun.state(cid)
    assert runc_state["bundle"] == str(theirs.path)
    assert state["bundle"] == str(bundle.path)
    ocirun("delete", "--force", cid)


# --------------------------------------------------------------------------- #11 item 5: mounts on "/"


@pytest.mark.parametrize("dest", ["/", "/..", ".", "//", "/proc/.."])
def test_mount_on_the_root_is_refused(ocirun, bundle, dest):
    bundle.set_args("touch", "/written-by-the-container")
    bundle.edit(lambda c: c["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs"}))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    index = len(bundle.config()["mounts"]) - 1
    _refused(p, f"$.mounts[{index}].destination: {dest!r} is the container's root directory")
    assert not (bundle.rootfs / "written-by-the-container").exists()


@pytest.mark.parametrize("link", ["/", "..", "/proc/.."])
def test_mount_on_a_symlink_to_the_root_is_refused(ocirun, bundle, link):
    """The validator cannot see the rootfs's symlinks: the shim refuses a mount point that
    resolves to the root itself."""
    bundle.set_args("touch", "/written-by-the-container")
    (bundle.rootfs / "up").symlink_to(link)
    bundle.edit(lambda c: c["mounts"].append({"destination": "/up", "type": "tmpfs", "source": "tmpfs"}))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    index = len(bundle.config()["mounts"]) - 1
    _refused(p, "mount tmpfs to /up: create mount point /up:",
             f"$.mounts[{index}].destination '/up' resolves to the container's root directory")
    assert not (bundle.rootfs / "written-by-the-container").exists()


def test_a_mount_on_a_bind_of_the_rootfs_is_not_the_root(ocirun, bundle):
    """The same directory as the root, but another mount: allowed (the check compares mounts)."""
    bundle.set_args("sh", "-c", "touch /mnt/x && ls /mnt")
    bundle.edit(lambda c: c["mounts"].extend([
        {"destination": "/mnt", "type": "bind", "source": str(bundle.rootfs), "options": ["bind"]},
        {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}]))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    assert p.stdout == b"x\n"
    assert not (bundle.rootfs / "x").exists()


# --------------------------------------------------------------------------- #11 item 8: never "internal error"


def test_hostname_with_a_lone_surrogate(ocirun, bundle):
    text = json.dumps(bundle.config()).replace('"hostname": "', '"hostname": "a\\ud800')
    bundle.config_path.write_text(text)
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    _refused(p, "$.hostname: contains a lone UTF-16 surrogate (\\ud800 at character 1): not valid UTF-8")


@pytest.mark.parametrize("levels, runs", [(1000, True), (9999, True), (10_000, False)])
@needs_runc
def test_deep_nesting_as_runc(ocirun, bundle, tmp_path, levels, runs):
    """An unknown key nested `levels` deep: runc's limit (Go's encoding/json) is ocirun's."""
    text = json.dumps(bundle.config())
    text = text[:-1] + ', "x-deep": ' + '{"k":' * (levels - 1) + "{}" + "}" * (levels - 1) + "}"
    bundle.config_path.write_text(text)
    theirs = bundle.copy(tmp_path / "runc-bundle")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    r = _runc_run(tmp_path, theirs)
    if runs:
        assert p.returncode == 0 == r.returncode, (p.stderr, r.stderr)
    else:
        _refused(p, "invalid JSON: nested 10001 levels deep, more than the 10000 runc accepts")
        assert r.returncode == 1 and b"exceeded max depth" in r.stderr


def test_config_json_that_is_a_fifo_is_refused_at_once(ocirun, bundle):
    import os

    os.unlink(bundle.config_path)
    os.mkfifo(bundle.config_path)
    for verb in ("create", "run"):
        p = ocirun(verb, "--bundle", str(bundle.path), ocirun.new_id(), check=False, timeout=20)
        _refused(p, f"cannot read {bundle.config_path}: not a regular file")


@pytest.mark.parametrize("verb", ["create", "run"])
@needs_runc
def test_pid_file_in_a_missing_directory(ocirun, bundle, tmp_path, verb):
    """runc creates the container, fails writing the pid file and tears it down; ocirun
    checks first. Either way: exit 1, the same words, nothing left."""
    theirs = bundle.copy(tmp_path / "runc-bundle")
    pid_file = tmp_path / "missing" / "pid"
    cid = ocirun.new_id()
    p = ocirun(verb, "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid, check=False)
    _refused(p, f"open {pid_file}: no such file or directory")
    assert ocirun("state", cid, check=False).returncode == 1
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    r = _runc(tmp_path, verb, "--bundle", str(theirs.path), "--pid-file", str(pid_file), rid)
    _runc(tmp_path, "delete", "--force", rid)
    assert r.returncode == 1 and b"no such file or directory" in r.stderr


def test_exec_pid_file_in_a_missing_directory(ocirun, bundle, tmp_path):
    bundle.set_args("sleep", "1000")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    before = ocirun("ps", "-f", "json", cid).stdout
    pid_file = tmp_path / "missing" / "pid"
    for detach in ((), ("-d",)):
        p = ocirun("exec", *detach, "--pid-file", str(pid_file), cid, "sleep", "1000", check=False)
        _refused(p, f"exec failed: open {pid_file}: no such file or directory", status=255)
    assert ocirun("ps", "-f", "json", cid).stdout == before  # no process was started


@needs_runc
def test_log_in_a_missing_directory_is_the_one_error(ocirun, bundle, tmp_path):
    log = tmp_path / "missing" / "log"
    cid = ocirun.new_id()
    p = ocirun("run", "--bundle", str(bundle.path), cid, check=False, global_args=("--log", str(log)))
    _refused(p)
    assert p.stderr.decode() == f"open {log}: no such file or directory\n"
    assert ocirun("state", cid, check=False).returncode == 1
    r = subprocess.run(["runc", "--root", str(tmp_path / "runc-root"), "--log", str(log), "state", "x"],
                       capture_output=True, timeout=60)
    assert r.returncode == 1 and f"open {log}: no such file or directory".encode() in r.stderr


def test_exec_passes_argv_bytes_that_are_not_utf8(ocirun, bundle):
    """Go passes argv bytes through; so does ocirun (they were an internal error)."""
    bundle.set_args("sleep", "1000")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    import os

    arg = os.fsdecode(b"caf\xe9")
    p = ocirun("exec", "--env", os.fsdecode(b"X=\xff"), cid, "sh", "-c", 'printf "%s|%s" "$1" "$X"', "sh", arg)
    assert p.stdout == b"caf\xe9|\xff"


# --------------------------------------------------------------------------- #11 item 12: rootfsPropagation


_PROPAGATION = "awk '$5 == \"/\" || $5 == \"/proc\" {print $5, $7}' /proc/self/mountinfo"


@pytest.mark.parametrize("value, root, proc", [
    ("rprivate", "-", "-"),
    ("rslave", "-", "-"),  # a slave of a private mount is private
    ("rshared", "shared:", "shared:"),
    ("runbindable", "unbindable", "unbindable"),
    ("unbindable", "unbindable", "-"),  # not recursive: /proc keeps its own
])
def test_rootfs_propagation_recursive_forms(ocirun, bundle, value, root, proc):
    bundle.set_args("sh", "-c", _PROPAGATION)
    bundle.edit(lambda c: c["linux"].__setitem__("rootfsPropagation", value))
    v = ocirun("validate", "--bundle", str(bundle.path))
    if value.startswith("r"):
        assert f"$.linux.rootfsPropagation: {value!r} is not one of the values the spec lists".encode() in v.stderr
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    fields = dict(line.split(" ", 1) for line in p.stdout.decode().splitlines())
    assert fields["/"].startswith(root) and fields["/proc"].startswith(proc), fields


@pytest.mark.parametrize("value", ["rprivate", "rslave"])
@needs_runc
def test_rootfs_propagation_as_runc_shows_it(ocirun, bundle, tmp_path, value):
    bundle.set_args("sh", "-c", _PROPAGATION)
    bundle.edit(lambda c: c["linux"].__setitem__("rootfsPropagation", value))
    theirs = bundle.copy(tmp_path / "runc-bundle")
    ours = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout
    r = _runc_run(tmp_path, theirs)
    assert r.returncode == 0 and ours == r.stdout


def test_preserve_fds_beyond_the_open_files_limit(ocirun, bundle):
    """A number no fd can have (dup2: EBADF, was an internal error): one message, nothing made."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= 100_000:
        pytest.skip("the open-files limit here allows 100000 fds")
    bundle.set_args("sleep", "1000")
    cid = ocirun.new_id()
    p = ocirun("create", "--preserve-fds", "100000", "--bundle", str(bundle.path), cid, check=False)
    _refused(p, "--preserve-fds: fd 100002 is beyond this process's limit of")
    assert ocirun("state", cid, check=False).returncode == 1
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    p = ocirun("exec", "--preserve-fds", "100000", cid, "true", check=False)
    _refused(p, "--preserve-fds: fd 100002 is beyond")
