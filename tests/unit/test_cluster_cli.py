"""fleet-cluster argument parsing and the commands that only read state."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetd.cluster import state
from fleetd.cluster.cli import main
from fleetd.cluster.state import ClusterState, EtcdRecord, HostRecord

# Above the kernel's PID limit (2**22), so no such process can exist.
NO_SUCH_PID = 2**22 + 1


def save_cluster(root: Path, name: str = "demo", host_count: int = 2) -> ClusterState:
    cluster_state = ClusterState(
        name=name,
        etcd=EtcdRecord(
            pid=NO_SUCH_PID,
            start_time=1,
            client_url="http://127.0.0.1:40001",
            data_dir=str(root / name / "etcd" / "data"),
        ),
        key_prefix="/my prefix/",
        agent_ttl="10s",
        metadata="host={name}",
        fleetd="/opt/venv/bin/fleetd",
        hosts=[
            HostRecord(
                name=f"{name}-{n}",
                pid=NO_SUCH_PID + n,
                start_time=1,
                public_ip=f"127.0.0.{10 + n}",
                machine_id=f"{n:032x}",
                state_dir=str(root / name / f"{name}-{n}"),
            )
            for n in range(1, host_count + 1)
        ],
    )
    state.save(cluster_state, root / name)
    return cluster_state


def invoke(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--root", str(root), *args])
    return result.exit_code, result.output


def test_help_lists_commands(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "--help")
    assert code == 0
    for command in (
        "up",
        "env",
        "exec",
        "status",
        "kill",
        "start-host",
        "down",
        "list",
    ):
        assert f"  {command} " in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--hosts", "0"], "0 is not in the range"),
        (["up", "--etcd-port", "70000"], "70000 is not in the range"),
        (["exec", "1"], "Missing argument 'COMMAND...'"),
        (["kill"], "Missing argument 'HOST'"),
        (["status", "extra"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 2
    assert message in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--agent-ttl", "soon"], "invalid agent TTL 'soon'"),
        (["up", "--name", "Bad_Name"], "invalid cluster name 'Bad_Name'"),
        (["up", "--metadata", "zone={zone}"], "invalid metadata template"),
        (["status", "--name", "gone"], "no cluster named 'gone'"),
        (["exec", "--name", "demo", "9", "true"], "host '9' not found"),
    ],
)
def test_errors_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    save_cluster(tmp_path)
    code, output = invoke(tmp_path, *args)
    assert code == 1
    assert message in output


def test_env_prints_exports(tmp_path: Path) -> None:
    save_cluster(tmp_path)
    code, output = invoke(tmp_path, "env", "--name", "demo")
    assert code == 0
    assert output.splitlines() == [
        "export FLEETCTL_DRIVER=etcd",
        "export FLEETCTL_ENDPOINT=http://127.0.0.1:40001",
        "export FLEETCTL_ETCD_KEY_PREFIX='/my prefix/'",
    ]


def test_name_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_cluster(tmp_path, "other")
    monkeypatch.setenv("FLEET_CLUSTER_NAME", "other")
    code, output = invoke(tmp_path, "env")
    assert code == 0
    assert "http://127.0.0.1:40001" in output


def test_status_shows_dead_hosts(tmp_path: Path) -> None:
    save_cluster(tmp_path)
    code, output = invoke(tmp_path, "status")
    lines = output.splitlines()
    assert code == 0
    assert lines[0] == "etcd http://127.0.0.1:40001 (dead)"
    assert lines[1].split() == [
        "HOST",
        "PID",
        "IP",
        "MACHINE",
        "HOST",
        "STATE",
        "FLEET",
    ]
    assert lines[2].split()[0] == "demo-1"
    assert lines[2].split()[-2:] == ["dead", "-"]
    assert lines[3].split()[0] == "demo-2"


def test_list_clusters(tmp_path: Path) -> None:
    save_cluster(tmp_path, "beta")
    save_cluster(tmp_path, "alpha")
    code, output = invoke(tmp_path, "list")
    assert code == 0
    assert output.splitlines() == ["alpha\tstopped\t2 hosts", "beta\tstopped\t2 hosts"]


def test_list_one_host_singular(tmp_path: Path) -> None:
    save_cluster(tmp_path, "solo", host_count=1)
    code, output = invoke(tmp_path, "list")
    assert code == 0
    assert output.splitlines() == ["solo\tstopped\t1 host"]


def test_down_removes_created_root(tmp_path: Path) -> None:
    # No hosts, so `down` signals nothing and touches no cgroup.
    root = tmp_path / "root"
    state.create_root(root)
    save_cluster(root, "first", host_count=0)
    save_cluster(root, "second", host_count=0)
    first_code, first_output = invoke(root, "down", "--name", "first")
    assert first_code == 0, first_output
    assert sorted(path.name for path in root.iterdir()) == [
        state.ROOT_MARKER,
        "second",
    ]
    second_code, second_output = invoke(root, "down", "--name", "second")
    assert second_code == 0, second_output
    assert not root.exists()


def test_down_keeps_root_made_by_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    state.create_root(root)
    save_cluster(root, "only", host_count=0)
    code, output = invoke(root, "down", "--name", "only")
    assert code == 0, output
    assert root.is_dir()
    assert list(root.iterdir()) == []
