"""runc-compatible command line: global flags, subcommands and their flags.

No logic lives here. Each subcommand names the function that implements it
(``module:function``), imported only when that subcommand runs, so ``state``
or ``kill`` never pay for the validator. This module is also the one place
where an exception becomes the user-facing message, the ``--log`` line and
the exit status.

Speed: every call is a new interpreter, and argparse (with ``re``,
``gettext`` and building ~20 subparsers) costs a call ~10 ms. So the flag
definitions below are first read by a recorder (:class:`_Recorder`) and the
plain command lines (what containerd and podman send: global flags, the
subcommand, its flags as ``--flag value``, ``--flag=value`` or ``-f value``,
then the positionals) are parsed from that without argparse
(:func:`_fast_parse`). Anything else (``-h``, an unknown or abbreviated flag,
``--``, a value starting with ``-``, a missing or extra positional, a flag
after a positional, a subcommand with a kind of argument the recorder does
not know) goes to argparse, which gives the result or the error message.
"""

from __future__ import annotations

import os
import sys

from ocirun import SPEC_VERSION, __version__
from ocirun.errors import OcirunError, UsageError

TYPE_CHECKING = False  # typing and argparse cost every call several ms to import
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    Handler = Callable[["GlobalOptions", argparse.Namespace], int]
else:
    class _ArgparseNames:
        """``argparse`` for the flag definitions in :func:`_build_parser`, not imported
        until something other than these two constants (argparse's own values) is used."""

        SUPPRESS = "==SUPPRESS=="
        REMAINDER = "..."

        def __getattr__(self, name: str):
            import argparse as real

            return getattr(real, name)

    argparse = _ArgparseNames()

#: The state root of the host's root; anyone else's is under $XDG_RUNTIME_DIR
#: (ocirun.rootless.default_state_root).
DEFAULT_ROOT = "/run/ocirun"


class GlobalOptions:
    """runc's global flags, given before the subcommand.

    ``root`` None: the default state root (``ocirun.rootless.default_state_root``),
    decided when first used, so that a command that needs none (``spec``,
    ``features``) never fails for want of one. ``rootless``: the flag as given
    ("true", "false", "auto"); ``is_rootless`` what it means here.

    (A plain class, not a dataclass: importing dataclasses costs every call ~6 ms.)
    """

    __slots__ = ("_root", "log", "log_format", "debug", "systemd_cgroup", "rootless", "_is_rootless")

    def __init__(self, root: str | None, log: str | None, log_format: str, debug: bool,
                 systemd_cgroup: bool, rootless: str) -> None:
        self._root = root
        self.log = log
        self.log_format = log_format
        self.debug = debug
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless
        self._is_rootless: bool | None = None

    @property
    def root(self) -> str:
        """The state root: --root, or the default (UsageError naming XDG_RUNTIME_DIR
        for a rootless user without one)."""
        if self._root is None:
            from ocirun.rootless import default_state_root

            self._root = default_state_root()
        return self._root

    @root.setter
    def root(self, value: str | None) -> None:
        self._root = value

    @property
    def is_rootless(self) -> bool:
        """Whether ocirun runs without privilege over the host (``--rootless``,
        ocirun.rootless.is_rootless)."""
        if self._is_rootless is None:
            from ocirun.rootless import is_rootless

            self._is_rootless = is_rootless(self.rootless)
        return self._is_rootless


