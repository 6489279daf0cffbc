"""The diff of one node: which ovsdbapp commands make its Open vSwitch tables (a snapshot
of southbound.ovsdb) match its desired NodeState. It builds commands; it never runs them.

Only records marked with external_ids tenantnet-owner=tenantnet are ever removed. A bridge
we create gets the desired state's datapath type (the node's); the datapath type of an
existing bridge is never changed, and a mismatch is logged. A bridge found in order is not
diffed again while neither its desired spec nor its rows change."""

import logging
from typing import NamedTuple

from tenantnet.model import naming
from tenantnet.model.desired import CONTROLLER_OPTIONS
from tenantnet.model.records import OWNER, OWNER_KEY
from tenantnet.errors import SouthboundError

LOG = logging.getLogger(__name__)
OF_PROTOCOLS = ["OpenFlow13"]  # the ONF bundle extension we use rides on OpenFlow 1.3


def datapath_name(value):
    """A Bridge's datapath_type as a name: Open vSwitch reads "" as "system"."""
    return value or "system"


class Plan(NamedTuple):
    """What Planner.plan found: the ovsdbapp commands and a description of each, the
    bridges it diffed, and {bridge: (BridgeSpec, changed_at)} of those it found in order."""
    commands: list
    notes: list
    diffed: list
    in_order: dict


