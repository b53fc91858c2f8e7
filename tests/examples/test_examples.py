"""examples/redis and examples/postgres: the run scripts end to end, their failure path,
the seccomp conversion against podman's own, and the podman commands in their READMEs.

The first run builds the images (mmdebstrap from the Debian mirror, minutes); later runs
reuse examples/out/images.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO
from engines import IMAGE, IMAGE_TAG, Podman, image_layout, mounts_under, reap_orphans, skopeo_copy

sys.path.insert(0, str(REPO / "examples" / "lib"))
import service_config  # noqa: E402

pytestmark = pytest.mark.root

EXAMPLES = REPO / "examples"
SCRIPT_TIMEOUT = 1500      # a cold build of both images takes minutes


class Run:
    def __init__(self, argv: list[str], rc: int, out: str, err: str):
        self.argv, self.returncode, self.stdout, self.stderr = argv, rc, out, err

    def __repr__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout (end):\n{self.stdout[-6000:]}"
                f"\n--- stderr (end):\n{self.stderr[-4000:]}")


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = SCRIPT_TIMEOUT,
        cwd: Path = REPO) -> Run:
    # Files, not pipes: a container started by the command must not hold our pipe open.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                           timeout=timeout, cwd=cwd)
        out.seek(0)
        err.seek(0)
        r = Run(argv, p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    reap_orphans()
    return r


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def cgroups_named(name: str) -> list[str]:
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{name}")] + \
        [str(p) for p in Path("/sys/fs/cgroup").glob(f"{name}")]


def check(ok: bool, r: Run, what: str = "") -> None:
    """Fail with the whole (tail of the) output: pytest shortens a long assertion message."""
    if not ok:
        pytest.fail(f"{what}\n{r!r}" if what else repr(r), pytrace=False)


def assert_nothing_left(name: str, r: Run, runtime: Path) -> None:
    """What the script's own leftovers check checks, checked from outside."""
    m = re.search(rf"veth (ex{name[0]}(\d+)h)", r.stdout)
    assert m, r
    tag = m.group(2)
    assert not {f"ex{name[0]}{tag}h", f"ex{name[0]}{tag}c"} & links(), r
    ids = subprocess.run([str(runtime), "list", "--quiet"], capture_output=True, text=True).stdout.split()
    assert f"example-{name}-{tag}" not in ids, r
    assert not cgroups_named(f"ocirun-example-{name}-{tag}"), r
    m = re.search(r"scratch directory: (\S+)", r.stdout)
    assert m and not Path(m.group(1)).exists(), r
    assert not mounts_under(Path(m.group(1))), r


def shared_roots_untouched() -> list[str]:
    """Files in the shared unpacked roots changed after the unpack (a runtime writing into them)."""
    changed = []
    for done in (EXAMPLES / "out" / "images").glob("*.bundle/.complete"):
        out = subprocess.run(["find", str(done.parent / "rootfs"), "-newer", str(done)],
                             capture_output=True, text=True).stdout.split()
        changed += out
    return changed


# --- the run scripts ---------------------------------------------------------------------------

EXPECTED = {
    "redis": ["PONG", "NOAUTH Authentication required.", "NoNewPrivs: 1", "Seccomp:    2",
              "root:       read-only", "CapEff:     0000000000000000", "redis-server *:6379",
              "memory:", "of 128", "Received SIGTERM scheduling shutdown",
              "Redis is now ready to exit, bye bye", "dump.rdb"],
    "postgres": ["PostgreSQL 15", "CREATE TABLE", "INSERT 0 3", "(3 rows)", "NoNewPrivs: 1",
                 "Seccomp:    2", "postgres: checkpointer", "of 256", "received smart shutdown request",
                 "database system is shut down", "the 3 rows survived the container", "4 | the restart"],
}


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_run_script(name, runtime_binary):
    env = {**os.environ, "OCIRUN": str(runtime_binary)}
    r = run([str(EXAMPLES / name / "run")], env=env)
    check(r.returncode == 0, r)
    last = r.stdout.rstrip("\n").splitlines()[-1]
    check(last.startswith(f"OK examples/{name}/run: "), r, "no OK line at the end")
    check(f"under {runtime_binary.name} " in last, r, "the OK line names another runtime")
    for text in EXPECTED[name]:
        check(text in r.stdout, r, f"{text!r} missing")
    if "netDevices: {" not in r.stdout:   # runc 1.1 has none: the script moves the device
        assert "does not support linux.netDevices" in r.stdout, r
    assert_nothing_left(name, r, runtime_binary)
    assert shared_roots_untouched() == []


def test_redis_hold_until_stdin_ends(runtime_binary):
    """--hold (what benchmarks/redis.py drives): one HOLD line with the address and the
    password, then the usual stop once stdin ends (here at once: /dev/null)."""
    r = run([str(EXAMPLES / "redis" / "run"), "--hold"], env={**os.environ, "OCIRUN": str(runtime_binary)})
    check(r.returncode == 0, r)
    check(re.search(r"^HOLD address=10\.\S+ port=6379 password=\S+ id=example-redis-\d+$", r.stdout, re.M)
          is not None, r, "no HOLD line")
    check(r.stdout.rstrip().splitlines()[-1].startswith("OK "), r, "no OK line")
    assert_nothing_left("redis", r, runtime_binary)