def _argparse_parser() -> Any:
    """The argparse parser class (argparse imported only when it is needed)."""
    import argparse as real

    class _Formatter(real.HelpFormatter):
        """HelpFormatter without its `import shutil` (for the terminal width): argparse
        makes a formatter for every add_argument, and shutil costs each call ~3 ms."""

        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None) -> None:
            if width is None:
                try:
                    width = int(os.environ.get("COLUMNS", "80")) - 2
                except ValueError:
                    width = 78
            super().__init__(prog, indent_increment, max_help_position, width)

    class _Parser(real.ArgumentParser):
        """argparse that raises instead of exiting, so the CLI edge reports it."""

        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("formatter_class", _Formatter)
            super().__init__(*args, **kwargs)

        def error(self, message: str):
            prefix = "argument COMMAND: invalid choice: "
            if message.startswith(prefix) and " (choose from " in message:
                import ast

                from ocirun.errors import UnknownCommand

                name = ast.literal_eval(message[len(prefix):message.rindex(" (choose from ")])
                raise UnknownCommand(name)  # runc's exit status 3 and wording
            raise UsageError(message)

    return _Parser


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="path to the bundle directory")
    p.add_argument("--console-socket", help="unix socket to receive the pty master")
    p.add_argument("--pid-file", help="write the container init's pid here")
    p.add_argument("--no-pivot", action="store_true", help="do not use pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="do not create a session keyring")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N fds beyond stdio (3..3+N-1)")


