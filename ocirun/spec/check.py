"""`ocirun validate`: check a bundle and say so, or list every problem."""

from __future__ import annotations

import sys

from ocirun.spec.load import LoadedBundle, load_bundle

TYPE_CHECKING = False  # typing and argparse cost every `create` several ms to import
if TYPE_CHECKING:
    import argparse

    from ocirun.cli import GlobalOptions


def validate_bundle(bundle: str) -> LoadedBundle:
    """The checked bundle (used by ``create``); raises BundleError or ConfigError."""
    return load_bundle(bundle)


def cmd_validate(g: GlobalOptions, args: argparse.Namespace) -> int:
    loaded = validate_bundle(args.bundle)
    for line in loaded.warnings:
        sys.stderr.write(f"warning: {line}\n")
    # Valid per the spec, but what `create` would still refuse (not implemented yet):
    # said here too, so that "valid" is not a surprise at create.
    from ocirun.plan.support import unsupported

    for problem in unsupported(loaded.config):
        sys.stderr.write(f"warning: {problem} (ocirun create refuses it)\n")
    sys.stdout.write(f"{loaded.bundle}: valid\n")
    return 0
