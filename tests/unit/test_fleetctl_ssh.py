"""fleetctl ssh's target lookup, the ssh command line, fd-forward and completion."""

from __future__ import annotations

import os
import socket
import threading

import click
import pytest
from click.testing import CliRunner

from fleetctl.cli import cli
from fleetctl.commands.fdforward import proxy
from fleetctl.commands.ssh import (
    LOOKUP_MACHINE,
    LOOKUP_UNIT,
    resolve_target,
)
from fleetctl.tunnel import SSHOptions, local_shell, split_host_port, ssh_argv
from fleetd.errors import FleetError
from fleetd.model import DesiredState, Machine, Unit

FIRST = Machine("abc1" + "0" * 28, "127.0.0.11")
SECOND = Machine("abc2" + "0" * 28, "127.0.0.12")
THIRD = Machine("def3" + "0" * 28, "127.0.0.13")
MACHINES = [FIRST, SECOND, THIRD]


def unit(
    name: str, machine_id: str = "", state: str = "launched", raw: str = ""
) -> Unit:
    return Unit(
        name=name,
        hash="",
        raw=raw or "[Service]\nExecStart=/bin/true\n",
        desired_state=DesiredState.LAUNCHED,
        machine_id=machine_id,
        current_state=state,
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("host", ("host", 22)),
        ("host:2222", ("host", 2222)),
        ("127.0.0.1:22", ("127.0.0.1", 22)),
        ("[::1]:2200", ("::1", 2200)),
        ("[::1]", ("::1", 22)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    "address", ["", ":22", "host:0", "host:x", "host:70000", "[::1"]
)
def test_split_host_port_invalid(address: str) -> None:
    with pytest.raises(FleetError, match="invalid"):
        split_host_port(address)


def test_ssh_argv_strict(tmp_path: os.PathLike[str]) -> None:
    known = os.path.join(tmp_path, "sub", "known_hosts")
    options = SSHOptions(username="root", known_hosts_file=known, timeout=2.5)
    argv = ssh_argv(options, "127.0.0.12", 2222, command=["ls", "-l"])
    assert argv[:5] == ["ssh", "-p", "2222", "-l", "root"]
    assert "ConnectTimeout=3" in argv
    assert "StrictHostKeyChecking=ask" in argv
    assert f"UserKnownHostsFile={known}" in argv
    assert os.path.isdir(os.path.dirname(known))
    assert argv[-4:] == ["127.0.0.12", "--", "ls", "-l"]
    assert "-A" not in argv
    assert "-J" not in argv


def test_ssh_argv_options() -> None:
    options = SSHOptions(
        strict_host_key_checking=False,
        forward_agent=True,
        tunnel="10.0.0.1:2200",
        timeout=0,
    )
    argv = ssh_argv(options, "10.0.0.2", 22)
    assert "StrictHostKeyChecking=no" in argv
    assert "UserKnownHostsFile=/dev/null" in argv
    assert "-A" in argv
    assert argv[argv.index("-J") + 1] == "core@10.0.0.1:2200"
    assert not any(word.startswith("ConnectTimeout") for word in argv)
    assert argv[-1] == "10.0.0.2"


def test_local_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/bash")
    assert local_shell([]) == ["/bin/bash", "-l"]
    assert local_shell(["echo", "a b"]) == ["/bin/bash", "-c", "echo a b"]


def test_target_machine_prefix() -> None:
    assert resolve_target("def", "", [], MACHINES) is THIRD
    assert resolve_target("abc1", LOOKUP_MACHINE, [], MACHINES) is FIRST


def test_target_several_machines() -> None:
    with pytest.raises(click.ClickException, match="more than one machine"):
        resolve_target("abc", "", [], MACHINES)


def test_target_unit() -> None:
    units = [unit("web.service", SECOND.id)]
    assert resolve_target("web", "", units, MACHINES) is SECOND
    assert resolve_target("web.service", LOOKUP_UNIT, units, MACHINES) is SECOND


def test_target_ambiguous() -> None:
    units = [unit("def3.service", FIRST.id)]
    with pytest.raises(click.ClickException, match="ambiguous argument 'def3'"):
        resolve_target("def3", "", units, MACHINES)
    assert resolve_target("def3", LOOKUP_MACHINE, units, MACHINES) is THIRD
    assert resolve_target("def3", LOOKUP_UNIT, units, MACHINES) is FIRST


def test_target_stopped_unit_and_machine() -> None:
    units = [unit("def3.service", "", state="inactive")]
    assert resolve_target("def3", "", units, MACHINES) is THIRD
    with pytest.raises(click.ClickException, match="not appear to be running"):
        resolve_target("def3", LOOKUP_UNIT, units, MACHINES)


def test_target_unit_problems() -> None:
    global_unit = unit(
        "all.service", raw="[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"
    )
    departed = unit("gone.service", "f" * 32)
    units = [global_unit, departed]
    with pytest.raises(click.ClickException, match="is global"):
        resolve_target("all", "", units, MACHINES)
    with pytest.raises(click.ClickException, match="has left the cluster"):
        resolve_target("gone", "", units, MACHINES)


def test_target_not_found() -> None:
    with pytest.raises(click.ClickException, match="no machine or unit matches 'zzz'"):
        resolve_target("zzz", "", [], MACHINES)
    with pytest.raises(click.ClickException, match="no unit matches 'abc1'"):
        resolve_target("abc1", LOOKUP_UNIT, [], MACHINES)


def test_proxy_copies_both_ways() -> None:
    client, server = socket.socketpair()
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()

    def serve() -> None:
        request = server.recv(100)
        server.sendall(b"reply to " + request)
        server.close()

    thread = threading.Thread(target=serve)
    thread.start()
    os.write(stdin_write, b"ping")
    os.close(stdin_write)
    proxy(stdin_read, stdout_write, client, drain=5.0)
    thread.join()
    client.close()
    with os.fdopen(stdout_read, "rb") as stdout:
        assert stdout.read() == b"reply to ping"


def test_proxy_stops_after_quiet_drain() -> None:
    client, server = socket.socketpair()
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    os.close(stdin_write)
    # The server never replies nor closes, so only the drain ends the proxy.
    proxy(stdin_read, stdout_write, client, drain=0.1)
    client.close()
    server.close()
    with os.fdopen(stdout_read, "rb") as stdout:
        assert stdout.read() == b""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert "_FLEETCTL_COMPLETE" in result.output


def test_completion_unknown_shell() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2