def _build_parser(parser_class: Any = None) -> Any:
    """The whole command line: argparse's parser, or with ``parser_class=_Recorder``
    the recorded flag definitions (see the module docstring)."""
    parser_class = parser_class or _argparse_parser()
    parser = parser_class(prog="ocirun", add_help=True, description="OCI container runtime")
    parser.add_argument("--root", default=None, help="directory for container state (default: "
                        "/run/ocirun for root, $XDG_RUNTIME_DIR/ocirun otherwise)")
    parser.add_argument("--log", default=None, help="append errors to this file")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug output")
    parser.add_argument("--systemd-cgroup", action="store_true", help="use the systemd cgroup driver")
    parser.add_argument("--rootless", default="auto", choices=("true", "false", "auto"))
    parser.add_argument("--criu", default="criu", help=argparse.SUPPRESS)
    parser.add_argument("--no-helper", action="store_true",
                        help="run this call without the warm helper (as OCIRUN_HELPER=off)")
    parser.add_argument("--version", "-v", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")  # subparsers: parser_class too

    def cmd(name: str, target: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=target)
        return p

    p = cmd("create", "ocirun.container.create:cmd_create", "create a container")
    _add_create_flags(p)
    p.add_argument("id")

    p = cmd("run", "ocirun.container.run:cmd_run", "create and start a container")
    _add_create_flags(p)
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--keep", action="store_true", help="do not delete the container after it exits")
    p.add_argument("--no-subreaper", action="store_true")
    p.add_argument("id")

    p = cmd("start", "ocirun.container.start:cmd_start", "start a created container")
    p.add_argument("id")

    p = cmd("state", "ocirun.container.query:cmd_state", "print the state of a container")
    p.add_argument("id")

    p = cmd("kill", "ocirun.container.kill:cmd_kill", "send a signal to the container's init")
    p.add_argument("--all", "-a", action="store_true", help="signal every process of the container")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="SIGTERM")

    p = cmd("delete", "ocirun.container.delete:cmd_delete", "delete a container")
    p.add_argument("--force", "-f", action="store_true", help="kill the container first")
    p.add_argument("id")

    p = cmd("list", "ocirun.container.query:cmd_list", "list containers")
    p.add_argument("--format", "-f", default="table", choices=("table", "json"))
    p.add_argument("--quiet", "-q", action="store_true")

    p = cmd("spec", "ocirun.spec.generate:cmd_spec", "write a default config.json")
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--rootless", action="store_true")

    p = cmd("validate", "ocirun.spec.check:cmd_validate", "check a bundle, print every problem")
    p.add_argument("--bundle", "-b", default=".")

    p = cmd("explain", "ocirun.explain:cmd_explain", "say everything create would do, doing none of it")
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--format", "-f", default="text", choices=("text", "json"))
    p.add_argument("id", nargs="?", default=None, help="the container id create would get "
                   "(default: the bundle directory's name)")

    cmd("features", "ocirun.features:cmd_features", "print the features document")

    p = cmd("exec", "ocirun.container.exec:cmd_exec", "run a process in a running container")
    p.add_argument("--console-socket", help="unix socket to receive the pty master (with --tty)")
    p.add_argument("--cwd", help="working directory in the container")
    p.add_argument("--env", "-e", action="append", default=[], help="add KEY=value to the environment")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--user", "-u", help="UID[:GID] to run as")
    p.add_argument("--additional-gids", "-g", action="append", default=[], help="add a supplementary group")
    p.add_argument("--process", "-p", help="process JSON (as config.json's process); other process flags are ignored")
    p.add_argument("--detach", "-d", action="store_true", help="return once the process has started")
    p.add_argument("--pid-file", help="write the process's host pid here")
    p.add_argument("--process-label", help="SELinux label of the process")
    p.add_argument("--apparmor", help="AppArmor profile of the process")
    p.add_argument("--no-new-privs", action="store_true", help="set no_new_privs")
    p.add_argument("--cap", "-c", action="append", default=[], help="add a capability")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass N fds beyond stdio (3..3+N-1)")
    p.add_argument("--cgroup", action="append", default=[], help="sub-cgroup (not implemented)")
    p.add_argument("--ignore-paused", action="store_true", help="exec even if the container is paused")
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER)

    for name, text in (("pause", "freeze every process of a container"),
                       ("resume", "thaw a paused container")):
        p = cmd(name, f"ocirun.container.pause:cmd_{name}", text)
        p.add_argument("id")

    p = cmd("ps", "ocirun.container.ps:cmd_ps", "list the processes of a container")
    p.add_argument("--format", "-f", default="table", choices=("table", "json"))
    p.add_argument("id")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)

    p = cmd("events", "ocirun.container.events:cmd_events", "container stats and events")
    p.add_argument("--interval", default="5s")
    p.add_argument("--stats", action="store_true")
    p.add_argument("id")

    p = cmd("update", "ocirun.container.update:cmd_update", "change a container's resources")
    p.add_argument("--resources", "-r")
    for flag in ("blkio-weight", "cpu-period", "cpu-quota", "cpu-share", "cpu-rt-period",
                 "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems", "kernel-memory",
                 "kernel-memory-tcp", "memory", "memory-reservation", "memory-swap",
                 "pids-limit", "l3-cache-schema", "mem-bw-schema"):
        p.add_argument(f"--{flag}")
    p.add_argument("id")

    p = cmd("helper", "ocirun.helper.cli:cmd_helper", "the warm helper: status, start, stop")
    p.add_argument("action", choices=("status", "start", "stop", "serve"))
    p.add_argument("--idle", type=float, help="start: exit after this many seconds without a call (0: never)")
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--id", help=argparse.SUPPRESS)
    p.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--nice", type=int, help=argparse.SUPPRESS)

    p = cmd("checkpoint", "ocirun.container.checkpoint:cmd_checkpoint",
            "checkpoint a running container (CRIU)")
    _add_criu_flags(p)
    p.add_argument("--parent-path", help="path for previous criu image files in pre-dump")
    p.add_argument("--leave-running", action="store_true", help="leave the process running after checkpointing")
    p.add_argument("--status-fd", type=int, default=-1, help="criu writes \\0 to this FD once lazy-pages is ready")
    p.add_argument("--page-server", help="ADDRESS:PORT of the page server")
    p.add_argument("--pre-dump", action="store_true",
                   help="dump container's memory information only, leave the container running after this")
    p.add_argument("id")

    p = cmd("restore", "ocirun.container.restore:cmd_restore", "restore a container from a previous checkpoint (CRIU)")
    _add_criu_flags(p)
    p.add_argument("--console-socket", help="unix socket to receive the pty master")
    p.add_argument("--bundle", "-b", help="path to the root of the bundle directory")
    p.add_argument("--detach", "-d", action="store_true", help="detach from the container's process")
    p.add_argument("--pid-file", help="specify the file to write the process id to")
    p.add_argument("--no-subreaper", action="store_true",
                   help="disable the use of the subreaper used to reap reparented processes")
    p.add_argument("--no-pivot", action="store_true", help="do not use pivot root to jail process inside rootfs")
    p.add_argument("--lsm-profile", help="an LSM profile for the restored process, TYPE:NAME")
    p.add_argument("--lsm-mount-context", help="an LSM mount context for the restore")
    p.add_argument("id")
    return parser


