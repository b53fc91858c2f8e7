"""`ocirun validate`: check a bundle and say so, or list every problem."""

from __future__ import annotations

import sys

from ocirun.spec.load import LoadedBundle, load_bundle

TYPE_CHECKING = False  # typing and argparse cost every `create` several ms to import
if TYPE_CHECKING:
    import argparse

    from ocirun.cli import GlobalOptions


def validate_bundle(bundle: str, rootless_ids: tuple[int, int] | None = None) -> LoadedBundle:
    """The checked bundle (used by ``create``); raises BundleError or ConfigError.
    ``rootless_ids``: see ``load_bundle``."""
    return load_bundle(bundle, rootless_ids=rootless_ids)


def own_ids_if_rootless() -> tuple[int, int] | None:
    """(euid, egid) when the effective uid is not 0 (runc's RootlessEUID), else None."""
    import os

    euid = os.geteuid()
    return (euid, os.getegid()) if euid != 0 else None


def cmd_validate(g: GlobalOptions, args: argparse.Namespace) -> int:
    loaded = validate_bundle(args.bundle, own_ids_if_rootless())
    for line in loaded.warnings:
        sys.stderr.write(f"warning: {line}\n")
    # Valid per the spec, but what `create` would still refuse (not implemented yet):
    # said here too, so that "valid" is not a surprise at create.
    from ocirun.plan.support import unsupported

    for problem in unsupported(loaded.config):
        sys.stderr.write(f"warning: {problem} (ocirun create refuses it)\n")
    sys.stdout.write(f"{loaded.bundle}: valid\n")
    return 0
