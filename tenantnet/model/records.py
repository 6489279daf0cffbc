"""What tenantnet writes in Open vSwitch's external_ids, and reads back: defined once here.

Every bridge and port the controller makes carries `tenantnet-owner=tenantnet` (only those are
ever removed) and `tenantnet-kind`. Some also carry a *record*: what a restarted controller
needs to relearn a placement made through the API, which no config file holds. The records
are part of the desired state (model.desired writes them with this module), so reconcile
keeps them in step with the model; NodeWatch.recover reads them back (controller.recovery).

  VM        on its port        tenantnet-vm (name), -network, -mac, -ip, -source
  function  on its port        tenantnet-function (name), -network, -mac, -ip, -nf (its
                               kind), -options (its kind's settings, JSON), -source
  chain     on the integration tenantnet-chains: a JSON list of the chains of the bridge's
            bridge of its       network(s), on every node hosting the network: brint-xy in
            network             DNB, the common br-int (every CNB network on the node) in CNB

A chain has no port of its own, and it outlives its functions and VMs (fail-open skips a
missing function, fail-closed drops). The network's integration bridge is on every node
that hosts the network (its VMs' and functions' nodes, and every network node) for as long
as anything of the network is on any node; one copy per node, so a node that is down at
start-up takes no chain away. `tenantnet-chains` is always set, to "[]" when there is no
chain: Open vSwitch merges external_ids on update, so a key left out would keep the record
of a deleted chain.

`-source` is "config" or "api". Only "api" records are relearned: the config brings back its
own, and the config wins a conflict. Nothing here talks to a switch."""

import json
from dataclasses import dataclass, field

OWNER_KEY = "tenantnet-owner"
OWNER = "tenantnet"
KIND_KEY = "tenantnet-kind"
NETWORK_KEY = "tenantnet-network"
SOURCE_KEY = "tenantnet-source"
VM_KEY = "tenantnet-vm"              # also names a probe (kind "probe"), which is never relearned
FUNCTION_KEY = "tenantnet-function"
NF_KEY = "tenantnet-nf"
OPTIONS_KEY = "tenantnet-options"
CHAINS_KEY = "tenantnet-chains"
SOURCES = ("config", "api")


def ids(kind, **extra):
    """Our external_ids of a record of *kind*: owner, kind, and tenantnet-KEY for every
    extra KEY (None values left out)."""
    out = {OWNER_KEY: OWNER, KIND_KEY: kind}
    out.update({f"tenantnet-{k}": str(v) for k, v in extra.items() if v is not None})
    return out


def _json(value):
    """Canonical JSON: the same model gives the same string, so reconcile changes nothing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- writing (model.desired) ------------------------------------------------------------
def attachment_ids(att):
    """external_ids of the port of *att*: a VM, a network function or a probe."""
    if att.kind == "function":
        out = ids("function", network=att.network, function=att.name, mac=att.mac, ip=att.ip,
                  nf=att.nf, options=_json(dict(att.options)), source=att.source)
    else:
        out = ids(att.kind, network=att.network, vm=att.name, mac=att.mac, ip=att.ip,
                  source=att.source if att.kind == "vm" else None)
    out.update({"iface-id": att.name, "attached-mac": att.mac})
    return out


def chains_ids(chains):
    """{tenantnet-chains: ...} for an integration bridge carrying *chains*."""
    return {CHAINS_KEY: _json([{"name": c.name, "network": c.network, "from": c.src,
                                "to": c.dst, "through": list(c.through),
                                "on_failure": c.on_failure, "source": c.source}
                               for c in sorted(chains, key=lambda c: c.name)])}


# -- reading (recovery) -----------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One placement found on a node. *spec*: the request that makes it again (what the API
    takes, with the node), for model.config to validate; *where*: the port or bridge that
    holds it; *problem*: why the record cannot be read (then *spec* is incomplete)."""
    what: str                 # "VM", "function", "chain"
    name: str
    node: str
    where: str
    source: str
    spec: dict = field(default_factory=dict)
    problem: str = None

    @property
    def api(self):
        return self.source == "api"


def _source(value):
    return value if value in SOURCES else "api"     # records from before -source: the API's


def recovered_vms(port_ids, node):
    """VM records in the external_ids of *node*'s ports (port name -> external_ids):
    name -> Record."""
    out = {}
    for port, pids in sorted(port_ids.items()):
        if pids.get(OWNER_KEY) != OWNER or pids.get(KIND_KEY) != "vm" or not pids.get(VM_KEY):
            continue
        name = pids[VM_KEY]
        spec = {"name": name, "network": pids.get(NETWORK_KEY), "node": node,
                "mac": pids.get("tenantnet-mac"), "ip": pids.get("tenantnet-ip")}
        out[name] = Record("VM", name, node, f"port {port}", _source(pids.get(SOURCE_KEY)),
                           spec)
    return out


def recovered_functions(port_ids, node):
    """Network function records in the external_ids of *node*'s ports: name -> Record."""
    out = {}
    for port, pids in sorted(port_ids.items()):
        if pids.get(OWNER_KEY) != OWNER or pids.get(KIND_KEY) != "function" or \
                not pids.get(FUNCTION_KEY):
            continue
        name = pids[FUNCTION_KEY]
        spec = {"name": name, "network": pids.get(NETWORK_KEY), "node": node,
                "kind": pids.get(NF_KEY), "mac": pids.get("tenantnet-mac"),
                "ip": pids.get("tenantnet-ip")}
        problem = None
        try:
            options = json.loads(pids.get(OPTIONS_KEY) or "{}")
            if not isinstance(options, dict):
                raise ValueError(f"expected a JSON object, got {type(options).__name__}")
            spec.update({k: v for k, v in options.items() if k not in spec})
        except ValueError as exc:
            problem = f"{OPTIONS_KEY} is not readable ({exc})"
        out[name] = Record("function", name, node, f"port {port}",
                           _source(pids.get(SOURCE_KEY)), spec, problem)
    return out


CHAIN_FIELDS = ("name", "network", "from", "to", "through", "on_failure")


def recovered_chains(bridge_ids, node):
    """Chain records in the external_ids of *node*'s bridges (bridge name -> external_ids):
    name -> Record (a chain recorded on two bridges of the node: the first, by name)."""
    out = {}
    for bridge, bids in sorted(bridge_ids.items()):
        text = bids.get(CHAINS_KEY)
        if text is None:
            continue
        where = f"bridge {bridge}"
        try:
            entries = json.loads(text)
            if not isinstance(entries, list):
                raise ValueError(f"expected a JSON list, got {type(entries).__name__}")
        except ValueError as exc:
            out.setdefault(f"?{bridge}", Record("chain", "?", node, where, "api", {},
                                                f"{CHAINS_KEY} is not readable ({exc})"))
            continue
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                out.setdefault(f"?{bridge}", Record(
                    "chain", "?", node, where, "api", {},
                    f"{CHAINS_KEY} holds an entry without a name: {entry!r}"))
                continue
            spec = {k: entry[k] for k in CHAIN_FIELDS if k in entry}
            out.setdefault(entry["name"], Record("chain", entry["name"], node, where,
                                                 _source(entry.get("source")), spec))
    return out