def _add_criu_flags(p: argparse.ArgumentParser) -> None:
    """The flags checkpoint and restore share (runc's, with runc's defaults)."""
    p.add_argument("--image-path", help="path for criu image files (default: ./checkpoint)")
    p.add_argument("--work-path", help="path for saving work files and logs")
    p.add_argument("--tcp-established", action="store_true", help="allow open tcp connections")
    p.add_argument("--ext-unix-sk", action="store_true", help="allow external unix sockets")
    p.add_argument("--shell-job", action="store_true", help="allow shell jobs")
    p.add_argument("--file-locks", action="store_true", help="handle file locks, for safety")
    p.add_argument("--manage-cgroups-mode", help="cgroups mode: soft|full|strict|ignore (default: soft)")
    p.add_argument("--empty-ns", action="append", help="create a namespace, but don't restore its properties")
    p.add_argument("--auto-dedup", action="store_true", help="enable auto deduplication of memory images")
    p.add_argument("--lazy-pages", action="store_true", help="use userfaultfd to lazily restore memory pages")


def _resolve(target: str) -> Handler:
    module_name, _, func = target.partition(":")
    try:
        __import__(module_name)  # not importlib.import_module: importlib costs a call ~1 ms
        module = sys.modules[module_name]
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        from ocirun.errors import NotImplementedYet

        raise NotImplementedYet(module_name.rsplit(".", 1)[-1]) from None
    handler = getattr(module, func, None)
    if handler is None:
        from ocirun.errors import NotImplementedYet

        raise NotImplementedYet(func.removeprefix("cmd_"))
    return handler


# --------------------------------------------------------------------------- fast path


class _Option:
    __slots__ = ("dest", "kind", "type", "choices")

    def __init__(self, dest: str, kind: str, type_: Any, choices: Any) -> None:
        self.dest = dest
        self.kind = kind  # "store", "store_true" or "append"
        self.type = type_
        self.choices = choices


_RECORDED_KEYS = frozenset({"action", "default", "help", "type", "choices", "dest", "metavar", "nargs"})


