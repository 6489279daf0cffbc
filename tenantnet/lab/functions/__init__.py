"""Network functions in the lab: one small class per kind, one file per class.

A function is a lab endpoint (a namespace on a veth, like a VM) with IP forwarding on; its
kind adds what it does to the traffic it forwards. A new kind is one module here with one
subclass of base.NetworkFunction (found by `kinds()`), plus its keys in
model.config.FUNCTION_KINDS, which the controller validates."""

from tenantnet.lab.functions.base import NetworkFunction, for_function, kinds

__all__ = ["NetworkFunction", "for_function", "kinds"]
