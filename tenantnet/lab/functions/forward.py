"""`forward`: plain IP forwarding, nothing else (the base class's behaviour)."""

from tenantnet.lab.functions.base import NetworkFunction


class Forward(NetworkFunction):
    kind = "forward"
