"""The cluster state file: round trip, host lookup and invalid input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetd.cluster import state
from fleetd.cluster.state import ClusterState, EtcdRecord, HostRecord
from fleetd.errors import ClusterError


def make_state(name: str = "demo", hosts: int = 2) -> ClusterState:
    return ClusterState(
        name=name,
        etcd=EtcdRecord(
            pid=100,
            start_time=5000,
            client_url="http://127.0.0.1:40001",
            data_dir="/var/lib/fleet-cluster/demo/etcd/data",
        ),
        key_prefix="/_coreos.com/fleet/",
        agent_ttl="10s",
        metadata="host={name}",
        fleetd="/opt/venv/bin/fleetd",
        hosts=[
            HostRecord(
                name=f"{name}-{n}",
                pid=200 + n,
                start_time=6000 + n,
                public_ip=f"127.0.0.{10 + n}",
                machine_id=f"{n:032x}",
                state_dir=f"/var/lib/fleet-cluster/{name}/{name}-{n}",
                cgroup_dirs=[f"/sys/fs/cgroup/systemd/fleet-cluster/{name}-{n}"],
            )
            for n in range(1, hosts + 1)
        ],
    )


def test_state_round_trip(tmp_path: Path) -> None:
    original = make_state()
    state.save(original, tmp_path / "demo")
    assert state.load(tmp_path / "demo") == original
    assert not (tmp_path / "demo" / "state.json.partial").exists()


def test_host_record_to_host() -> None:
    record = make_state().hosts[0]
    host = record.to_host()
    assert host.name == "demo-1"
    assert host.pid == 201
    assert host.start_time == 6001
    assert host.state_dir == Path("/var/lib/fleet-cluster/demo/demo-1")
    assert host.cgroup_dirs == (Path("/sys/fs/cgroup/systemd/fleet-cluster/demo-1"),)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [("1", "demo-1"), ("2", "demo-2"), ("demo-2", "demo-2")],
)
def test_find_host_by_name_or_number(selector: str, expected: str) -> None:
    assert make_state().find_host(selector).name == expected


def test_find_host_unknown_lists_names() -> None:
    with pytest.raises(ClusterError, match=r"host '7' not found .*demo-1, demo-2"):
        make_state().find_host("7")


def test_load_missing_cluster(tmp_path: Path) -> None:
    with pytest.raises(
        ClusterError, match=r"no cluster named 'gone'.*fleet-cluster up"
    ):
        state.load(tmp_path / "gone")


def corrupt(tmp_path: Path, data: object) -> Path:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "state.json").write_text(json.dumps(data), encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data.pop("hosts"), "'hosts'"),
        (lambda data: data.update(version=99), "format version 99"),
        (lambda data: data.update(name=3), "'name' is not a string"),
        (lambda data: data["etcd"].update(pid="100"), "'pid' is not of type int"),
        (lambda data: data["hosts"][0].update(pid=True), "'pid' is not of type int"),
        (lambda data: data["hosts"][0].update(cgroup_dirs="x"), "list of strings"),
        (lambda data: data["hosts"][0].update(extra=1), "extra"),
        (lambda data: data.update(hosts={}), "'hosts' is not a list"),
    ],
)
def test_load_invalid_state(tmp_path: Path, change: object, message: str) -> None:
    data = json.loads(make_state().to_json())
    change(data)  # type: ignore[operator]
    directory = corrupt(tmp_path, data)
    with pytest.raises(ClusterError, match=message):
        state.load(directory)


def test_load_not_json(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    (directory / "state.json").write_text("{half", encoding="utf-8")
    with pytest.raises(ClusterError, match=r"invalid .*state\.json"):
        state.load(directory)


def test_list_clusters(tmp_path: Path) -> None:
    state.save(make_state("beta"), tmp_path / "beta")
    state.save(make_state("alpha"), tmp_path / "alpha")
    (tmp_path / "not-a-cluster").mkdir()
    assert state.list_clusters(tmp_path) == ["alpha", "beta"]
    assert state.list_clusters(tmp_path / "missing") == []


@pytest.mark.parametrize("name", ["demo", "a", "ci-7", "x" * 59])
def test_cluster_name_valid(name: str) -> None:
    state.check_cluster_name(name)


@pytest.mark.parametrize("name", ["", "Demo", "-a", "a-", "a_b", "a/b", "x" * 60])
def test_cluster_name_invalid(name: str) -> None:
    with pytest.raises(ClusterError, match="invalid cluster name"):
        state.check_cluster_name(name)
