"""A tenant's own controller: `tenantnet controller --tenant NAME --api URL --token T`.

The provider does the OVSDB work (bridges, patch ports, ex- endpoints, tunnels, VM ports)
and points the tenant's brint-/brtun- bridges at this controller. This controller reads the
tenant's placement from the provider's API (with the tenant's credential: it sees only its
own networks and VMs) and installs the same Table I rules, computed by the same code
(tenantnet.model.flows), on those bridges. Port numbers come from the switches themselves
(OpenFlow port description), since a tenant has no OVSDB access.

It keeps working when the provider's controller is down: the bridges keep their flows
(fail_mode=secure), a reconnecting bridge is served from the last placement it read, and
it picks up placement changes again once the API answers."""

import json
import logging
import os
import threading

from tenantnet.model import naming
from tenantnet.controller import wire
from tenantnet.controller.client import ApiClient
from tenantnet.controller.ofapp import guarded
from tenantnet.errors import TenantnetError
from tenantnet.model.flows import node_flows
from tenantnet.model.topology import Attachment, Network, Node, Topology

LOG = logging.getLogger("tenantnet.controller.tenant")
POLL_BACKOFF_MAX = 5.0     # seconds between polls while the provider's API does not answer


def topology_from_api(data):
    """A Topology rebuilt from GET /v1/topology (a wire.Topology, or its JSON): enough to
    compute the tenant's flows."""
    if not isinstance(data, wire.Topology):
        data = wire.parse(wire.Topology, data, "provider API topology")
    topo = Topology(mode=data.mode)
    for n in data.nodes:
        topo.add_node(Node(n.name, n.role, n.management_ip or "0.0.0.0",
                           n.transport_ip or "0.0.0.0"))
    for n in data.networks:
        topo.add_network(Network(n.tenant, n.name, n.segmentation_id, n.cidr,
                                 n.transport_cidr, n.mode, n.controller))
    for v in data.vms:
        topo.add_vm(Attachment(name=v.name, kind="vm", network=v.network, node=v.node,
                               mac=v.mac, ip=v.ip, port=v.port, source=v.source or "api"))
    for f in data.functions:
        topo.add_function(f.to_model())
    for c in data.chains:
        topo.add_chain(c.to_model())
    return topo


