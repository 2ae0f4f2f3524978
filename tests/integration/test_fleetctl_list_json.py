"""``--output json`` of the list commands over both drivers, on a real etcd."""

# The fixtures come from other test modules, so the test functions'
# parameters redefine those imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetd.model import DesiredState
from fleetd.registry.etcd import EtcdRegistry
from fleetd.unit import UnitFile
from tests.integration.test_api import (
    MACHINE as API_MACHINE,
)
from tests.integration.test_api import (  # noqa: F401
    Api,
    api,
    certificates,
    ready_api,
)
from tests.integration.test_fleetctl import (  # noqa: F401
    MACHINE,
    WEB,
    Fleetctl,
    fleetctl,
    publish,
    registry,
)
from tests.integration.test_fleetctl_api import fleetctl as fleetctl_api
from tests.integration.test_fleetctl_api import place

pytestmark = pytest.mark.integration


async def test_list_json_over_etcd(fleetctl: Fleetctl, registry: EtcdRegistry) -> None:
    assert await registry.create_unit("web.service", WEB, DesiredState.LAUNCHED)
    await publish(registry, "web.service", "launched")
    unit_hash = UnitFile.parse(WEB).hash()

    machines = fleetctl.run("list-machines", "--output=json")
    assert machines.returncode == 0, machines.stderr
    assert json.loads(machines.stdout) == [
        {"machine": MACHINE, "ip": "127.0.0.5", "metadata": {"role": "web"}}
    ]

    units = fleetctl.run("list-units", "--output=json")
    assert units.returncode == 0, units.stderr
    assert json.loads(units.stdout) == [
        {
            "unit": "web.service",
            "machine": f"{MACHINE}/127.0.0.5",
            "active": "active",
            "sub": "running",
            "load": "loaded",
            "hash": unit_hash,
        }
    ]

    files = fleetctl.run("list-unit-files", "--output=json", "--fields=unit,state")
    assert files.returncode == 0, files.stderr
    assert json.loads(files.stdout) == [{"unit": "web.service", "state": "launched"}]


async def test_list_json_over_api(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    (tmp_path / "web.service").write_text(WEB)
    started = await fleetctl_api(
        tmp_path, "start", "--no-block", "web.service", endpoint=endpoint
    )
    assert started.returncode == 0, started.stderr
    await place(ready_api, "web.service", API_MACHINE, "launched")

    machines = await fleetctl_api(
        tmp_path, "list-machines", "--output=json", endpoint=endpoint
    )
    assert machines.returncode == 0, machines.stderr
    assert json.loads(machines.stdout) == [
        {"machine": API_MACHINE, "ip": "127.0.0.1", "metadata": {"role": "web"}}
    ]

    units = await fleetctl_api(
        tmp_path,
        "list-units",
        "--output=json",
        "--fields=unit,machine,sub",
        endpoint=endpoint,
    )
    assert units.returncode == 0, units.stderr
    assert json.loads(units.stdout) == [
        {
            "unit": "web.service",
            "machine": f"{API_MACHINE}/127.0.0.1",
            "sub": "running",
        }
    ]

    files = await fleetctl_api(
        tmp_path,
        "list-unit-files",
        "--output=json",
        "--fields=unit,dstate,global",
        endpoint=endpoint,
    )
    assert files.returncode == 0, files.stderr
    assert json.loads(files.stdout) == [
        {"unit": "web.service", "dstate": "launched", "global": False}
    ]
