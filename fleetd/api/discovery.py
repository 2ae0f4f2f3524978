"""The API's discovery document, in Google's API discovery format (v1).

Client generators and the original fleetctl read it from
``GET /fleet/v1/discovery``. ``rootUrl`` is the literal ``$ENDPOINT/``,
because the server cannot know under which address the client reached it.
"""

from __future__ import annotations

from typing import Any

_STRING: dict[str, Any] = {"type": "string"}
_PAGE_TOKEN: dict[str, Any] = {
    "type": "string",
    "location": "query",
    "description": "The nextPageToken of the previous page; omit for the first.",
}
_UNIT_NAME: dict[str, Any] = {
    "type": "string",
    "location": "path",
    "required": True,
    "description": "The unit name, such as web.service.",
}


def _list_method(method_id: str, path: str, response: str, **extra: Any) -> Any:
    parameters = {"nextPageToken": _PAGE_TOKEN, **extra}
    return {
        "id": method_id,
        "description": f"List one page of {response[:-4]} entities.",
        "httpMethod": "GET",
        "path": path,
        "parameters": parameters,
        "response": {"$ref": response},
    }


def _schemas() -> dict[str, Any]:
    state_enum = {
        "type": "string",
        "enum": ["inactive", "loaded", "launched"],
    }
    return {
        "Machine": {
            "id": "Machine",
            "type": "object",
            "properties": {
                "id": _STRING,
                "primaryIP": _STRING,
                "metadata": {
                    "type": "object",
                    "additionalProperties": _STRING,
                },
            },
        },
        "MachinePage": {
            "id": "MachinePage",
            "type": "object",
            "properties": {
                "machines": {"type": "array", "items": {"$ref": "Machine"}},
                "nextPageToken": _STRING,
            },
        },
        "UnitOption": {
            "id": "UnitOption",
            "type": "object",
            "properties": {"section": _STRING, "name": _STRING, "value": _STRING},
        },
        "Unit": {
            "id": "Unit",
            "type": "object",
            "properties": {
                "name": _STRING,
                "options": {"type": "array", "items": {"$ref": "UnitOption"}},
                "desiredState": state_enum,
                "currentState": state_enum,
                "machineID": _STRING,
            },
        },
        "UnitPage": {
            "id": "UnitPage",
            "type": "object",
            "properties": {
                "units": {"type": "array", "items": {"$ref": "Unit"}},
                "nextPageToken": _STRING,
            },
        },
        "UnitState": {
            "id": "UnitState",
            "type": "object",
            "properties": {
                "name": _STRING,
                "hash": _STRING,
                "machineID": _STRING,
                "systemdLoadState": _STRING,
                "systemdActiveState": _STRING,
                "systemdSubState": _STRING,
            },
        },
        "UnitStatePage": {
            "id": "UnitStatePage",
            "type": "object",
            "properties": {
                "states": {"type": "array", "items": {"$ref": "UnitState"}},
                "nextPageToken": _STRING,
            },
        },
    }


def _resources() -> dict[str, Any]:
    return {
        "Machines": {
            "methods": {
                "List": _list_method("fleet.Machine.List", "machines", "MachinePage"),
            }
        },
        "Units": {
            "methods": {
                "List": _list_method("fleet.Unit.List", "units", "UnitPage"),
                "Get": {
                    "id": "fleet.Unit.Get",
                    "description": "Return one unit.",
                    "httpMethod": "GET",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _UNIT_NAME},
                    "parameterOrder": ["unitName"],
                    "response": {"$ref": "Unit"},
                },
                "Set": {
                    "id": "fleet.Unit.Set",
                    "description": (
                        "Create or replace a unit, or set its desired state."
                    ),
                    "httpMethod": "PUT",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _UNIT_NAME},
                    "parameterOrder": ["unitName"],
                    "request": {"$ref": "Unit"},
                },
                "Delete": {
                    "id": "fleet.Unit.Delete",
                    "description": "Remove a unit from the cluster.",
                    "httpMethod": "DELETE",
                    "path": "units/{unitName}",
                    "parameters": {"unitName": _UNIT_NAME},
                    "parameterOrder": ["unitName"],
                },
            }
        },
        "UnitState": {
            "methods": {
                "List": _list_method(
                    "fleet.UnitState.List",
                    "state",
                    "UnitStatePage",
                    machineID={"type": "string", "location": "query"},
                    unitName={"type": "string", "location": "query"},
                ),
            }
        },
    }


def discovery_document() -> dict[str, Any]:
    """Return the discovery document of API v1."""
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "fleet:v1",
        "name": "fleet",
        "version": "v1",
        "title": "fleet API",
        "description": "Schedule systemd units across the machines of a cluster.",
        "protocol": "rest",
        "rootUrl": "$ENDPOINT/",
        "servicePath": "fleet/v1/",
        "parameters": {},
        "schemas": _schemas(),
        "resources": _resources(),
    }
