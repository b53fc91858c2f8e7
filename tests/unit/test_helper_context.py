"""A worker reproduces what the direct path's interpreter would be for the caller's
environment: stdio encodings and errors, UTF-8 mode, locale coercion, os.environ.
Checked against real interpreters started with each environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ocirun.helper.context import Refused, StdioConfig, check_python_env, parse_env

PROBE = ("import sys, os, json; print(json.dumps([sys.stdout.encoding, sys.stdout.errors, sys.stderr.errors,"
         " sys.stdin.errors, sys.getfilesystemencoding(), sys.flags.utf8_mode, os.environ.get('LC_CTYPE'),"
         " sys.stdout.line_buffering, sys.stderr.line_buffering, sys.stdout.write_through]))")

ENVS = [{}, {"LANG": "C"}, {"LANG": "C.UTF-8"}, {"LANG": "POSIX"}, {"LC_ALL": "C"}, {"LC_ALL": "C.UTF-8"},
        {"LANG": "en_US.UTF-8"}, {"LC_CTYPE": "C"}, {"LANG": "C.UTF-8", "LC_ALL": "C"}, {"PYTHONUTF8": "1"},
        {"PYTHONUTF8": "0"}, {"PYTHONUTF8": "0", "LANG": "C.UTF-8"}, {"PYTHONCOERCECLOCALE": "0"},
        {"PYTHONCOERCECLOCALE": "0", "LANG": "C.UTF-8"}, {"PYTHONIOENCODING": "latin-1"},
        {"PYTHONIOENCODING": ":replace"}, {"PYTHONIOENCODING": "utf-8:strict"}, {"LANG": "de_DE.ISO-8859-1"},
        {"LC_ALL": "xx_YY"}, {"LANG": "C.utf8"}, {"LC_ALL": "", "LANG": "C.UTF-8"},
        {"LC_CTYPE": "C.UTF-8", "LANG": "C"}, {"PYTHONUNBUFFERED": "1"}]


@pytest.mark.parametrize("env", ENVS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "empty")
def test_stdio_config_is_what_python_chooses(env):
    real = json.loads(subprocess.run([sys.executable, "-S", "-c", PROBE], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, check=True).stdout)
    cfg = StdioConfig(env)
    # stdout is a pipe here: block-buffered; stderr always line-buffered
    ours = [cfg.encoding, cfg.errors, "backslashreplace", cfg.errors, cfg.fs_encoding, int(cfg.utf8_mode),
            cfg.coerced_ctype or env.get("LC_CTYPE"), False, not cfg.unbuffered, cfg.unbuffered]
    assert ours == real


def test_make_stdio_matches_a_real_interpreter(tmp_path):
    # the repr (what "Exception ignored in: ..." prints), buffering, name and mode
    probe = ("import sys; print(repr(sys.stdout), sys.stdout.line_buffering, sys.stdout.buffer.raw.name,"
             " repr(sys.stderr), file=sys.stderr)")
    real = subprocess.run([sys.executable, "-S", "-c", probe], env={"LANG": "C.UTF-8"}, capture_output=True,
                          text=True, check=True).stderr
    ours = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom ocirun.helper.context import StdioConfig, make_stdio\n"
        "cfg = StdioConfig({'LANG': 'C.UTF-8'})\nout = make_stdio(1, True, '<stdout>', cfg)\n"
        "err = make_stdio(2, True, '<stderr>', cfg)\n"
        "print(repr(out), out.line_buffering, out.buffer.raw.name, repr(err), file=err)\nerr.flush()")],
        capture_output=True, text=True, check=True).stderr
    assert ours == real


def test_environment_as_python_builds_it():
    env = parse_env([b"A=1", b"B=x=y", b"A=2", b"NOEQUALS", b"=empty", b"C=", b"D=\xff"])
    assert env == {"A": "1", "B": "x=y", "C": "", "D": os.fsdecode(b"\xff")}


def test_python_settings_the_helper_does_not_have_are_refused():
    class Own:
        env_python = {"PYTHONDONTWRITEBYTECODE": "1"}

    check_python_env({"PATH": "/bin", "PYTHONUNBUFFERED": "1"}, Own())  # type: ignore[arg-type]
    for var in ("PYTHONPATH", "PYTHONWARNINGS", "PYTHONHOME", "PYTHONPROFILEIMPORTTIME"):
        with pytest.raises(Refused):
            check_python_env({var: "x"}, Own())  # type: ignore[arg-type]


def _in_child(fn) -> int:
    """Run fn in a forked child (it rearranges the fd table); its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:  # noqa: BLE001
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_workers_own_fds_go_above_the_calls_range():
    """place_fds: the caller's fds at their numbers, ours above 3 + --preserve-fds
    (with a range given: not near RLIMIT_NOFILE, a table of that size costs ms)."""
    from ocirun.helper.context import place_fds

    def child() -> int:
        received = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(3)]
        mine = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        moved = place_fds([0, 1, 5], received, [mine], reserved=3 + 40)
        open_fds = [fd for fd in range(4096) if _is_open(fd)]
        ok = moved[0] >= 43 and moved[0] < 43 + 128 and open_fds == [0, 1, 5, moved[0]]
        ok = ok and all(os.get_inheritable(fd) for fd in (0, 1, 5)) and not os.get_inheritable(moved[0])
        return 0 if ok else 1

    assert _in_child(child) == 0


def test_the_range_a_call_reserves():
    """3 + LISTEN_FDS (when LISTEN_PID is the caller's) + --preserve-fds, as the CLI
    reads them; None for a command line the fast parser leaves to argparse."""
    from ocirun.helper.worker import Request, reserved_fds

    def req(argv: list[str], env: dict[str, str] | None = None) -> Request:
        r = Request()
        r.argv = [b"ocirun", *(a.encode() for a in argv)]
        r.env = env or {}
        r.pid = 4242
        return r

    assert reserved_fds(req(["state", "x"])) == 3
    assert reserved_fds(req(["exec", "--preserve-fds", "7", "x", "true"])) == 10
    assert reserved_fds(req(["run", "--preserve-fds=2", "x"], {"LISTEN_FDS": "3", "LISTEN_PID": "4242"})) == 8
    assert reserved_fds(req(["run", "x"], {"LISTEN_FDS": "3", "LISTEN_PID": "1"})) == 3
    assert reserved_fds(req(["run", "--help"])) is None
    assert reserved_fds(req(["run", "--preserve", "9", "x"])) is None  # an abbreviation: argparse's