class _Recorder:
    """Stands in for the argparse parser in :func:`_build_parser` and keeps what the
    fast path needs. A declaration it does not model exactly makes it ``usable = False``
    (that parser's command lines then always go to argparse)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options: dict[str, _Option] = {}
        self.positionals: list[tuple[str, Any, Any]] = []  # (dest, nargs, default)
        #: Every dest with its default, in declaration order (argparse's Namespace).
        self.defaults: dict[str, Any] = {}
        self.subparsers: dict[str, _Recorder] = {}
        self.subparser_dest: str | None = None
        self.usable = True

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        if not names or set(kwargs) - _RECORDED_KEYS:
            self.usable = False
            return
        action = kwargs.get("action", "store")
        default = kwargs.get("default")
        type_ = kwargs.get("type")
        if not names[0].startswith("-"):  # a positional
            nargs = kwargs.get("nargs")
            if len(names) != 1 or action != "store" or nargs not in (None, "?", argparse.REMAINDER):
                self.usable = False
                return
            if self.positionals and self.positionals[-1][1] == argparse.REMAINDER:
                self.usable = False  # anything after a remainder: not modelled
                return
            if type_ is not None or kwargs.get("choices") is not None:
                self.usable = False
                return
            dest = kwargs.get("dest", names[0])
            self.positionals.append((dest, nargs, default))
            self.defaults[dest] = default
            return
        if "nargs" in kwargs:
            self.usable = False
            return
        longs = [n for n in names if n.startswith("--")]
        dest = kwargs.get("dest") or (longs or names)[0].lstrip("-").replace("-", "_")
        if action == "store_true":
            default = kwargs.get("default", False)
        elif action == "append":
            default = list(default) if default is not None else None
        elif action != "store":
            self.usable = False
            return
        elif isinstance(default, str) and type_ is not None:
            default = type_(default)  # argparse converts a string default with `type`
        if default == argparse.SUPPRESS:  # the dest would be missing from the Namespace
            self.usable = False
        option = _Option(dest, action, type_, kwargs.get("choices"))
        for name in names:
            self.options[name] = option
        self.defaults[dest] = default

    def set_defaults(self, **kwargs: Any) -> None:
        self.defaults.update(kwargs)

    def add_subparsers(self, dest: str | None = None, **kwargs: Any) -> _Recorder:
        self.subparser_dest = dest
        self.defaults[dest or "_"] = None
        return self

    def add_parser(self, name: str, **kwargs: Any) -> _Recorder:
        parser = _Recorder()
        self.subparsers[name] = parser
        return parser


def _parse_options(parser: _Recorder, argv: Sequence[str], i: int, values: dict[str, Any]) -> int:
    """Read ``parser``'s flags from argv[i:] into values, up to the first non-flag;
    returns its index, or -1 when argparse must decide."""
    n = len(argv)
    while i < n:
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            return i
        name, eq, value = arg.partition("=")
        option = parser.options.get(name)
        if option is None or (eq and (name[1] != "-" or not value)):  # unknown, abbreviated,
            return -1  # -h, "--", -b=x, --bundle= : argparse decides
        if option.kind == "store_true":
            if eq:
                return -1
            values[option.dest] = True
            i += 1
            continue
        if not eq:
            i += 1
            if i >= n:
                return -1
            value = argv[i]
        if value.startswith("-"):  # argparse's rules for these are subtle: let it decide
            return -1
        if option.type is not None:
            try:
                value = option.type(value)
            except (TypeError, ValueError):
                return -1
        if option.choices is not None and value not in option.choices:
            return -1
        if option.kind == "append":
            values[option.dest] = [*(values[option.dest] or ()), value]
        else:
            values[option.dest] = value
        i += 1
    return i


_recorded: Any = None


def _recorder() -> Any:
    """The recorded flag definitions, made once per process (a warm helper's workers
    share its copy)."""
    global _recorded
    if _recorded is None:
        _recorded = _build_parser(_Recorder)
    return _recorded


def _fast_parse(argv: Sequence[str]) -> Any:
    """argparse's Namespace for a plain command line, or None (see the module docstring)."""
    top = _recorder()
    values = dict(top.defaults)
    i = _parse_options(top, argv, 0, values)
    if i < 0 or not top.usable:
        return None
    if i == len(argv):
        return _namespace(values) if values.get("version") else None  # else help: argparse
    sub = top.subparsers.get(argv[i])
    if sub is None or not sub.usable or top.subparser_dest is None:
        return None
    values[top.subparser_dest] = argv[i]
    values.update(sub.defaults)
    i = _parse_options(sub, argv, i + 1, values)
    if i < 0:
        return None
    rest = argv[i:]
    kinds = [nargs for _, nargs, _ in sub.positionals]
    if kinds and kinds[-1] == argparse.REMAINDER:  # exec ID CMD..., ps ID ARGS...
        # The fixed positionals first; then everything, flags included, is the
        # remainder's (as argparse and runc's own parser do). Only plain forms here.
        fixed = sub.positionals[:-1]
        if any(k is not None for k in kinds[:-1]) or len(rest) < len(fixed):
            return None
        head, tail = rest[:len(fixed)], rest[len(fixed):]
        if any(a.startswith("-") for a in head) or (tail and tail[0].startswith("-")) or "--" in tail:
            return None
        for (dest, _, _), value in zip(fixed, head, strict=True):
            values[dest] = value
        values[sub.positionals[-1][0]] = list(tail)
        return _namespace(values)
    if any(arg.startswith("-") for arg in rest):  # a flag after a positional, "--", "-"
        return None
    if "?" in kinds and None in kinds[kinds.index("?"):]:  # optional before required: not modelled
        return None
    if not kinds.count(None) <= len(rest) <= len(kinds):
        return None
    for (dest, _, _), value in zip(sub.positionals, rest, strict=False):
        values[dest] = value
    return _namespace(values)


