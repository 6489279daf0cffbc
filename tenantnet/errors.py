"""Errors that tenantnet reports to users as one clear line (never a traceback)."""


class TenantnetError(Exception):
    """Base class: str(err) is the message shown to the user."""


class ConfigError(TenantnetError):
    """Bad input: names the source (file or API), the key path and the problem."""

    def __init__(self, source, key, problem):
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + problem)


class PlacementError(TenantnetError):
    """A placement request that cannot be carried out (nothing was changed).

    *status* is the HTTP status the API answers with (404 unknown VM, 409 conflict)."""

    def __init__(self, message, status=409):
        self.status = status
        super().__init__(message)


class SouthboundError(TenantnetError):
    """OVSDB or OpenFlow refused or timed out."""


class LabError(TenantnetError):
    """The one-machine lab could not be built or inspected."""


class VmError(TenantnetError):
    """A node VM could not be started, reached or stopped (tenantnet.vm)."""


class ApiError(TenantnetError):
    """An error answer from the controller's HTTP API, or no answer at all.

    status is the HTTP status code, or 0 when no controller could be reached (nothing
    listening, socket missing, timeout, connection dropped); str(err) is the message."""

    def __init__(self, status, message):
        self.status = status
        self.message = message
        super().__init__(message)