def test_a_failing_step_is_named_and_cleaned_up(tmp_path, runtime_binary):
    """A runtime whose create fails: the script names the step, shows the runtime's
    words, removes the veth, the scratch directory and the cgroup, and fails."""
    fake = tmp_path / "broken-runtime"
    fake.write_text("#!/bin/sh\n"
                    'case "$1" in\n'
                    '  --version) echo "broken-runtime 0" ;;\n'
                    '  create) echo "broken-runtime: create is broken on purpose" >&2; exit 1 ;;\n'
                    '  *) exit 1 ;;\n'
                    "esac\n")
    fake.chmod(0o755)
    r = run([str(EXAMPLES / "redis" / "run")], env={**os.environ, "OCIRUN": str(fake)})
    assert r.returncode == 1, r
    assert "FAILED at step 5 (run it detached)" in r.stderr, r
    assert "create failed" in r.stderr, r
    assert "create is broken on purpose" in r.stderr, r       # the container log's tail
    assert not r.stdout.rstrip().splitlines()[-1].startswith("OK"), r
    assert "left behind" not in r.stderr, r
    assert_nothing_left("redis", r, runtime_binary)


def test_a_bad_subnet_is_refused_before_anything_is_made():
    r = run([str(EXAMPLES / "redis" / "run")], env={**os.environ, "EXAMPLE_SUBNET": "10.214.0.0/31"})
    assert r.returncode == 1, r
    assert "step 4 (config.json for a service, data volume, secret, veth): EXAMPLE_SUBNET=10.214.0.0/31" in r.stderr, r
    m = re.search(r"scratch directory: (\S+)", r.stdout)
    assert m and not Path(m.group(1)).exists(), r


# --- the seccomp conversion against podman's ------------------------------------------------------

@pytest.fixture(scope="module")
def busybox_in_podman(podman_session: Podman) -> Podman:
    layout = image_layout()
    skopeo_copy(f"oci:{layout}:{IMAGE_TAG}", f"containers-storage:{IMAGE}", env=podman_session.env,
                policy=podman_session.policy, tmpdir=podman_session.root / "tmp")
    return podman_session


@pytest.mark.parametrize("cap_opts", [
    ["--cap-drop", "all"],                      # what the examples run with
    [],                                         # podman's default set
    ["--cap-add", "SYS_ADMIN,SYS_PTRACE,SYS_MODULE,SYS_TIME,DAC_READ_SEARCH,SYS_PACCT,SYS_RAWIO"],
    ["--cap-drop", "all", "--cap-add", "AUDIT_WRITE,SYS_CHROOT,SYS_TTY_CONFIG"],
], ids=["none", "podman-default", "default+includes", "some"])
def test_seccomp_conversion_is_podmans(busybox_in_podman, cap_opts):
    """podman's generated linux.seccomp (from the same /usr/share/containers/seccomp.json)
    for a capability set is exactly what service_config.convert_seccomp makes of it."""
    pm = busybox_in_podman
    cid = pm("create", *pm.create_opts, *cap_opts, IMAGE, "true").stdout.strip()
    try:
        pm("init", cid)   # writes the bundle's config.json (the runtime's create runs)
        config_path = next(pm.root.glob(f"storage/overlay-containers/{cid}/userdata/config.json"))
        config = json.loads(config_path.read_text())
    finally:
        pm("rm", "--force", cid)
    bounding = config["process"].get("capabilities", {}).get("bounding", [])   # omitted when empty
    ours = service_config.convert_seccomp(service_config.load_profile(service_config.CONTAINERS_SECCOMP),
                                          bounding)
    assert ours == config["linux"]["seccomp"]


# --- the podman commands in the READMEs -------------------------------------------------------------

def readme_block(name: str) -> str:
    text = (EXAMPLES / name / "README.md").read_text()
    m = re.search(r"<!-- test: podman -->\n```sh\n(.*?)```", text, re.S)
    assert m, f"no <!-- test: podman --> sh block in examples/{name}/README.md"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


README_EXPECTED = {
    "redis": (16379, ["OK", "hello from podman and ocirun", "PONG", "Redis is now ready to exit, bye bye"]),
    "postgres": (15432, ["CREATE TABLE", "INSERT 0 2", "\n   3\n", "\n2\n", "database system is shut down"]),
}


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_readme_podman_commands(name, podman_session, tmp_path):
    """The README's podman block, run as written with bash -e, with three changes for a shared
    test machine: its port is a free one, `run` gets the private cgroup parent, and skopeo
    runs with a tmpfs over /var/lib (containers/image writes a blob-info cache to
    /var/lib/containers/cache for root, whatever the storage configuration says)."""
    pm = podman_session
    port, expected = README_EXPECTED[name]
    block = readme_block(name)
    assert block.count("podman --runtime ocirun run ") == 1 and str(port) in block
    script = (block.replace(str(port), str(free_port()))
              .replace("podman --runtime ocirun run ",
                       f"podman --runtime ocirun run --cgroup-parent {pm.cgroup_parent} "))
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "skopeo").write_text(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c "
        "'mount -t tmpfs -o size=16m,mode=0755 ocitest-examples /var/lib && exec /usr/bin/skopeo \"$@\"' "
        "skopeo \"$@\"\n")
    (wrappers / "skopeo").chmod(0o755)
    env = {**pm.env, "PATH": f"{wrappers}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    images_before = set(pm("images", "--quiet").stdout.split())
    r = run(["bash", "-euo", "pipefail", "-c", script], env=env, timeout=900)
    try:
        check(r.returncode == 0, r)
        for text in expected:
            check(text in r.stdout, r, f"{text!r} missing")
        assert pm("ps", "--all", "--quiet").stdout == "", "the README leaves a container"
        assert set(pm("images", "--quiet").stdout.split()) == images_before, "the README leaves an image"
        assert pm("secret", "ls", "--quiet").stdout.strip() == "", "the README leaves a secret"
    finally:
        pm("rm", "--all", "--force", check=False)
        pm("secret", "rm", "--all", check=False)
        for image in set(pm("images", "--quiet").stdout.split()) - images_before:
            pm("rmi", "--force", image, check=False)
