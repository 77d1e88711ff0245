"""The durability profile: a service refuses a server or stream that could lose events."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js.api import StorageType, StreamConfig

from shared.errors import ProfileError
from shared.local.servers import NatsServer, free_port, nats_server_binary
from shared.streams import check_server_profile, ensure_streams, stream_profile
from tests.conftest import TEST_SECRET
from tests.support.wait import eventually

REPO = Path(__file__).resolve().parents[2]


def run_service(servers, namespace: str, nats_url: str, monitor_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAPAS_")}
    env.update(BAPAS_ENV="development", BAPAS_NATS_URL=nats_url,
               BAPAS_NATS_MONITOR_URL=monitor_url, BAPAS_DATABASE_URL=servers.dsn,
               BAPAS_NAMESPACE=namespace, BAPAS_JWT_SECRET=TEST_SECRET,
               BAPAS_REGISTRATION_PORT=str(free_port()))
    return subprocess.run([sys.executable, "-m", "services.registration"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_a_service_refuses_to_start_against_a_server_without_sync_always(
        servers, namespace, tmp_path):
    with NatsServer(tmp_path / "nats", sync_always=False) as lax:
        result = run_service(servers, namespace, lax.url, lax.monitor_url)
    assert result.returncode == 78
    assert "refusing to start" in result.stderr
    assert "sync_interval: always" in result.stderr  # says what to change


async def test_a_stream_that_differs_from_the_profile_is_refused_not_rewritten(
        servers, namespace, nc, topology):
    js = nc.jetstream()
    lax = stream_profile(topology, "registration")
    lax.allow_atomic = False
    lax.max_age = 3600.0
    await js.add_stream(lax)
    try:
        with pytest.raises(ProfileError) as err:
            await ensure_streams(js, topology)
        assert "allow_atomic" in str(err.value) and "max_age" in str(err.value)
        info = await js.stream_info(topology.stream("registration"))
        assert not info.config.allow_atomic  # left as found: the operator decides
        result = run_service(servers, namespace, servers.nats_url, servers.monitor_url)
        assert result.returncode == 78 and "allow_atomic" in result.stderr
    finally:
        for context in ("registration", "guidance", "supervision", "access"):
            try:
                await js.delete_stream(topology.stream(context))
            except Exception:  # noqa: BLE001
                pass


async def test_provisioning_twice_creates_once_and_accepts_its_own_streams(nc, topology):
    js = nc.jetstream()
    try:
        first = await ensure_streams(js, topology, contexts=("registration", "guidance"))
        second = await ensure_streams(js, topology, contexts=("registration", "guidance"))
        assert len(first) == 2 and second == []
    finally:
        for context in ("registration", "guidance"):
            await js.delete_stream(topology.stream(context))


async def test_memory_storage_is_refused(nc, topology):
    js = nc.jetstream()
    wanted = stream_profile(topology, "guidance")
    config = StreamConfig(**{**wanted.as_dict(), "storage": StorageType.MEMORY,
                             "duplicate_window": 0})
    config.duplicate_window = 0
    await js.add_stream(config)
    try:
        with pytest.raises(ProfileError) as err:
            await ensure_streams(js, topology, contexts=("guidance",))
        assert "storage" in str(err.value) and "duplicate_window" in str(err.value)
    finally:
        await js.delete_stream(topology.stream("guidance"))


async def test_the_shipped_server_config_holds_the_profile(tmp_path):
    port, monitor = free_port(), free_port()
    shipped = (REPO / "deploy/nats-server.conf").read_text()
    store = 'store_dir: "/var/lib/nats"'
    assert store in shipped  # nats-server refuses -sd beside store_dir: swap the line instead
    conf = tmp_path / "nats-server.conf"
    conf.write_text(shipped.replace(store, f'store_dir: "{tmp_path / "js"}"'))
    proc = subprocess.Popen([nats_server_binary(), "-c", str(conf), "-a", "127.0.0.1",
                             "-p", str(port), "-m", str(monitor)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        config = await eventually(lambda: _profile(f"http://127.0.0.1:{monitor}"),
                                  until=lambda c: c is not None, timeout=20)
        assert config["sync_always"] is True
    finally:
        proc.terminate()
        proc.wait(10)


async def _profile(url: str):
    try:
        return await check_server_profile(url, timeout=1)
    except ProfileError as exc:
        if "cannot read" in str(exc):
            return None  # not listening yet
        raise


async def test_an_unreachable_monitoring_port_says_which_setting_to_fix():
    with pytest.raises(ProfileError) as err:
        await check_server_profile(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert "BAPAS_NATS_MONITOR_URL" in str(err.value)


async def test_the_shipped_cluster_holds_the_profile_on_every_node_and_refuses_one_replica(
        tmp_path):
    """Three nodes from deploy/cluster/node.conf (each with its own environment, as on three
    machines): each fsyncs every write; streams get three replicas; a stream with one is
    refused; the profile still checks with a node down."""
    import nats

    from shared.local.servers import CLUSTER_NODE_CONFIG, NatsCluster
    from shared.streams import Topology

    assert CLUSTER_NODE_CONFIG == REPO / "deploy/cluster/node.conf"
    with NatsCluster(tmp_path / "cluster") as cluster:
        for node in cluster.nodes:
            assert (await check_server_profile(node.monitor_url, timeout=2))["sync_always"]
            assert (node.data_dir / "nats-server.conf").read_text() == \
                CLUSTER_NODE_CONFIG.read_text()  # the shipped file, unchanged
        nc = await nats.connect(servers=cluster.url.split(","))
        try:
            js = nc.jetstream()
            topology = Topology("clu")
            assert await ensure_streams(js, topology, replicas=3) == [
                topology.stream(c) for c in ("registration", "guidance", "supervision", "access")]
            info = await js.stream_info(topology.stream("guidance"))
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
            single = Topology("one")
            await ensure_streams(js, single, replicas=1)
            with pytest.raises(ProfileError) as err:
                await ensure_streams(js, single, replicas=3)
            assert "num_replicas is 1, must be at least 3" in str(err.value)
        finally:
            await nc.close()
        cluster.nodes[0].kill()
        assert (await check_server_profile(cluster.monitor_url, timeout=1))["sync_always"]
