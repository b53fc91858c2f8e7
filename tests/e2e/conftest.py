"""End-to-end tests: podman and containerd (ctr) driving the runtime.

The runtime binary is ocirun from the worktree's .venv by default (the C front end
with its warm helper; with OCIRUN_HELPER=off, ocirun-direct, the direct path); give
another with `--e2e-runtime PATH` or OCIRUN_E2E_RUNTIME (e.g. /usr/sbin/runc,
to check the tests themselves).  One private podman and one private
containerd serve the whole session (see engines.py); after every test its
containers are removed and checked gone: no runtime state, no container
cgroups, no mounts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engines import (  # noqa: E402
    REPO,
    Containerd,
    Podman,
    become_subreaper,
    cgroup_dirs,
    image_layout,
    mounts_under,
    reap_orphans,
)


def pytest_addoption(parser):
    parser.addoption("--e2e-runtime", default=os.environ.get("OCIRUN_E2E_RUNTIME"),
                     help="the runtime binary podman and containerd call (default: .venv/bin/ocirun)")


def pytest_configure(config):
    if os.geteuid() == 0:
        # conmon and the containerd shims double-fork: they are reparented to us, and reaped.
        become_subreaper()


@pytest.fixture(scope="session")
def runtime_binary(pytestconfig) -> Path:
    if os.geteuid() != 0:
        pytest.skip("e2e tests need root")
    given = pytestconfig.getoption("--e2e-runtime")
    # OCIRUN_HELPER=off: the direct path. Not by the variable alone: podman runs the
    # runtime's start, kill and delete with an environment of its own (PATH and
    # XDG_RUNTIME_DIR only), so the command that never uses a helper is the one used.
    direct = os.environ.get("OCIRUN_HELPER", "") in ("off", "0", "no", "false")
    default = REPO / ".venv" / "bin" / ("ocirun-direct" if direct else "ocirun")
    path = Path(given) if given else default
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"runtime binary {path} not found (run ./scripts/setup)")
    return path.resolve() if given else path


@pytest.fixture(scope="session")
def layout() -> Path:
    return image_layout()


def runtime_entries(root: Path) -> set[str]:
    try:
        return set(os.listdir(root))
    except FileNotFoundError:
        return set()


# --- podman ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def podman_session(tmp_path_factory, runtime_binary, layout) -> Iterator[Podman]:
    pm = Podman(tmp_path_factory.mktemp("podman"), runtime_binary)
    try:
        pm.load_image(layout)
        yield pm
    finally:
        leaks = pm.close()
    assert not leaks, "podman teardown: " + "; ".join(leaks)


@pytest.fixture
def podman(podman_session) -> Iterator[Podman]:
    pm = podman_session
    # podman never passes --root: the runtime's default root (/run/ocirun, /run/runc).
    state_root = Path("/run") / pm.runtime_name
    before = runtime_entries(state_root)
    yield pm
    pm.remove_all()
    reap_orphans()
    problems = []
    if left := pm("ps", "--all", "--quiet", check=False).stdout.split():
        problems.append(f"containers left: {left}")
    if new := runtime_entries(state_root) - before:
        problems.append(f"runtime state left in {state_root}: {sorted(new)}")
    for top in cgroup_dirs(pm.cgroup_parent):
        if left := sorted(p.name for p in top.rglob("libpod-*")):
            problems.append(f"cgroups left in {top}: {left}")
    if mounted := [m for m in mounts_under(pm.root) if m != str(pm.root / "storage" / "overlay")]:
        problems.append(f"mounts left: {mounted}")
    assert not problems, "after the test: " + "; ".join(problems)


# --- containerd --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def containerd_session(tmp_path_factory, runtime_binary, layout) -> Iterator[Containerd]:
    cd = Containerd(tmp_path_factory.mktemp("containerd"), runtime_binary)
    try:
        cd.start()
        cd.load_image(layout)
        yield cd
    finally:
        leaks = cd.close()
    assert not leaks, "containerd teardown: " + "; ".join(leaks)


@pytest.fixture
def ctr(containerd_session) -> Iterator[Containerd]:
    cd = containerd_session
    yield cd
    cd.remove_all()
    reap_orphans()
    problems = []
    if left := cd.containers():
        problems.append(f"containers left: {left}")
    if left := runtime_entries(cd.runtime_root / cd.namespace):
        problems.append(f"runtime state left: {sorted(left)}")
    for top in cgroup_dirs(cd.namespace):
        if left := sorted(p.name for p in top.iterdir() if p.is_dir()):
            problems.append(f"cgroups left in {top}: {left}")
    if mounted := mounts_under(cd.root):
        problems.append(f"mounts left: {mounted}")
    assert not problems, "after the test: " + "; ".join(problems)
