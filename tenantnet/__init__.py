"""tenantnet: tenant-dedicated Open vSwitch building blocks, driven by an os-ken controller."""

__version__ = "0.1.0"

import warnings

# The `ovs` library imports eventlet when it is installed (os-ken pulls it in) and eventlet
# warns on import; tenantnet runs on native threads and never uses it.
warnings.filterwarnings("ignore", message="Eventlet is deprecated")
