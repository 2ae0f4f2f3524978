"""The API's resources: units, unit states, machines and the discovery document.

Each handler takes a parsed request and returns a ``Reply``; routing, the
503 gate and headers are in ``server``. Status codes and error messages are
the original's, listed in docs/api.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetd.api.backend import ApiBackend
from fleetd.api.discovery import discovery_document
from fleetd.api.pagination import PageTokenError, page_of, token_from_query
from fleetd.api.schema import (
    JSONObject,
    SchemaError,
    UnitRequest,
    parse_metadata_patch,
    parse_unit_request,
)
from fleetd.errors import UnitFileError, UnitNameError
from fleetd.model import DesiredState
from fleetd.rules import validate_options
from fleetd.unit import UnitNameInfo, validate_unit_name

# The maximum number of operations in one machines PATCH. They are written in
# one etcd transaction, and etcd allows 128 operations per transaction by default.
MAX_METADATA_OPERATIONS = 128


@dataclass(frozen=True)
class Reply:
    """An HTTP response: a status, a JSON body (None for no body) and headers.

    ``encoded`` is the body already encoded as compact JSON, sent as is in
    place of ``body`` when it is not None.
    """

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    encoded: bytes | None = None


class HttpError(Exception):
    """A request that fails with ``status``; ``message`` goes in the error body."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_body(status: int, message: str) -> JSONObject:
    return {"error": {"code": status, "message": message}}


@dataclass(frozen=True)
class ApiRequest:
    """The parts of an HTTP request that a handler uses."""

    method: str
    query: Mapping[str, Sequence[str]]
    content_types: Sequence[str] = ()
    body: bytes = b""
    # ``If-None-Match: *`` on a PUT: create the unit only if it does not exist
    # (412 otherwise). The original had no such header; fleetctl uses it so
    # that two clients submitting the same name cannot replace each other.
    create_only: bool = False


def _method_not_allowed(allowed: Sequence[str]) -> HttpError:
    if len(allowed) == 1:
        names = allowed[0]
    else:
        names = ", ".join(allowed[:-1]) + " and " + allowed[-1]
    return HttpError(
        405, f"only {names} supported against this resource", Allow=", ".join(allowed)
    )


def _page(
    backend: ApiBackend,
    request: ApiRequest,
    items: Sequence[JSONObject],
    name: str,
    *,
    cached: bool = True,
) -> Reply:
    """Reply with the page of ``items`` that the request's token names.

    With ``cached``, ``items`` must be the backend's list ``name`` for the
    mirror's current contents: its encoded pages are kept until they change.
    """
    try:
        token = token_from_query(
            request.query.get("nextPageToken", ()), backend.token_limit
        )
    except PageTokenError as err:
        raise HttpError(400, str(err)) from err

    def encode() -> bytes:
        page, next_token = page_of(items, token)
        body: JSONObject = {}
        if page:
            body[name] = list(page)
        if next_token is not None:
            body["nextPageToken"] = next_token
        return json.dumps(body, separators=(",", ":")).encode()

    if not cached:
        return Reply(200, encoded=encode())
    return Reply(200, encoded=backend.encoded_page(name, token.page, encode))


def _decode_json(request: ApiRequest) -> Any:
    try:
        return json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HttpError(400, f"invalid JSON in request body: {err}") from err


# -- discovery ----------------------------------------------------------------


def discovery(backend: ApiBackend, request: ApiRequest) -> Reply:
    if request.method != "GET":
        # The original returned 400 for other methods, not 405.
        raise HttpError(400, "only GET supported against this resource")
    return Reply(200, discovery_document())


# -- machines -----------------------------------------------------------------


async def machines(backend: ApiBackend, request: ApiRequest) -> Reply:
    if request.method == "GET":
        return _page(backend, request, backend.machines(), "machines")
    if request.method == "PATCH":
        try:
            operations = parse_metadata_patch(_decode_json(request))
        except SchemaError as err:
            raise HttpError(400, str(err)) from err
        if len(operations) > MAX_METADATA_OPERATIONS:
            raise HttpError(
                400,
                f"too many operations ({len(operations)}); send at most "
                f"{MAX_METADATA_OPERATIONS} per request",
            )
        for op in operations:
            if not backend.knows_machine(op.machine_id):
                raise HttpError(
                    400,
                    f"unknown machine {op.machine_id!r}: no live machine has this "
                    "ID; list the machines with GET /fleet/v1/machines",
                )
        if operations:
            await backend.set_metadata(operations)
        return Reply(204)
    raise _method_not_allowed(["GET", "PATCH"])


# -- units --------------------------------------------------------------------


