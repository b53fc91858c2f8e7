"""The fds passed beyond stdio (ocirun.linux.fds) and what the plan makes of them."""

from __future__ import annotations

import os

from ocirun.linux.fds import fill_holes


def test_fill_holes_puts_placeholders_on_free_numbers_only():
    # find three free numbers in a row well above what the test process uses
    base = 900
    keep = os.open("/dev/null", os.O_RDONLY)
    try:
        os.dup2(keep, base + 1)  # an fd "passed" by the caller, in the middle
        holes = fill_holes(3, first=base)
        try:
            assert holes == (base, base + 2)
            for fd in holes:
                assert os.get_inheritable(fd) is False  # never reaches anything we exec
            assert os.get_inheritable(base + 1) is True  # the caller's, untouched
            assert fill_holes(3, first=base) == ()
        finally:
            for fd in (*holes, base + 1):
                os.close(fd)
    finally:
        os.close(keep)
