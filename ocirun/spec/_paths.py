"""JSON paths for problem reports: ``$.process.args[0]``, ``$.annotations['com.example']``."""

from __future__ import annotations

import re
from collections.abc import Iterable

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def json_path(parts: Iterable[str | int]) -> str:
    """Render path elements as a JSONPath; keys that are not identifiers are quoted."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}")
        else:
            import json  # rare: keys that are not identifiers

            inner = json.dumps(part)[1:-1].replace('\\"', '"').replace("'", "\\'")
            out.append(f"['{inner}']")
    return "".join(out)
