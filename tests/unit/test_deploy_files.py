"""The environment files shipped beside each nats-server configuration in deploy/ define
every variable that configuration reads, and nothing it does not; `bapas up` gives its own
servers the same variables (so what it runs is what an operator deploys)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.local.servers import CLUSTER_NODE_CONFIG, HUB_CONFIG, LEAF_CONFIG, NatsHub, NatsLeaf

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def variables(conf: Path) -> set[str]:
    text = "\n".join(line.split("#", 1)[0] for line in conf.read_text().splitlines())
    return set(re.findall(r"\$([A-Z][A-Z0-9_]*)", text))


def defined(env: Path) -> set[str]:
    return {line.split("=", 1)[0] for line in env.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize(("conf", "env"), [
    ("cluster/node.conf", "cluster/nats-1.env"), ("cluster/node.conf", "cluster/nats-2.env"),
    ("cluster/node.conf", "cluster/nats-3.env"), ("office/hub.conf", "office/hub.env"),
    ("office/leaf.conf", "office/leaf.env")])
def test_each_environment_file_defines_what_its_configuration_reads(conf, env):
    assert variables(DEPLOY / conf) == defined(DEPLOY / env)


def test_bapas_up_runs_the_shipped_office_files_with_the_same_variables(tmp_path):
    assert (HUB_CONFIG, LEAF_CONFIG) == (DEPLOY / "office/hub.conf", DEPLOY / "office/leaf.conf")
    hub = NatsHub(tmp_path / "hub")
    leaf = NatsLeaf(tmp_path / "jaksel", office="jaksel", hub_url=hub.leaf_url)
    for server, conf in ((hub, HUB_CONFIG), (leaf, LEAF_CONFIG)):
        assert server._config() == conf.read_text()
        assert variables(conf) <= set(server._environment())


def test_the_cluster_files_are_the_ones_bapas_up_runs():
    assert CLUSTER_NODE_CONFIG == DEPLOY / "cluster/node.conf"
