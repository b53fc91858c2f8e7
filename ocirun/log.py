"""The ``--log`` file: one line per message, text or JSON, as runc's logrus writes.

containerd reads this file as a stream and keeps the last ``error`` line;
podman reads the whole file as one JSON object, so ocirun writes at most
one line per invocation (the error), never debug chatter.
"""

from __future__ import annotations

import json
import os
import time


def _rfc3339_now() -> str:
    now = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{base}.{int((now % 1) * 1e9):09d}Z"


def format_line(log_format: str, level: str, message: str) -> str:
    stamp = _rfc3339_now()
    if log_format == "json":
        return json.dumps({"level": level, "msg": message, "time": stamp}, separators=(",", ":")) + "\n"
    return f"time=\"{stamp}\" level={level} msg={json.dumps(message)}\n"


def append_log_line(path: str, log_format: str, level: str, message: str) -> None:
    line = format_line(log_format, level, message).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
