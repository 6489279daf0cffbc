"""Southbound: make the switches hold the desired state.

ovsdb (ovsdbapp transactions against a node's Open vSwitch database), ofctl (flow data
-> OpenFlow 1.3 messages, the sync plan) and ofswitch (connected datapaths, dumps,
bundles). Nothing here decides what should exist.

Only this package imports python-ovs (`ovs`, also through ovsdbapp). Its poller imports
eventlet when eventlet is installed (os-ken's requirements pull it in), only to find out
whether eventlet has patched `select`: that import costs 0.2 s of every controller start
and prints eventlet's deprecation warning. tenantnet runs on native threads, so the poller
is imported here, first, with eventlet hidden; where eventlet is already in use in the
process (an app under the real Ryu), it is left as it is."""

import sys

if "eventlet" not in sys.modules and "ovs.poller" not in sys.modules:
    sys.modules["eventlet"] = None        # `import eventlet` raises ImportError meanwhile
    try:
        import ovs.poller  # noqa: F401 -- imported for python-ovs, without eventlet
    finally:
        del sys.modules["eventlet"]