def units(backend: ApiBackend, request: ApiRequest) -> Reply:
    if request.method != "GET":
        raise _method_not_allowed(["GET"])
    return _page(backend, request, backend.units(), "units")


async def unit(backend: ApiBackend, request: ApiRequest, name: str) -> Reply:
    if request.method == "GET":
        found = backend.unit(name)
        if found is None:
            raise HttpError(404, "unit does not exist")
        return Reply(200, found)
    if request.method == "DELETE":
        if not await backend.destroy_unit(name):
            raise HttpError(404, "unit does not exist")
        return Reply(204)
    if request.method == "PUT":
        return await _put_unit(backend, request, name)
    raise _method_not_allowed(["GET", "PUT", "DELETE"])


def _check_content_type(request: ApiRequest) -> None:
    types = list(request.content_types)
    media = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else ""
    if media != "application/json":
        shown = ", ".join(repr(t) for t in types) or "none"
        raise HttpError(
            415,
            f"expected exactly one Content-Type of application/json, got {shown}",
        )


def _desired_state(value: str, name: str) -> DesiredState:
    try:
        return DesiredState(value)
    except ValueError as err:
        raise HttpError(
            400,
            f"invalid desiredState {value!r} for unit {name}: use inactive, loaded "
            "or launched",
        ) from err


def _check_not_template(name: str, desired: DesiredState) -> None:
    info = UnitNameInfo.from_name(name)
    if info is not None and info.is_template and desired is not DesiredState.INACTIVE:
        raise HttpError(
            400,
            f"unable to activate template unit {name!r}: only its instances, such "
            f"as {info.prefix}@1.{info.suffix}, may be {desired}",
        )


async def _put_unit(backend: ApiBackend, request: ApiRequest, name: str) -> Reply:
    _check_content_type(request)
    try:
        body = parse_unit_request(_decode_json(request))
    except SchemaError as err:
        raise HttpError(400, f"invalid Unit in request body: {err}") from err
    if body.name and body.name != name:
        raise HttpError(
            400,
            f"name in URL {name!r} differs from unit name in request body "
            f"{body.name!r}",
        )
    try:
        validate_unit_name(name)
    except UnitNameError as err:
        raise HttpError(400, str(err)) from err

    existing = backend.unit_file(name)
    if request.create_only and existing is not None:
        raise HttpError(412, f"unit {name} exists already")
    if body.options:
        unit_file = body.unit_file()
        if existing is None or existing[0] != unit_file.hash():
            return await _store_unit(backend, request, name, body, existing is None)
    if existing is None:
        raise HttpError(409, "unit does not exist and options field empty")
    if not body.desired_state:
        raise HttpError(409, "must provide DesiredState to update existing unit")
    desired = _desired_state(body.desired_state, name)
    _check_not_template(name, desired)
    if not await backend.set_desired_state(name, desired):
        # Destroyed between the read and the write.
        raise HttpError(409, "unit does not exist and options field empty")
    return Reply(204)


async def _store_unit(
    backend: ApiBackend, request: ApiRequest, name: str, body: UnitRequest, new: bool
) -> Reply:
    desired = _desired_state(body.desired_state or DesiredState.INACTIVE.value, name)
    _check_not_template(name, desired)
    unit_file = body.unit_file()
    try:
        validate_options(name, unit_file)
    except UnitFileError as err:
        raise HttpError(400, f"invalid unit options: {err}") from err
    raw = unit_file.serialize()
    if new or request.create_only:
        created = await backend.create_unit(name, raw, unit_file.hash(), desired)
        if not created:
            raise HttpError(412, f"unit {name} exists already")
    else:
        await backend.replace_unit(name, raw, unit_file.hash(), desired)
    return Reply(201)


# -- unit states --------------------------------------------------------------


def states(backend: ApiBackend, request: ApiRequest) -> Reply:
    if request.method != "GET":
        raise _method_not_allowed(["GET"])
    items = backend.unit_states()
    machine_filter = request.query.get("machineID", ())
    unit_filter = request.query.get("unitName", ())
    if machine_filter:
        items = [s for s in items if s.get("machineID", "") == machine_filter[0]]
    if unit_filter:
        items = [s for s in items if s.get("name", "") == unit_filter[0]]
    filtered = bool(machine_filter or unit_filter)
    return _page(backend, request, items, "states", cached=not filtered)


def state(backend: ApiBackend, request: ApiRequest, name: str) -> Reply:
    if request.method != "GET":
        raise _method_not_allowed(["GET"])
    found = backend.unit_state(name)
    if found is None:
        raise HttpError(404, "unit state does not exist")
    return Reply(200, found)