class _Namespace:
    """What argparse.Namespace offers (attributes, vars(), ==), without argparse."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __eq__(self, other: object) -> bool:
        return vars(self) == vars(other) if hasattr(other, "__dict__") else NotImplemented

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _namespace(values: dict[str, Any]) -> Any:
    return _Namespace(values)


def version_text() -> str:
    return f"ocirun version {__version__}\nspec: {SPEC_VERSION}\n"


def _scan_globals(argv: Sequence[str]) -> GlobalOptions:
    """Best-effort read of the global flags, for reporting errors in parsing itself."""
    values = {"--root": None, "--log": None, "--log-format": "text"}
    debug = False
    it = iter(argv)
    for arg in it:
        if arg == "--debug":
            debug = True
            continue
        name, eq, value = arg.partition("=")
        if name in values:
            values[name] = value if eq else next(it, None)
        elif not arg.startswith("-"):
            break
    return GlobalOptions(
        root=os.path.abspath(values["--root"]) if values["--root"] else None,
        log=values["--log"],
        log_format=values["--log-format"] if values["--log-format"] in ("text", "json") else "text",
        debug=debug,
        systemd_cgroup=False,
        rootless="auto",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    g = _scan_globals(args_list)
    try:
        ns = _fast_parse(args_list)
        if ns is None:
            parser = _build_parser()
            ns = parser.parse_args(args_list)
        g = GlobalOptions(
            root=os.path.abspath(ns.root) if ns.root else None,
            log=ns.log,
            log_format=ns.log_format,
            debug=ns.debug,
            systemd_cgroup=ns.systemd_cgroup,
            rootless=ns.rootless,
        )
        if g.log:
            _check_log(g)
        if ns.version:
            sys.stdout.write(version_text())
            return 0
        if ns.command is None:
            _build_parser().print_help()
            return 0
        handler = _resolve(ns.handler)
        return handler(g, ns)
    except OcirunError as exc:
        _report(g, exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        _report(g, "interrupted")
        return 130
    except OSError as exc:
        # A file the runtime could not use where no step said what it was doing
        # (each such place is a bug to fix): still one message, never a traceback.
        if g.debug:
            import traceback

            traceback.print_exc()
        _report(g, _os_error_text(exc))
        return 1
    except Exception as exc:  # the edge: nothing escapes as a traceback unless --debug
        if g.debug:
            import traceback

            traceback.print_exc()
        _report(g, f"internal error: {type(exc).__name__}: {exc}")
        return 1


def _check_log(g: GlobalOptions) -> None:
    """runc opens --log first thing: a file that cannot be opened is the one error
    (on stderr only), and nothing else is done."""
    try:
        os.close(os.open(g.log or "", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as err:
        from ocirun.errors import OutputFileError

        bad, g.log = g.log or "", None
        raise OutputFileError(bad, err) from None


def _os_error_text(exc: OSError) -> str:
    """"<file>: <strerror>", as the kernel said it (lower case, as runc's errors)."""
    what = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else what


def exit_now(code: Any) -> None:
    """``sys.exit(code)`` without the interpreter's teardown (freeing every module
    and object: ~2-10 ms a call here, more after ``create``). Only once ``main``
    has returned: ocirun leaves no atexit handler, thread or unclosed file behind,
    so flushing stdout and stderr is all the teardown would do for us. Anything
    unusual (a flush that fails, a code that is not an int) takes sys.exit's way."""
    if isinstance(code, int) and 0 <= code <= 255:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            sys.exit(code)  # e.g. EPIPE: reported as the interpreter would
        os._exit(code)
    sys.exit(code)


def _report(g: GlobalOptions, message: str) -> None:
    """One error, reported the way runc does: a line in --log, the message on stderr.
    One line: control characters a config value carries into the message (a
    newline in root.path...) are shown escaped, as repr() shows them."""
    if not message.isprintable():
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if g.log:
        from ocirun.log import append_log_line

        try:
            append_log_line(g.log, g.log_format, "error", message)
        except OSError:
            pass
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except OSError:
        pass