class Planner:
    """Plans one node's changes, and keeps what that needs between reconciles: the bridges
    found in order (not diffed again while unchanged) and the datapath mismatches already
    logged."""

    def __init__(self, node):
        self.node = node
        self._reported = set()        # datapath mismatches already logged
        self._clean = {}              # bridge -> (BridgeSpec, changed_at) found in order

    def forget(self):
        """Diff every bridge again (a new connection: what it missed is unknown)."""
        self._clean = {}

    def remember(self, in_order):
        """Bridges of a Plan's `in_order` whose ports turned out ready: skipped from now on
        while unchanged."""
        self._clean.update(in_order)

    def plan(self, api, desired, snap, node_datapath):
        """The Plan (commands of ovsdbapp *api* and their descriptions) turning *snap* into
        *desired*; a bridge made gets *node_datapath* unless its spec or *desired* names one.

        A bridge that reconcile() found in order (nothing to change, every port with its
        ofport) is remembered with its desired spec and the snapshot's `changed_at` of it:
        while neither changes (the same BridgeSpec object, no row event on the bridge, its
        ports or their interfaces) it is not diffed again. The Plan lists the bridges
        diffed, and those of them that needed no change; reconcile() remembers the latter
        once their ports are ready (`remember`)."""
        cmds, notes = [], []
        changed_at = snap.get("changed_at", {})
        diffed, in_order = [], {}

        def add(cmd, note):
            cmds.append(cmd)
            notes.append(note)

        actual_br = snap["bridges"]
        for br in desired.bridges.values():
            seen = self._clean.get(br.name)
            if seen is not None and seen[0] is br and seen[1] == changed_at.get(br.name) \
                    and br.name in actual_br:
                continue
            diffed.append(br.name)
            before = len(cmds)
            self._plan_bridge_all(api, br, br.datapath_type or desired.datapath or node_datapath,
                                  snap, add)
            self._clean.pop(br.name, None)
            if len(cmds) == before and br.name in changed_at:
                in_order[br.name] = (br, changed_at[br.name])
        for name, have in actual_br.items():
            if have["external_ids"].get(OWNER_KEY) == OWNER and name not in desired.bridges:
                add(api.del_br(name, if_exists=True), f"delete bridge {name}")
        return Plan(cmds, notes, diffed, in_order)

    def _plan_bridge_all(self, api, br, want_dp, snap, add):
        """Plan bridge *br* (to have datapath *want_dp* when it is made): the bridge, its
        ports, and our ports that should leave it."""
        have = snap["bridges"].get(br.name)
        if have is None and br.common:
            raise SouthboundError(
                f"node {self.node} has no common bridge {br.name}: bootstrap the node "
                "first (it creates br-int, br-tun with the transport interface, br-ex)")
        if have is None:
            if want_dp is None:
                raise SouthboundError(
                    f"node {self.node}: cannot create bridge {br.name}: the node's "
                    "datapath type is not known; run `tenantnet node bootstrap "
                    "--datapath system|netdev` on the node first")
            add(api.add_br(br.name, may_exist=True, datapath_type=want_dp),
                f"add bridge {br.name} (datapath {want_dp})")
            have = {"external_ids": {}, "fail_mode": None, "protocols": [],
                    "other_config": {}, "controller": [], "controller_probe": [], "ports": [],
                    "datapath_type": want_dp}
        elif want_dp is not None:
            self._check_datapath(br.name, have, want_dp)
        if br.dpid is not None:          # programmed by us over OpenFlow
            self._plan_bridge(api, br, have, add)
        for port in br.ports.values():
            self._plan_port(api, br, port, snap["ports"], snap["interfaces"], snap, add)
        # Our ports that should no longer be on this bridge.
        for pname in have.get("ports", []):
            ids = snap["ports"][pname]["external_ids"]
            if ids.get(OWNER_KEY) == OWNER and pname not in br.ports:
                add(api.del_port(pname, bridge=br.name, if_exists=True),
                    f"delete port {pname} from {br.name}")

    def _plan_bridge(self, api, br, have, add):
        want_other = {"datapath-id": naming.dpid_str(br.dpid), "disable-in-band": "true"}
        cols = []
        if have["fail_mode"] != "secure":
            cols.append(("fail_mode", "secure"))
        if have["protocols"] != OF_PROTOCOLS:
            cols.append(("protocols", OF_PROTOCOLS))
        if any(have["other_config"].get(k) != v for k, v in want_other.items()):
            cols.append(("other_config", want_other))
        if any(have["external_ids"].get(k) != v for k, v in br.external_ids.items()):
            cols.append(("external_ids", br.external_ids))
        # datapath_type is never set here: changing it rebuilds the bridge in the other
        # datapath (a kernel br-tun would lose the node's transport address).
        if cols:
            add(api.db_set("Bridge", br.name, *cols),
                f"set bridge {br.name} " + ",".join(c for c, _ in cols))
        want_ctl = [br.controller] if br.controller else []
        if have["controller"] != want_ctl:
            add(api.set_controller(br.name, want_ctl), f"set controller of {br.name} to {want_ctl}")
        if want_ctl and (have["controller"] != want_ctl
                         or have.get("controller_options") != [CONTROLLER_OPTIONS]):
            # (found through the bridge: ovsdbapp looks a Controller up by its Bridge)
            add(api.db_set("Controller", br.name, *CONTROLLER_OPTIONS.items()),
                f"set {br.name}'s controller's " + ", ".join(
                    f"{c} to {v} ms" for c, v in CONTROLLER_OPTIONS.items()))

    def _check_datapath(self, bridge, have, want):
        """Log (once per bridge and pair of types) an existing bridge whose datapath type is
        not the node's. It is left as it is: the controller never changes a datapath type."""
        actual = datapath_name(have.get("datapath_type"))
        key = (bridge, actual, want)
        if actual != want and key not in self._reported:
            self._reported.add(key)
            LOG.warning("node %s: bridge %s has datapath_type %s, but the node's datapath is "
                        "%s; leaving it as it is (the controller never changes a bridge's "
                        "datapath type: re-run `tenantnet node bootstrap`, or delete the "
                        "bridge, to change it)", self.node, bridge, actual, want)

    def _plan_port(self, api, br, port, actual_ports, actual_ifaces, snap, add):
        have = actual_ports.get(port.name)
        on_bridge = have is not None and port.name in snap["bridges"].get(br.name, {}).get(
            "ports", [])
        if have is not None and not on_bridge:
            add(api.del_port(port.name, if_exists=True), f"move port {port.name} to {br.name}")
            have = None
        iface_cols = {}
        if have is None:
            attrs = {"external_ids": port.external_ids}
            if port.type:
                attrs["type"] = port.type
            if port.options:
                attrs["options"] = port.options
            add(api.add_port(br.name, port.name, may_exist=False, **attrs),
                f"add port {port.name} to {br.name}")
            iface = {"type": port.type, "options": port.options, "external_ids": port.external_ids}
            have = {"tag": None, "external_ids": {}}
        else:
            iface = actual_ifaces.get(port.name, {"type": "", "options": {}, "external_ids": {}})
        if iface["type"] != port.type:
            iface_cols["type"] = port.type
        if iface["options"] != port.options:
            iface_cols["options"] = port.options
        if any(iface["external_ids"].get(k) != v for k, v in port.external_ids.items()):
            iface_cols["external_ids"] = port.external_ids
        if iface_cols:
            if "options" in iface_cols:
                # db_set merges maps; options must be exactly ours (e.g. a changed remote_ip).
                add(api.db_clear("Interface", port.name, "options"), f"clear options of {port.name}")
            add(api.db_set("Interface", port.name, *iface_cols.items()),
                f"set interface {port.name} " + ",".join(iface_cols))
        port_cols = []
        if have["tag"] != port.tag:
            if port.tag is None:
                add(api.db_clear("Port", port.name, "tag"), f"clear tag of {port.name}")
            else:
                port_cols.append(("tag", port.tag))
        if any(have["external_ids"].get(k) != v for k, v in port.external_ids.items()):
            port_cols.append(("external_ids", port.external_ids))
        if port_cols:
            add(api.db_set("Port", port.name, *port_cols),
                f"set port {port.name} " + ",".join(c for c, _ in port_cols))
