"""The content cache of compiled filters: hits, misses, safety, speed (no root)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ocirun.seccomp import FilterCache, compile_filter
from ocirun.seccomp import compile as compile_mod
from ocirun.seccomp.compile import cache_key
from ocirun.spec.model import Seccomp

FIXTURE = Path(__file__).parent / "fixtures" / "seccomp-default-profile.json"


@pytest.fixture
def profile() -> Seccomp:
    return Seccomp.from_dict(json.loads(FIXTURE.read_text()))


@pytest.fixture
def cache(tmp_path) -> FilterCache:
    return FilterCache(str(tmp_path / "cache"))


def test_hit_gives_identical_bytes_and_skips_libseccomp(profile, cache, monkeypatch):
    cold = compile_filter(profile, cache)
    assert os.stat(cache.directory).st_mode & 0o777 == 0o700
    entries = os.listdir(cache.directory)
    assert entries == [f"{cache_key(profile)}.bpf"]

    def boom(sc):
        raise AssertionError("compiled on a cache hit")

    monkeypatch.setattr(compile_mod, "compile_bpf", boom)
    warm = compile_filter(profile, cache)
    assert warm == cold


def test_key_depends_on_content_not_on_listener(cache):
    a = Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
                           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
    b = Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/b",
                           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
    c = Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/b",
                           "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    assert cache_key(a) == cache_key(b) != cache_key(c)
    assert compile_filter(a, cache).bpf != compile_filter(c, cache).bpf
    assert len(os.listdir(cache.directory)) == 2


def test_key_depends_on_the_compiler_code(profile, cache, monkeypatch):
    # a filter cached by another ocirun (or before an edit) is never loaded: the
    # ENOSYS stub once came in this way, and old entries lacked it
    compile_filter(profile, cache)
    before = cache_key(profile)
    compile_mod._compiler_digest.cache_clear()
    monkeypatch.setattr(compile_mod, "_COMPILER_SOURCES", ("compile.py", "bpf.py"))
    try:
        assert cache_key(profile) != before
        assert cache.get(cache_key(profile)) is None
    finally:
        compile_mod._compiler_digest.cache_clear()


def test_flags_are_not_cached_but_recomputed(cache):
    base = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    f = compile_filter(Seccomp.from_dict(base), cache)
    assert f.uses_notify and f.flags == 8
    g = compile_filter(Seccomp.from_dict(base), cache)
    assert g.uses_notify and g.flags == 8


def test_corrupt_or_foreign_entries_are_misses(profile, cache):
    good = compile_filter(profile, cache).bpf
    path = Path(cache.directory) / f"{cache_key(profile)}.bpf"
    raw = path.read_bytes()
    path.write_bytes(raw[:-8])  # torn: digest no longer matches
    assert cache.get(cache_key(profile)) is None
    assert compile_filter(profile, cache).bpf == good  # recompiled and rewritten
    assert cache.get(cache_key(profile)) == good
    path.write_bytes(b"garbage")
    assert cache.get(cache_key(profile)) is None


def test_symlinked_entry_is_a_miss(profile, cache, tmp_path):
    compile_filter(profile, cache)
    path = Path(cache.directory) / f"{cache_key(profile)}.bpf"
    real = tmp_path / "elsewhere.bpf"
    real.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(real)
    assert cache.get(cache_key(profile)) is None


def test_unsafe_directory_is_not_used(profile, tmp_path):
    d = tmp_path / "open"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    c = FilterCache(str(d))
    compile_filter(profile, c)
    assert os.listdir(d) == []  # not written into a world-writable dir
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "cache-real")
    (tmp_path / "cache-real").mkdir(mode=0o700)
    compile_filter(profile, FilterCache(str(link)))
    assert os.listdir(tmp_path / "cache-real") == []


def test_missing_parent_or_unwritable_is_a_silent_miss(profile, tmp_path):
    c = FilterCache(str(tmp_path / "no" / "such" / "dir"))
    assert compile_filter(profile, c).bpf


def test_prune_keeps_max_entries(tmp_path):
    c = FilterCache(str(tmp_path / "cache"), max_entries=3)
    for i in range(6):
        sc = Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1}]})
        compile_filter(sc, c)
    assert len([n for n in os.listdir(c.directory) if n.endswith(".bpf")]) == 3
    c.clear()
    assert os.listdir(c.directory) == []


def test_hit_is_much_faster_than_compiling(profile, cache):
    def best(n, fn):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    compile_filter(profile, cache)  # warm libseccomp and the entry
    cold = best(5, lambda: compile_filter(profile))
    warm = best(5, lambda: compile_filter(profile, cache))
    assert warm * 5 < cold, (warm, cold)


def test_a_cache_hit_imports_none_of_the_slow_modules(profile, cache):
    """create/exec with a profile: compiling on a hit (and the notify module, which
    create imports for listenerPath) adds neither typing, json nor socket, which the
    create path avoids (docs/performance.md): ~6 ms per container."""
    import subprocess
    import sys

    compile_filter(profile, cache)  # fill the cache
    code = (
        "import sys, pathlib\n"
        "import ocirun.cli, ocirun.container.create, ocirun.plan.build, ocirun.shim, ocirun.spec.load\n"
        "from ocirun.util.jsonio import loads\n"
        "from ocirun.spec.model import Seccomp\n"
        "from ocirun.seccomp import FilterCache, compile_filter\n"
        "from ocirun.seccomp.compile import compile_config_filter\n"
        "from ocirun.seccomp.notify import listener_callback\n"
        f"sc = Seccomp.from_dict(loads(pathlib.Path({str(FIXTURE)!r}).read_bytes()))\n"
        f"assert compile_filter(sc, FilterCache({cache.directory!r})).bpf\n"
        "print(' '.join(m for m in ('typing', 'json', 'socket', 'array', 'dataclasses', 'hashlib')\n"
        "               if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    assert res.stdout.strip() == "", res.stdout
