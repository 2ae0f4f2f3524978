"""The API's cached list pages: the same bytes until the registry changes.

The API server runs in the test's event loop on a real etcd (the fixtures of
test_api), with two items per page.
"""

# The fixtures api, ready_api and certificates come from test_api, so the
# test functions' parameters redefine those imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from fleetd.model import DesiredState, UnitState
from fleetd.registry import view as keys
from fleetd.unit import UnitFile
from tests.integration.test_api import (  # noqa: F401
    MACHINE,
    Api,
    api,
    certificates,
    ready_api,
)

pytestmark = pytest.mark.integration

UNIT_FILE = UnitFile.parse("[Service]\nExecStart=/bin/sleep 100\n")
SECOND_PAGE = "AgACAA=="


async def create(api: Api, name: str) -> None:
    raw, unit_hash = UNIT_FILE.serialize(), UNIT_FILE.hash()
    backend = api.server.backend
    assert await backend.create_unit(name, raw, unit_hash, DesiredState.INACTIVE)


async def names_on_page(api: Api, path: str, token: str = "") -> list[str]:
    suffix = f"?nextPageToken={token}" if token else ""
    reply = await api.call("GET", f"/fleet/v1/{path}{suffix}")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    body = reply.json()
    field = "states" if path.startswith("state") else path
    return [item["name"] for item in body.get(field, [])]


async def test_pages_follow_registry_changes(ready_api: Api) -> None:
    for name in ("a.service", "c.service", "d.service"):
        await create(ready_api, name)
    first = await ready_api.call("GET", "/fleet/v1/units")
    again = await ready_api.call("GET", "/fleet/v1/units")
    assert again.body == first.body
    assert await names_on_page(ready_api, "units") == ["a.service", "c.service"]
    assert await names_on_page(ready_api, "units", SECOND_PAGE) == ["d.service"]

    await create(ready_api, "b.service")

    assert await names_on_page(ready_api, "units") == ["a.service", "b.service"]
    assert await names_on_page(ready_api, "units", SECOND_PAGE) == [
        "c.service",
        "d.service",
    ]


async def test_filtered_states_are_not_cached(ready_api: Api) -> None:
    for name in ("a.service", "b.service", "c.service"):
        state = UnitState(name, MACHINE, "abc", "loaded", "active", "running")
        await ready_api.registry.put(
            keys.state_key(name, MACHINE), keys.encode_state(state)
        )
    backend = ready_api.server.backend
    await backend._until(lambda view: len(view.states) == 3, "three states")

    assert await names_on_page(ready_api, "state") == ["a.service", "b.service"]
    filtered = await names_on_page(ready_api, "state?unitName=c.service")
    assert filtered == ["c.service"]
    assert await names_on_page(ready_api, "state") == ["a.service", "b.service"]
