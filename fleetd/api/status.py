"""``GET /fleet/v1/units/<name>/status``: systemctl status of a unit, anywhere.

This resource is not in the original API. It lets fleetctl's API driver show
``systemctl status`` of a unit with no access to etcd and no SSH. The local
fleetd runs systemctl for a unit on its own machine, and requests the status
from the fleetd of any other machine over the signed peer channel.

The reply for a unit placed on one machine is one object
``{"machineID", "exitCode", "output"}``, or a 502 error when the machine
cannot be reached. For a global unit it is a list of such objects, one per
live machine that publishes a state for the unit. A machine that cannot be
reached still gets its object, with ``"error"`` saying why, ``"exitCode"``
1 and an empty ``"output"``, so one dead machine does not hide the others.
``?machineID=<id>`` limits the reply to that machine.
"""

from __future__ import annotations

import asyncio
import logging

from fleetd.api.backend import ApiBackend
from fleetd.api.resources import ApiRequest, HttpError, Reply
from fleetd.api.schema import JSONObject
from fleetd.model import DesiredState, Machine
from fleetd.peer import fetch_status, run_systemctl_status

log = logging.getLogger(__name__)

PEER_TIMEOUT = 10.0


def status_machines(
    backend: ApiBackend, name: str, machine_id: str
) -> tuple[bool, list[Machine]]:
    """Return whether ``name`` is global and the machines to run status on.

    Raises HttpError 404 for an unknown unit or a ``machine_id`` that does
    not run it, and 409 for a unit that is not loaded on any live machine.
    """
    view = backend.view
    unit = view.unit(name)
    if unit is None:
        raise HttpError(404, "unit does not exist")
    is_global = backend.parsed_file(unit.name, unit.hash, unit.raw).is_global
    if is_global:
        published = view.states.get(name, {})
        ids = sorted(id_ for id_ in published if id_ in view.machines)
    elif unit.machine_id and unit.current_state != DesiredState.INACTIVE:
        ids = [unit.machine_id]
    else:
        ids = []
    if not ids:
        raise HttpError(
            409,
            f"unit {name} does not appear to be loaded; load it with "
            f"`fleetctl load {name}`",
        )
    if machine_id:
        if machine_id not in ids:
            raise HttpError(404, f"unit {name} is not loaded on machine {machine_id}")
        ids = [machine_id]
    machines = []
    for id_ in ids:
        machine = view.machines.get(id_)
        if machine is None:
            raise HttpError(
                409,
                f"machine {id_} of unit {name} has left the cluster; "
                "wait for the unit to be rescheduled",
            )
        machines.append(machine)
    return is_global, machines


async def machine_status(
    backend: ApiBackend, machine: Machine, name: str
) -> JSONObject:
    """Run systemctl status for ``name`` on ``machine``; raise HttpError 502 if not."""
    try:
        if machine.id == backend.machine_id:
            code, output = await run_systemctl_status(name)
        else:
            secret = await backend.registry.cluster_secret()
            code, output = await fetch_status(
                machine, name, secret=secret, timeout=PEER_TIMEOUT
            )
    except (OSError, TimeoutError) as err:
        where = f"{machine.public_ip}:{machine.peer_port}"
        log.warning("status of unit %s on machine %s failed: %s", name, machine.id, err)
        raise HttpError(
            502,
            f"cannot run systemctl status {name} on machine {machine.id} "
            f"at {where}: {err or type(err).__name__}; check that fleetd runs "
            "there and its peer port is reachable",
        ) from err
    return {
        "machineID": machine.id,
        "exitCode": code,
        "output": output.decode(errors="replace"),
    }


async def unit_status(backend: ApiBackend, request: ApiRequest, name: str) -> Reply:
    """Serve ``GET units/<name>/status[?machineID=<id>]``; 405 for other methods."""
    if request.method != "GET":
        raise HttpError(405, "only GET supported against this resource", Allow="GET")
    machine_id = (request.query.get("machineID") or [""])[0]
    is_global, machines = status_machines(backend, name, machine_id)
    if not is_global:
        return Reply(200, await machine_status(backend, machines[0], name))
    replies = await asyncio.gather(
        *(_global_machine_status(backend, machine, name) for machine in machines)
    )
    return Reply(200, list(replies))


async def _global_machine_status(
    backend: ApiBackend, machine: Machine, name: str
) -> JSONObject:
    """Run ``machine_status``; turn its 502 into an entry with ``error``."""
    try:
        return await machine_status(backend, machine, name)
    except HttpError as err:
        # machine_status has logged the failure.
        return {
            "machineID": machine.id,
            "exitCode": 1,
            "output": "",
            "error": err.message,
        }
