"""Speed discipline on a real container: `state`, `list`, `start`, `kill` and `delete`
import neither the validator (jsonschema, and not even ocirun.spec) nor pyroute2.

Checked the way docs/performance.md measures it, with ``-X importtime``
(PYTHONPROFILEIMPORTTIME=1) on each call of the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from conftest import OCIRUN

HEAVY = ("jsonschema", "jsonschema_specifications", "referencing", "fastjsonschema", "pyroute2",
         "ocirun.spec", "ocirun.plan")


def _imports(ocirun, *args: str) -> set[str]:
    """Run one command with -X importtime; the modules it imported."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), *args], stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, env=env, timeout=60)
        err.seek(0)
        text = err.read().decode()
    assert p.returncode == 0, (args, text[-2000:])
    modules = set()
    for line in text.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    assert "ocirun.store" in modules or "ocirun.cli" in modules, text[-2000:]  # it did measure
    return modules


def test_light_verbs_import_no_validator_and_no_pyroute2(ocirun, bundle):
    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    seen = {}
    seen["state"] = _imports(ocirun, "state", cid)
    seen["list"] = _imports(ocirun, "list")
    seen["start"] = _imports(ocirun, "start", cid)
    seen["kill"] = _imports(ocirun, "kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    seen["delete"] = _imports(ocirun, "delete", cid)
    heavy = {verb: sorted(m for m in mods if m.startswith(HEAVY)) for verb, mods in seen.items()}
    assert heavy == {verb: [] for verb in seen}
    # and the store really did the work in each
    assert all("ocirun.store" in mods for mods in seen.values())
