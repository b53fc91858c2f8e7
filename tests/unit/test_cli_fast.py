"""The CLI's fast path (no argparse) gives exactly argparse's result, or steps aside."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from ocirun import cli
from ocirun.errors import UsageError

_PARSER = cli._build_parser()


def argparse_result(argv: list[str]) -> dict | None:
    try:
        return vars(_PARSER.parse_args(argv))
    except UsageError:
        return None


# What containerd, podman/conmon, CRI-O and people send: all must take the fast path.
COMMON = [
    ["--version"],
    ["-v"],
    ["--root", "/run/x", "--log", "/l.json", "--log-format", "json", "create", "--bundle", "/b",
     "--pid-file", "/p", "--console-socket", "/s", "id1"],
    ["--root=/run/x", "--log=/l", "--log-format=text", "--systemd-cgroup", "create", "-b", "/b", "c"],
    ["--debug", "create", "--bundle=/b", "--no-pivot", "--no-new-keyring", "--preserve-fds", "2", "c"],
    ["create", "--preserve-fds=0", "c"],
    ["run", "--bundle", "/b", "-d", "--keep", "--no-subreaper", "c"],
    ["run", "c"],
    ["start", "c"],
    ["state", "c"],
    ["--root", "/r", "kill", "c", "KILL"],
    ["kill", "--all", "c", "9"],
    ["kill", "-a", "c"],
    ["kill", "c"],
    ["delete", "--force", "c"],
    ["delete", "-f", "c"],
    ["delete", "c"],
    ["--rootless", "false", "--criu", "x", "list", "-q", "--format", "json"],
    ["pause", "c"],
    ["resume", "c"],
    ["create", "--bundle", "", "c"],
    ["state", ""],
    ["--version", "state", "c"],
    # containerd's shim and conmon exec with a process file; people with a command
    ["--root", "/r", "--log", "/l.json", "--log-format", "json", "exec", "--process", "/p.json",
     "--detach", "--pid-file", "/e.pid", "--console-socket", "/s", "c"],
    ["exec", "--pid-file=/p", "--process=/p.json", "--detach", "--tty", "c"],
    ["exec", "-t", "c", "sh"],
    ["exec", "-e", "A=1", "-e", "B=2", "--user", "1:2", "--cwd", "/tmp", "c", "sh", "-c", "echo -n x"],
    ["ps", "--format", "json", "c"],
]

# Left to argparse (help, errors, the subtle forms): the fast path must return None
# or, where it answers, the same thing.
ODD = [
    [], ["-h"], ["--help"], ["state", "-h"], ["state"], ["state", "a", "b"], ["nosuch", "c"],
    ["--log-format", "xml", "state", "c"], ["--rootless", "maybe", "state", "c"],
    ["--roo", "/r", "state", "c"], ["delete", "--forc", "c"], ["delete", "c", "--force"],
    ["create", "--bundle", "-x", "c"], ["create", "--preserve-fds", "-1", "c"],
    ["create", "--preserve-fds", "x", "c"], ["create", "--preserve-fds=", "c"],
    ["create", "-b=/b", "c"], ["create", "-b/b", "c"], ["state", "--", "c"], ["state", "-", "c"],
    ["--debug=1", "state", "c"], ["delete", "--force=yes", "c"], ["kill", "c", "-9"],
    ["kill", "c", "TERM", "extra"], ["--root"], ["create", "--bundle"], ["exec", "c", "ls", "-l"],
    ["exec", "c", "-t"], ["exec", "c", "--", "ls"], ["exec", "c"], ["exec"], ["exec", "-t"],
    ["ps", "c", "-ef"], ["spec", "--rootless"], ["update", "--memory", "1g", "c"],
    ["checkpoint", "c"], ["--log", "state", "c"], ["-v", "-h"], ["state", "c", "-h"],
    ["create", "--bundle", "/a", "--bundle", "/b", "c"], ["list", "-f", "yaml"],
]


@pytest.mark.parametrize("argv", COMMON, ids=" ".join)
def test_common_command_lines_take_the_fast_path(argv):
    fast = cli._fast_parse(argv)
    assert fast is not None
    assert vars(fast) == argparse_result(argv)


@pytest.mark.parametrize("argv", ODD, ids=" ".join)
def test_anything_else_is_argparse_s(argv):
    fast = cli._fast_parse(argv)
    if fast is not None:
        assert vars(fast) == argparse_result(argv)


def test_generated_combinations_agree():
    flags = ["--bundle", "/b", "-b", "--pid-file=/p", "--no-pivot", "-d", "--force", "-a", "--all",
             "--preserve-fds", "3", "c1", "c2", "SIGKILL", "--", "-", "-x", "--keep", "-t", "-e", "A=1"]
    globals_ = [[], ["--root", "/r"], ["--debug", "--log-format=json"]]
    checked = fast_taken = 0
    for g in globals_:
        for command in ("create", "run", "kill", "delete", "start", "state", "exec", "ps"):
            for n in range(3):
                for rest in itertools.permutations(flags, n):
                    argv = [*g, command, *rest]
                    fast = cli._fast_parse(argv)
                    checked += 1
                    if fast is not None:
                        fast_taken += 1
                        assert vars(fast) == argparse_result(argv), argv
    assert checked > 5000 and fast_taken > 100


def test_hot_commands_import_neither_argparse_nor_typing(tmp_path):
    # Only what ocirun imports counts: `site` may have imported re/enum/collections already
    # (a PEP 660 editable install's finder does, as under tox), and the launcher skips site.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from ocirun.cli import main\n"
        f"main(['--root', {str(tmp_path)!r}, 'state', 'nosuch'])\n"
        "print(' '.join(m for m in ('argparse', 'typing', 'dataclasses', 'gettext', 'json', 're', 'enum',\n"
        "                           'signal', 'collections', 'pyroute2') if m in set(sys.modules) - before))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "" and "does not exist" in res.stderr


def test_errors_are_argparse_s():
    assert cli.main(["state"]) == 1
    assert cli.main(["--log-format", "xml", "state", "c"]) == 1


def test_create_path_imports_none_of_the_slow_modules():
    # what `create` imports (the container itself is not made here)
    code = (
        "import sys\n"
        "import ocirun.cli, ocirun.container.create, ocirun.container.run, ocirun.spec.check, ocirun.spec.load\n"
        "import ocirun.spec.rules, ocirun.spec.schema, ocirun.spec._compiled_schema, ocirun.plan.build\n"
        "import ocirun.plan.device_rules, ocirun.plan.support, ocirun.cgroups.v1, ocirun.store, ocirun.shim\n"
        "print(' '.join(m for m in ('argparse', 'typing', 'dataclasses', 'inspect', 'decimal', 'json',\n"
        "                           'gettext', 'locale', 'pyroute2', 'ocirun.linux.netdev') if m in sys.modules))\n"
    )
    assert _without_site(code).strip() == ""


def _without_site(code: str) -> str:
    """The output of ``code`` in a fresh interpreter without ``site`` (as bin/ocirun runs)."""
    res = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path)})
    return res.stdout


def test_the_library_is_imported_only_when_used():
    """`import ocirun` (every command line's first import) stays small: ocirun.Runtime
    and ocirun.Container come from ocirun.runtime on first use (module __getattr__),
    and neither the CLI nor the light verbs import it, nor contextvars."""
    code = (
        "import sys\n"
        "import ocirun, ocirun.cli, ocirun.errors, ocirun.container.query, ocirun.container.kill\n"
        "print(' '.join(m for m in ('ocirun.runtime', 'ocirun.explain', 'subprocess', 'threading',\n"
        "                           'contextvars', 'ocirun.util.scoped') if m in sys.modules))\n"
        "rt = ocirun.Runtime\n"
        "print(rt.__module__, ocirun.Container.__module__, 'Runtime' in dir(ocirun))\n"
    )
    assert _without_site(code).splitlines() == ["", "ocirun.runtime ocirun.runtime True"]


def test_explain_command_lines_take_the_fast_path():
    for argv in (["explain"], ["explain", "--bundle", "/b", "--format", "json", "c"], ["explain", "-b", "/b"],
                 ["--root", "/r", "explain", "-f", "text", "c"]):
        fast = cli._fast_parse(argv)
        assert fast is not None, argv
        assert vars(fast) == argparse_result(argv), argv
