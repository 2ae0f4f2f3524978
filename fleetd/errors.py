"""The exception root of fleetd and fleetctl."""


class FleetError(Exception):
    """Root of every error raised on purpose by fleetd and fleetctl."""


class RegistryError(FleetError):
    """etcd could not be reached or rejected an operation.

    The message names the operation and the cause.
    """


class UnitFileError(FleetError, ValueError):
    """A unit file that does not parse or breaks a rule; the message names where."""


class UnitNameError(FleetError, ValueError):
    """An invalid unit name; the message names the rule it breaks."""


class SystemdError(FleetError):
    """A D-Bus call to systemd failed; carries the method, unit and reply."""


class ClusterError(FleetError):
    """A test host, local etcd server or local cluster failed to start or stop."""


class ApiError(FleetError):
    """A fleet API request that failed with an HTTP error, whose code is ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CloudConfigError(FleetError):
    """A cloud-config could not be read or applied, or discovery setup failed."""
