"""docs/engines.md: the configuration it tells users to write is what these tests run with."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from engines import REPO

pytestmark = pytest.mark.root

DOC = REPO / "docs" / "engines.md"
DOC_BINARY = "/usr/local/bin/ocirun"


def snippet(name: str) -> str:
    m = re.search(rf"<!-- e2e: {name} -->\n```toml\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"no <!-- e2e: {name} --> toml block in {DOC}"
    return m.group(1)


def test_documented_containers_conf_is_what_podman_runs_with(podman_session):
    doc = tomllib.loads(snippet("podman-conf").replace(DOC_BINARY, str(podman_session.runtime)))
    ours = tomllib.loads(podman_session.containers_conf.read_text())
    name = podman_session.runtime_name
    if name != "ocirun":
        pytest.skip("the documented snippet names ocirun")
    assert doc["engine"]["runtimes"]["ocirun"] == ours["engine"]["runtimes"]["ocirun"]
    assert doc["engine"]["cgroup_manager"] == ours["engine"]["cgroup_manager"]
    assert doc["engine"]["runtime"] == ours["engine"]["runtime"]
    assert set(ours["engine"]["runtime_supports_json"]) <= set(doc["engine"]["runtime_supports_json"])
    info = podman_session("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}")
    assert info.stdout.split() == ["ocirun", str(podman_session.runtime)]


def test_documented_containerd_cri_runtime_is_accepted(tmp_path):
    conf = tmp_path / "config.toml"
    conf.write_text(f'root = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n' + snippet("containerd-cri"))
    dump = subprocess.run(["containerd", "--config", str(conf), "config", "dump"], check=True,
                          capture_output=True, text=True).stdout
    cri = tomllib.loads(dump)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["ocirun"]
    assert cri["runtime_type"] == "io.containerd.runc.v2"
    assert cri["options"]["BinaryName"] == DOC_BINARY
    assert cri["options"]["SystemdCgroup"] is False
    assert not (tmp_path / "root").exists() and not (tmp_path / "state").exists()
