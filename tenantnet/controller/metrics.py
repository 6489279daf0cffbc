"""The controller's Prometheus metrics (prometheus_client), served at GET /metrics.

One Metrics object per controller core, with a registry of its own (several cores or API
servers in one process, as in the tests, do not mix their numbers). The core observes
placements, OVSDB transactions, flow syncs and resyncs; the API server counts its answers;
nodes by state are read from the core when scraped. See docs/operations.md for what to
alert on.

    tenantnet_placements_total{kind,result}            add|delete, ok|error
    tenantnet_placement_seconds{kind,bridges}          latency; bridges=created|existing
    tenantnet_ovsdb_transaction_seconds{node}          snapshot + transaction + ofport wait
    tenantnet_flow_bundle_seconds{node}                a bridge's flow sync in one bundle
    tenantnet_flows{node,bridge}                       flows we keep on each bridge
    tenantnet_resyncs_total{kind}                      full reconciliations: node (it came
                                                       back or started), switch (reconnect)
    tenantnet_audits_total                             drift audits run
    tenantnet_audit_repairs_total                      drift repaired by the audits
    tenantnet_placements_refused_node_down_total       placements refused (503): a node down
    tenantnet_nodes{state}                             nodes by state (up, down, reconciling)
    tenantnet_node_state{node,state}                   1 for each node's current state
    tenantnet_api_requests_total{method,status}        every answer of the API
    tenantnet_api_errors_total{status}                 answers >= 400
    tenantnet_api_request_seconds{method}              API latency
"""

import logging

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LOG = logging.getLogger("tenantnet.controller.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
NODE_STATES = ("up", "down", "reconciling")
_METHODS = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}

# Placements take milliseconds (an existing network) to seconds (new bridges, tunnels).
_PLACEMENT_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)
_SOUTHBOUND_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class _NodeStates:
    """Collector: nodes by state, read from the source when scraped."""

    def __init__(self, source):
        self.source = source            # callable -> {node: state}, or None

    def describe(self):
        return []

    def collect(self):
        by_state = GaugeMetricFamily("tenantnet_nodes", "Nodes by state", labels=["state"])
        per_node = GaugeMetricFamily("tenantnet_node_state",
                                     "1 for each node's current state", labels=["node", "state"])
        states = {}
        if self.source is not None:
            try:
                states = self.source() or {}
            except Exception as exc:  # noqa: BLE001 -- a scrape must not fail on this
                LOG.warning("node states not read for /metrics: %s", exc)
        counts = dict.fromkeys(NODE_STATES, 0)
        for node, state in sorted(states.items()):
            counts[state] = counts.get(state, 0) + 1
            per_node.add_metric([node, state], 1)
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        yield per_node


# The core's own counters (Core.counters, kept by its node watchers and audit) as
# Prometheus counters: key -> (metric name, help, labels).
CORE_COUNTERS = {
    "resyncs": ("tenantnet_resyncs", "Full reconciliations", {"kind": "node"}),
    "switch_resyncs": ("tenantnet_resyncs", "Full reconciliations", {"kind": "switch"}),
    "audits": ("tenantnet_audits", "Drift audits run", {}),
    "audit_repairs": ("tenantnet_audit_repairs", "Drift repaired by the audits", {}),
    "refused_node_down": ("tenantnet_placements_refused_node_down",
                          "Placements refused because a node they touch is down", {}),
}


class _CoreCounters:
    """Collector: the core's counters, read when scraped (always exported, 0 when absent)."""

    def __init__(self, source):
        self.source = source            # callable -> {key: int}, or None

    def describe(self):
        return []

    def collect(self):
        values = {}
        if self.source is not None:
            try:
                values = dict(self.source() or {})
            except Exception as exc:  # noqa: BLE001
                LOG.warning("core counters not read for /metrics: %s", exc)
        families = {}
        for key, (name, doc, labels) in CORE_COUNTERS.items():
            fam = families.get(name)
            if fam is None:
                fam = families[name] = CounterMetricFamily(name, doc, labels=sorted(labels))
            fam.add_metric([labels[k] for k in sorted(labels)], values.get(key, 0))
        yield from families.values()


class Metrics:
    def __init__(self, node_states=None, counters=None):
        """*node_states*: callable returning {node name: state}; see core_node_states.
        *counters*: callable returning the core's counters (see CORE_COUNTERS)."""
        self.registry = r = CollectorRegistry()
        self.placements = Counter("tenantnet_placements", "Placements by kind and result",
                                  ["kind", "result"], registry=r)
        self.placement_seconds = Histogram(
            "tenantnet_placement_seconds", "Placement latency, request to realised",
            ["kind", "bridges"], buckets=_PLACEMENT_BUCKETS, registry=r)
        self.ovsdb_seconds = Histogram(
            "tenantnet_ovsdb_transaction_seconds",
            "OVSDB reconcile that committed a transaction (snapshot, transaction, ofports)",
            ["node"], buckets=_SOUTHBOUND_BUCKETS, registry=r)
        self.bundle_seconds = Histogram(
            "tenantnet_flow_bundle_seconds", "Flow sync of one bridge sent as one bundle",
            ["node"], buckets=_SOUTHBOUND_BUCKETS, registry=r)
        self.flows = Gauge("tenantnet_flows", "Flows the controller keeps on a bridge",
                           ["node", "bridge"], registry=r)
        self.api_requests = Counter("tenantnet_api_requests", "API answers",
                                    ["method", "status"], registry=r)
        self.api_errors = Counter("tenantnet_api_errors", "API error answers (status >= 400)",
                                  ["status"], registry=r)
        self.api_seconds = Histogram("tenantnet_api_request_seconds", "API request latency",
                                     ["method"], buckets=_PLACEMENT_BUCKETS, registry=r)
        self._nodes = _NodeStates(node_states)
        r.register(self._nodes)
        self._counters = _CoreCounters(counters)
        r.register(self._counters)

    def set_node_states(self, source):
        """Read nodes by state from *source* (callable -> {node: state})."""
        self._nodes.source = source

    # -- observations ------------------------------------------------------------------
    def placement(self, kind, seconds, bridges_created=False, ok=True):
        self.placements.labels(kind, "ok" if ok else "error").inc()
        if ok:
            self.placement_seconds.labels(kind, "created" if bridges_created else "existing") \
                .observe(seconds)

    def ovsdb_transaction(self, node, seconds):
        self.ovsdb_seconds.labels(node).observe(seconds)

    def flow_sync(self, node, bridge, flows, seconds=None, bundle=False):
        self.flows.labels(node, bridge).set(flows)
        if bundle and seconds is not None:
            self.bundle_seconds.labels(node).observe(seconds)

    def api_answer(self, method, status, seconds):
        # Any token is a method to HTTP: keep the label set bounded.
        method = method if method in _METHODS else "other"
        self.api_requests.labels(method, str(status)).inc()
        self.api_seconds.labels(method).observe(seconds)
        if status >= 400:
            self.api_errors.labels(str(status)).inc()

    # -- exposition ----------------------------------------------------------------------
    def exposition(self):
        """(body bytes, content type) in the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE


def for_core(core):
    """The Metrics of a controller core: nodes by state and the core's counters are read
    from it when scraped; the core observes the rest."""
    return Metrics(node_states=lambda: core_node_states(core),
                   counters=lambda: getattr(core, "counters", {}))


def core_node_states(core):
    """{node: state} of a controller core, from Core.node_states() (up, down or reconciling)."""
    return {str(s["node"]): str(s["state"]) for s in core.node_states()}
