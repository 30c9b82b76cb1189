"""Cluster commands as the agent parses them: hostile arguments are refused."""

from __future__ import annotations

from typing import Any

import pytest

from gpunet.core.clusters import (
    BadCommand,
    CheckCluster,
    NodeRef,
    NodeStarted,
    StartNode,
    check_passed,
)

CLUSTER = "clu_abcdefghijklmnop"
DEVICE = "dev_abcdefghijklmnop"
TOKEN = "t" * 64


def test_start_round_trips() -> None:
    start = StartNode(CLUSTER, DEVICE, "10.0.0.1:6379", 1, {"gpunet_cpu_dev": 1.0}, TOKEN)
    assert StartNode.parse(start.wire()) == start
    assert not start.is_head
    head = StartNode(CLUSTER, DEVICE, None, 0, {}, TOKEN)
    assert StartNode.parse(head.wire()).is_head


@pytest.mark.parametrize(
    "change",
    [
        {"cluster": "../../etc"},
        {"device": "dev_x"},
        {"head_address": "10.0.0.1; rm -rf /:1"},
        {"head_address": "--block"},
        {"num_gpus": True},
        {"num_gpus": 99},
        {"resources": {"bad name": 1}},
        {"resources": {"x": "1"}},
        {"resources": {f"r{i}": 1 for i in range(9)}},
        {"token": "short"},
        {"token": "x" * 40 + " --head"},
    ],
)
def test_start_refuses_hostile_arguments(change: dict[str, Any]) -> None:
    args = {**StartNode(CLUSTER, DEVICE, "10.0.0.1:6379", 1, {}, TOKEN).wire(), **change}
    with pytest.raises(BadCommand):
        StartNode.parse(args)


def test_start_needs_the_token() -> None:
    with pytest.raises(BadCommand):
        StartNode.parse(StartNode(CLUSTER, DEVICE).wire())


def test_results_and_refs() -> None:
    assert NodeStarted.parse({"node_ip": "127.0.0.1", "address": "127.0.0.1:1"}).address
    with pytest.raises(BadCommand):
        NodeStarted.parse({"node_ip": "1.2.3.4", "address": "nope"})
    with pytest.raises(BadCommand):
        NodeStarted.parse([])
    assert NodeRef.parse({"cluster": CLUSTER, "device": DEVICE}).device == DEVICE
    check = CheckCluster(CLUSTER, DEVICE, 2)
    assert CheckCluster.parse(check.wire()) == check
    with pytest.raises(BadCommand):
        CheckCluster.parse({**check.wire(), "nodes": 0})


def test_check_passes_only_when_a_task_ran_on_every_node() -> None:
    assert check_passed({"alive": ["a", "b"], "ran": ["b", "a"]}, 2)
    assert not check_passed({"alive": ["a", "b"], "ran": ["a", "a"]}, 2)
    assert not check_passed({"alive": ["a"], "ran": ["a"]}, 2)
    assert not check_passed({"alive": ["a", "a"], "ran": ["a", "a"]}, 2)
    assert not check_passed(None, 2)
