"""Settings of one run that change what the keys plan, shared by the modules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    """Options from the command line that the key modules read.

    ``ssh_user`` receives the top-level ``ssh_authorized_keys`` (CoreOS used
    its ``core`` user). ``fleetd`` is the fleetd executable that
    fleet.service runs; None keeps the ExecStart of the installed unit.
    """

    ssh_user: str = "core"
    fleetd: str | None = None
