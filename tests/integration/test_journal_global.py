"""The journal resource and fleetctl journal for a global unit, over the API.

The API server runs in the test's event loop on a real etcd (the fixtures of
test_api). The global unit publishes a state on the API's own machine and on
a second machine whose fleetd is a peer server on loopback.
"""

# The fixtures come from test_api, so the test functions' parameters
# redefine those imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from fleetd.model import Machine, UnitState
from fleetd.peer import PeerServer
from fleetd.registry import view as keys
from fleetd.unit import UnitFile
from tests.integration.test_api import (  # noqa: F401
    MACHINE,
    OTHER,
    Api,
    api,
    certificates,
    ready_api,
)
from tests.integration.test_fleetctl import free_port
from tests.integration.test_fleetctl_api import FLEETCTL, WEB, fleetctl

pytestmark = pytest.mark.integration

GLOBAL = WEB + "\n[X-Fleet]\nGlobal=true\n"


async def publish_on(api: Api, machine_id: str) -> None:
    """Write the state that the agent of ``machine_id`` writes for g.service."""
    state = UnitState(
        "g.service",
        machine_id,
        UnitFile.parse(GLOBAL).hash(),
        "loaded",
        "active",
        "running",
        "launched",
    )
    await api.registry.put(
        keys.state_key("g.service", machine_id), keys.encode_state(state)
    )


def headings(output: str) -> list[str]:
    return re.findall(r"^Machine ([0-9a-f]{32})(?: \([0-9.]+\))?:$", output, re.M)


async def test_journal_of_global_unit(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    secret = await ready_api.registry.cluster_secret()
    port = free_port()
    peer = PeerServer(secret, "127.0.0.1", port)
    await peer.start()
    try:
        other = Machine(OTHER, "127.0.0.1", {}, peer_port=port)
        await ready_api.registry.put(
            keys.machine_key(OTHER), keys.encode_machine(other)
        )
        (tmp_path / "g.service").write_text(GLOBAL)
        started = await fleetctl(
            tmp_path, "start", "--no-block", "g.service", endpoint=endpoint
        )
        assert started.returncode == 0, started.stderr
        await publish_on(ready_api, MACHINE)
        await publish_on(ready_api, OTHER)
        backend = ready_api.server.backend
        await backend._until(
            lambda view: (
                len(view.states.get("g.service", {})) == 2 and OTHER in view.machines
            ),
            "g.service states from two machines",
        )

        # The resource needs machineID for a global unit.
        path = "/fleet/v1/units/g.service/journal"
        missing = await ready_api.call("GET", path)
        assert missing.status == 400
        assert "give machineID=<id>" in missing.json()["error"]["message"]
        unknown = await ready_api.call("GET", f"{path}?machineID={'f' * 32}")
        assert unknown.status == 404
        one = await ready_api.call("GET", f"{path}?machineID={OTHER}&output=cat")
        assert one.status == 200, one.body

        # fleetctl prints one section per machine, in machine ID order.
        journal = await fleetctl(
            tmp_path, "journal", "--lines=3", "g.service", endpoint=endpoint
        )
        assert journal.returncode == 0, journal.stderr
        assert headings(journal.stdout) == [OTHER, MACHINE]
        assert journal.stdout.count("\n\nMachine ") == 1

        # -f needs one machine.
        follow = await fleetctl(
            tmp_path, "journal", "-f", "g.service", endpoint=endpoint
        )
        assert follow.returncode == 2
        assert "--machine ID" in follow.stderr

        # With --machine, -f prints that machine's heading and keeps streaming.
        process = await asyncio.create_subprocess_exec(
            FLEETCTL,
            "journal",
            "-f",
            f"--machine={MACHINE[:6]}",
            "g.service",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
            env={
                **{
                    key: value
                    for key, value in os.environ.items()
                    if not key.startswith("FLEETCTL_")
                },
                "FLEETCTL_ENDPOINT": endpoint,
            },
        )
        try:
            assert process.stdout is not None
            first = await asyncio.wait_for(process.stdout.readline(), 60)
            assert first.decode() == f"Machine {MACHINE} (127.0.0.1):\n"
            assert process.returncode is None
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()
    finally:
        await peer.close()


async def test_journal_without_journalctl_is_an_error(
    ready_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    (tmp_path / "g.service").write_text(GLOBAL)
    started = await fleetctl(
        tmp_path, "start", "--no-block", "g.service", endpoint=endpoint
    )
    assert started.returncode == 0, started.stderr
    await publish_on(ready_api, MACHINE)
    await ready_api.server.backend._until(
        lambda view: MACHINE in view.states.get("g.service", {}),
        "g.service state from this machine",
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)

    reply = await ready_api.call(
        "GET", f"/fleet/v1/units/g.service/journal?machineID={MACHINE}"
    )

    assert reply.status == 500
    assert "journalctl is not installed" in reply.json()["error"]["message"]
