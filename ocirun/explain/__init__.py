"""`ocirun explain`: everything `create` would do with a bundle, in order, done by nothing.

The decisions are create's own: :func:`ocirun.container.create.prepare_create`
validates the bundle and builds the launch plan exactly as ``create`` does,
and the cgroup drivers run ``create`` and ``apply`` inside a dry-run
recording (``ocirun.util.dryrun``), which keeps every mkdir, file write and
device program instead of doing it. What this module adds is description:
the plan's kernel terms (flags, masks, numbers) back in words, the order in
which stage-1, the init and the process setup execute them (ocirun/shim/src/
init.c, process.c), and what the rootfs and the host say about paths (a
mount target after symlinks, the executable after the PATH lookup, whether
a masked path exists).

Nothing is created: no state directory, no cgroup, no mount, no process, no
seccomp cache entry. The warnings ``create`` would print are part of the
document. An invalid bundle raises what ``validate`` raises; a config
``create`` would refuse raises create's error.

The JSON document is described by docs/explain.schema.json; the text is the
same document for people (``format_text``). See docs/explain.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ocirun.cli import GlobalOptions
from ocirun.explain.text import format_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["cmd_explain", "explain_bundle", "format_text", "DOCUMENT_VERSION"]

#: Version of the explain document (docs/explain.schema.json); bumped on incompatible change.
DOCUMENT_VERSION = 1


def cmd_explain(g: GlobalOptions, args: argparse.Namespace) -> int:
    doc = explain_bundle(g, os.path.abspath(args.bundle), args.id)
    if args.format == "json":
        from ocirun.util import jsonio

        sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(format_text(doc))
    return 0


def explain_bundle(g: GlobalOptions, bundle: str, container_id: str | None = None, *,
                   cgroup_host: Any = None) -> dict[str, Any]:
    """The explain document (docs/explain.schema.json) of ``create`` of ``bundle`` as
    ``container_id`` (default: the bundle directory's name). ``cgroup_host``: the
    cgroup hierarchy to plan for (ocirun.cgroups.hierarchy.Host; tests), else this host's."""
    from ocirun.container.create import CreateOptions, configure_cgroup, prepare_create
    from ocirun.util.dryrun import Recording
    from ocirun.util.scoped import WARNINGS

    seen: list[str] = []
    id_given = container_id is not None
    cid = container_id if container_id is not None else _default_id(bundle)
    with WARNINGS.set(seen.append):
        prepared = prepare_create(g, cid, CreateOptions(bundle=bundle), check_terminal=False,
                                  cgroup_host=cgroup_host)
        linux = prepared.config.linux
        with Recording() as rec:  # create's step 5, recorded and not done
            prepared.cgroup.create()
            pids_limit = configure_cgroup(prepared.cgroup, linux)
            if pids_limit is not None:  # written once the init exists, before it runs anything
                prepared.cgroup.apply(pids_limit)
    from ocirun.explain.document import Document

    return Document(g, cid, id_given, prepared, rec.actions, seen).build()


def _default_id(bundle: str) -> str:
    from ocirun.errors import ContainerIdError
    from ocirun.store import validate_id

    name = os.path.basename(os.path.normpath(bundle))
    try:
        return validate_id(name)
    except ContainerIdError:
        return "container"
