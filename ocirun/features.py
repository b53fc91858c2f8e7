"""`ocirun features`: the features document (features.md), listing only what is implemented.

Grows with each feature: a key appears here when ocirun really honours it.
"""

from __future__ import annotations

import argparse
import json
import sys

from ocirun import SPEC_VERSION, __version__
from ocirun.cli import GlobalOptions


def features_document(criu: str = "criu") -> dict:
    from ocirun.hooks import KINDS as HOOK_KINDS
    from ocirun.linux.capabilities import CAPABILITIES
    from ocirun.linux.namespaces import CLONE_FLAGS
    from ocirun.plan.mount_options import (
        FLAG_OPTIONS,
        IDMAP_OPTIONS,
        PROPAGATION_OPTIONS,
        RECURSIVE_OPTIONS,
    )
    from ocirun.plan.process_attrs import MPOL_FLAGS, MPOL_MODES
    from ocirun.seccomp import features as seccomp_features

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted({*FLAG_OPTIONS, *PROPAGATION_OPTIONS, *RECURSIVE_OPTIONS, *IDMAP_OPTIONS, "tmpcopyup"}),
        "linux": {
            "namespaces": sorted(CLONE_FLAGS),
            "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True},
            "seccomp": seccomp_features(),
            # features-linux.md: implementation status, "irrelevant to the availability
            # on the host": both labels are applied when the host runs the LSM (and are
            # an error at create when it does not; ocirun.linux.lsm).
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": False},
            # bind mounts only (features-linux.md: a partial implementation still says true)
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
            # features-linux.md: recognized modes and flags (the host may still refuse some)
            "memoryPolicy": {"modes": list(MPOL_MODES), "flags": list(MPOL_FLAGS)},
        },
        "annotations": _annotations(criu),
    }


def _annotations(criu: str) -> dict[str, str]:
    out = {"org.ocirun.version": __version__}
    from ocirun.criu.host import describe

    out.update(describe(criu))  # what CRIU on this host allows checkpoint and restore
    from ocirun.seccomp import libseccomp as ls

    try:  # as runc: the libseccomp the seccomp section above was computed with
        out["io.github.seccomp.libseccomp.version"] = ls.version_string()
    except ls.LibseccompMissing:
        pass
    return out


def cmd_features(g: GlobalOptions, args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(features_document(getattr(args, "criu", "criu")), indent=4) + "\n")
    return 0
