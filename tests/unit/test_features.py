import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import referencing

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(name: str) -> jsonschema.Draft4Validator:
    resources = []
    for p in SCHEMAS.glob("*.json"):
        contents = json.loads(p.read_text())
        resources.append((p.name, referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT4)))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def test_features_document_is_valid_and_truthful():
    out = subprocess.run([sys.executable, "-m", "ocirun", "features"], capture_output=True, check=True)
    doc = json.loads(out.stdout)
    _validator("features-schema.json").validate(doc)
    assert doc["ociVersionMax"] == "1.3.0"
    assert set(doc["linux"]["namespaces"]) == {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
    assert "rro" in doc["mountOptions"] and "tmpcopyup" in doc["mountOptions"]
    # nothing is claimed that is not built yet
    assert doc["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
    # implemented (applied when the host runs the LSM, an error when it does not)
    assert doc["linux"]["apparmor"] == {"enabled": True} and doc["linux"]["selinux"] == {"enabled": True}
    assert doc["linux"]["intelRdt"] == {"enabled": False}
    assert doc["linux"]["netDevices"] == {"enabled": True}
    assert doc["linux"]["memoryPolicy"] == {
        "modes": ["MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_LOCAL",
                  "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE"],
        "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]}
    seccomp = doc["linux"]["seccomp"]
    assert seccomp["enabled"] is True
    assert "SCMP_ACT_NOTIFY" in seccomp["actions"] and "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
