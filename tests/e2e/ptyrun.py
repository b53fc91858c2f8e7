"""Run a client on a pseudo-terminal, as a person at a terminal would.

`ctr run -t` / `ctr task exec -t` take the console from their stdin and fail
unless it is a terminal; podman's `-t` does not need one but behaves as it
does for a user only with one.  The client gets a new pty as stdin, stdout
and stderr; we read everything from the master until the client exits.
"""

from __future__ import annotations

import os
import select
import signal
import time

from engines import Result, reap_orphans, release, spawn


def run_in_pty(argv: list[str], *, env: dict[str, str], timeout: float = 60,
               cwd: str | os.PathLike[str] | None = None) -> Result:
    """``cwd``: where the client starts (an unprivileged client may not reach the checkout)."""
    master, slave = os.openpty()
    try:
        p = spawn(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, cwd=cwd)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                p.send_signal(signal.SIGKILL)
                p.wait()
                raise AssertionError(f"{argv} did not finish in {timeout}s; output so far: "
                                     f"{b''.join(chunks)!r}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:       # EIO: every slave fd is closed
                    data = b""
                if data:
                    chunks.append(data)
                    continue
                if p.poll() is not None:
                    break
            elif p.poll() is not None:
                # exited; drain what is left without blocking
                while select.select([master], [], [], 0)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        break
                    chunks.append(data)
                break
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
        p.wait()
        release(p)
        reap_orphans()
    # Both ptys (the container's and ours) turn \n into \r\n.
    out = b"".join(chunks).decode(errors="replace").replace("\r", "")
    return Result(argv, p.returncode, out, "")