class TenantCore:
    """The core of a tenant's controller (the logic of ryu_apps.tenant_l2)."""

    def __init__(self, pusher, tenant, api, token=None, poll_interval=0.2, cache=None,
                 on_synced=None, api_ca=None):
        self.pusher = pusher
        self.tenant = tenant
        self.client = ApiClient(api, timeout=10, token=token, ca_file=api_ca)
        self.poll_interval = poll_interval
        self.cache = cache                  # file keeping the last placement read
        # callable(dpid, node, bridge, topo, portmap), called after every sync of one of the
        # tenant's bridges (on connect and on each placement change, also when none of its
        # flows changed): how other apps on those bridges follow the placement
        # (ryu_apps.tenant_l2 publishes it as the os-ken/Ryu event EventBridgeSynced).
        self.on_synced = on_synced
        self.topo = None
        self.lock = threading.RLock()
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._in_sync = {}                  # dpid -> cookies our last sync installed
        self.refused = set()                # dpids of bridges that are not ours
        self.api_error = None               # why the provider's API did not answer, or None

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        topo = self._fetch()
        if topo is None and self.cache and os.path.exists(self.cache):
            # The provider is down: serve our bridges from the placement we last read.
            with open(self.cache) as fh:
                topo = topology_from_api(json.load(fh))
            LOG.warning("tenant %s: provider API unreachable; starting from %s", self.tenant,
                        self.cache)
        if topo is None:
            raise TenantnetError(f"tenant {self.tenant}: the provider's API at "
                                 f"{self.client.endpoint} did not answer")
        with self.lock:
            self.topo = topo
        self.ready.set()
        LOG.info("tenant %s: controller ready, %d networks, %d VMs", self.tenant,
                 len(topo.networks()), len(topo.vms()))
        threading.Thread(target=self._poll, name="tenantnet-tenant-poll", daemon=True).start()

    def stop(self):
        self._stop.set()

    def _fetch(self):
        try:
            data = self.client.topology(typed=True)
        except TenantnetError as exc:
            self._api_state(exc)
            return None
        self._api_state(None)
        if data.tenant not in (None, self.tenant):
            raise TenantnetError(f"the API credential belongs to tenant {data.tenant}, "
                                 f"not {self.tenant}")
        topo = topology_from_api(data)
        if self.cache:
            tmp = self.cache + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(data.model_dump_json(exclude_unset=True))
            os.replace(tmp, self.cache)
        return topo

    def _api_state(self, exc):
        """Log once per change: the provider's API stopped answering, or answers again."""
        error = None if exc is None else " ".join(str(exc).split())
        if error == self.api_error:
            return
        if error is None:
            LOG.info("tenant %s: the provider's API answers again; following the placement",
                     self.tenant)
        elif self.api_error is None:
            LOG.warning("tenant %s: the provider's API does not answer (%s); the switches "
                        "keep their flows, retrying with a back-off up to %.0fs", self.tenant,
                        error, POLL_BACKOFF_MAX)
        else:
            LOG.debug("tenant %s: the provider's API still does not answer: %s",
                      self.tenant, error)
        self.api_error = error

    def _poll(self):
        """Follow placement changes; a provider that is down only pauses this (the switches
        keep what they have), with a back-off from poll_interval up to POLL_BACKOFF_MAX."""
        last = None
        wait = self.poll_interval
        while not self._stop.wait(wait):
            topo = self._fetch()
            if topo is None:
                wait = min(POLL_BACKOFF_MAX, max(wait, self.poll_interval) * 2)
                continue
            wait = self.poll_interval
            key = (sorted((v.name, v.node, v.mac) for v in topo.vms().values()),
                   sorted(map(repr, topo.functions().values())),
                   sorted(map(repr, topo.chains().values())))
            if key == last:
                continue
            last = key
            with self.lock:
                self.topo = topo
            self._sync_all()

    # -- flows ---------------------------------------------------------------------
    def _flows_of(self, dpid):
        owner = naming.dpid_owner(self.topo, dpid, tenant=self.tenant)
        if owner is None:
            return None
        node, bridge = owner
        bf = node_flows(self.topo, node, tenant=self.tenant)[bridge]
        return node, bridge, bf

    def _sync(self, dpid):
        found = self._flows_of(dpid)
        if found is None:
            return None
        node, bridge, bf = found
        portmap = self.pusher.port_map(dpid)
        try:
            want = frozenset(f.resolve(portmap).cookie() for f in bf.flows)
        except KeyError:
            want = None
        if want is not None and self._in_sync.get(dpid) == want:
            res = {"added": 0, "removed": 0}
        else:
            res = self.pusher.sync(dpid, bf.flows, portmap, installed=self._in_sync.get(dpid))
            if want is not None:
                self._in_sync[dpid] = want
            LOG.info("tenant %s: %s/%s +%d -%d flows", self.tenant, node, bridge,
                     res["added"], res["removed"])
        if self.on_synced is not None:
            try:
                self.on_synced(dpid, node, bridge, self.topo, portmap)
            except Exception:  # noqa: BLE001 -- a listener's bug must not stop our syncs
                LOG.exception("tenant %s: on_synced listener failed", self.tenant)
        return res

    def _sync_all(self):
        with self.lock:
            for dpid in self.pusher.dpids():
                try:
                    self._sync(dpid)
                except TenantnetError as exc:
                    LOG.error("tenant %s: sync of %s failed: %s", self.tenant,
                              naming.dpid_str(dpid), exc)

    # -- OpenFlow events -----------------------------------------------------------
    def switch_connected(self, dpid):
        """Called in the app's event thread: the sync runs in a thread of its own."""
        threading.Thread(target=guarded(self._connected), args=(dpid,), daemon=True,
                         name=f"tenantnet-connect-{dpid:x}").start()

    def _connected(self, dpid):
        if not self.ready.wait(60):
            return
        with self.lock:
            self._in_sync.pop(dpid, None)
            if self._flows_of(dpid) is None:
                # Not one of this tenant's bridges: never program it, drop the connection.
                self.refused.add(dpid)
                LOG.warning("tenant %s: switch %s is not a bridge of this tenant: refused",
                            self.tenant, naming.dpid_str(dpid))
                self.pusher.disconnect(dpid)
                return
            try:
                self._sync(dpid)
            except TenantnetError as exc:
                LOG.error("tenant %s: sync after connect failed: %s", self.tenant, exc)

    def switch_disconnected(self, dpid):
        self._in_sync.pop(dpid, None)
