"""The fault suite (issue 12): each fault injected into a real `bapas up` while officers'
commands keep arriving; every command answered 2xx is stored exactly once (read back by an
independent reader of the streams), every hash chain holds, and every projection equals a
fresh rebuild from the streams. `bapas faults` runs these same injections and prints them.

Two systems, each started once for its faults: one nats-server, and a 3-node cluster.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.local.faults import CLUSTER_FAULTS, SINGLE_FAULTS, LocalSystem, Row, run_faults

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _rows(tmp_path_factory, cluster: int, faults) -> dict[str, Row]:
    folder = tmp_path_factory.mktemp("cluster" if cluster > 1 else "single")
    with LocalSystem(folder, cluster) as system:
        rows = asyncio.run(run_faults(system, faults, echo=lambda line: print(line)))
    return {r.fault: r for r in rows}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, Row]:
    return _rows(tmp_path_factory, 1, SINGLE_FAULTS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict[str, Row]:
    return _rows(tmp_path_factory, 3, CLUSTER_FAULTS)


def check(row: Row) -> None:
    kinds = {c.kind for c in row.commands if c.ok}
    assert kinds == {"registration", "visit", "advance"}, (row.fault, kinds)
    assert row.answered > 0 and row.stored == row.answered, row
    assert (row.lost, row.twice) == (0, 0), row.note
    assert row.chains_intact, row.note
    assert row.projections_equal, row.note


@pytest.mark.parametrize("fault", [name for name, _ in SINGLE_FAULTS])
def test_one_nats_server(single, fault):
    check(single[fault])


@pytest.mark.parametrize("fault", [name for name, _ in CLUSTER_FAULTS])
def test_three_node_cluster(cluster, fault):
    row = cluster[fault]
    check(row)
    assert "every node holds every stream to the same sequence" in row.note, row.note


def test_a_poison_event_holds_its_own_case_only(single):
    row = single["poison event"]
    held = int(row.note.split("; ")[1].split()[0])
    assert held >= 1, row.note  # the case is held back (and shown in /readyz) ...
    check(row)                  # ... while every other command went through
