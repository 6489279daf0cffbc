"""tenantnet: tenant-dedicated Open vSwitch building blocks, driven by an os-ken controller."""

__version__ = "0.1.0"
