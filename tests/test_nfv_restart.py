"""A restarted controller keeps the functions and chains placed through the API (real lab:
namespaces, one userspace Open vSwitch per node, packets).

The function and the chain are placed with the CLI (`tenantnet function add`, `chain add`);
the controller is killed (SIGKILL) and started again with the same command line. It must
relearn both from the records in the nodes' OVSDB (model.records), list them once (the
config's own once too), leave the function's port as it was (same row, same ofport) and the
steering flows as they were (same cookies, counters still counting), and the traffic must
still cross the function."""

import os
import re
import time

import pytest

from conftest import lab_prerequisites, lab_up_and_down, nodes_yaml, run_cli
from tenantnet.model import naming
from tenantnet.model.chains import PRIO_CHAIN
from test_chain_e2e import PINGS, delta, ip_of, ping

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_TEST_PREFIX_NFVR", "tnp")
CONFIG = """
mode: dnb
controller: {management_ip: 198.18.0.1, api_token: provider-lab-token}
""" + nodes_yaml() + """\
tenants:
  - name: acme
    token: acme-lab-token
    networks:
      - {name: web, segmentation_id: 100, cidr: 10.0.0.0/24, transport_cidr: 198.19.100.0/24}
vms:
  - {name: web1, network: acme/web, node: compute1}
  - {name: web2, network: acme/web, node: compute2}
  - {name: web3, network: acme/web, node: compute1}
functions:
  - {name: fw1, network: acme/web, node: compute2, kind: forward}
chains:
  - {name: cfg-chain, network: acme/web, from: web3, to: web2, through: [fw1]}
"""
BRINT = naming.brint_name("acme/web")


def cli(*args, check=True):
    return run_cli(PREFIX, *args, check=check, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from lab_up_and_down(PREFIX, tmp_path_factory.mktemp("nfv") / "nfv.yaml", CONFIG)


def port_rows(lab, node, port):
    """(Port _uuid, Interface _uuid, ofport, Port external_ids) of *port* on *node*."""
    ovs = lab.fabric.ovs(node)

    def get(table, column):
        return ovs.vsctl("get", table, port, column).stdout.strip()
    return (get("Port", "_uuid"), get("Interface", "_uuid"), get("Interface", "ofport"),
            get("Port", "external_ids"))


def steering(lab, node):
    """{(cookie, match): (n_packets, duration s)} of the chain flows on *node*'s brint."""
    out = lab.fabric.ovs(node).ofctl("dump-flows", BRINT).stdout
    flows = {}
    for line in out.splitlines():
        if f"priority={PRIO_CHAIN}," not in line:
            continue
        cookie = re.search(r"cookie=(0x[0-9a-f]+)", line).group(1)
        match = line.split(f"priority={PRIO_CHAIN},")[1].split(" actions=")[0]
        flows[(cookie, match)] = (int(re.search(r"n_packets=(\d+)", line).group(1)),
                                  float(re.search(r"duration=([0-9.]+)s", line).group(1)))
    return flows


def count_ttl(lab, src, dst):
    """Count src -> dst echoes by TTL 62..64 in *dst*'s INPUT chain (once per pair)."""
    s_ip, d_ip = ip_of(lab, src), ip_of(lab, dst)
    for ttl in (62, 63, 64):
        lab.fabric.exec(dst, ["iptables", "-w", "-A", "INPUT", "-s", s_ip, "-d", d_ip, "-p",
                              "icmp", "-m", "ttl", "--ttl-eq", str(ttl), "-m", "comment",
                              "--comment", f"{src}-ttl{ttl}"], check=True)


def ttl_counts(lab, src, dst):
    out = lab.fabric.exec(dst, ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"],
                          check=True).stdout
    counts = {}
    for line in out.splitlines():
        m = re.search(rf"/\* {re.escape(src)}-ttl(\d+) \*/", line)
        if m:
            counts[int(m.group(1))] = int(line.split()[0])
    return counts


def crosses(lab, fn, src, dst, hops=1):
    """Ping src -> dst; assert every echo crossed *hops* routed hops (function *fn*: 1, or
    none: 0)."""
    before_fn = lab.function_counters(fn)["forwarded"] if hops else None
    before = ttl_counts(lab, src, dst)
    ping(lab, src, ip_of(lab, dst))
    if hops:
        assert lab.function_counters(fn)["forwarded"] - before_fn == PINGS
    want = {62: 0, 63: 0, 64: 0}
    want[64 - hops] = PINGS
    assert delta(ttl_counts(lab, src, dst), before) == want


def test_a_restarted_controller_keeps_api_functions_and_chains(lab):
    out = cli("function", "add", "fwx", "--network", "acme/web", "--node", "compute2",
              "--kind", "firewall", "--rules", "10").stdout
    assert out.startswith("fwx: firewall (rules 10, stateful True) on acme/web at compute2")
    out = cli("chain", "add", "api-chain", "--network", "acme/web", "--from", "web1", "--to",
              "web2", "--through", "fwx").stdout
    assert "api-chain: acme/web web1 -> web2 through fwx (on failure: open)" in out
    count_ttl(lab, "web1", "web2")
    count_ttl(lab, "web3", "web2")
    crosses(lab, "fwx", "web1", "web2")
    crosses(lab, "fw1", "web3", "web2")

    port = naming.function_port_name("fwx")
    rows = port_rows(lab, "compute2", port)
    assert '"tenantnet-source"=api' in rows[3] or "tenantnet-source=api" in rows[3]
    flows = {n: steering(lab, n) for n in ("compute1", "compute2")}
    assert len(flows["compute1"]) == 2          # the entries of both chains (web1, web3)
    ctl = lab.fabric.process("controller")
    log_start = os.path.getsize(ctl.log)

    assert "SIGKILL" in cli("lab", "stop", "controller").stdout
    t_stop = time.monotonic()
    assert "ready" in cli("lab", "start", "controller").stdout
    gap = time.monotonic() - t_stop

    api = lab.api()
    fns = {f["name"]: f for f in api.list_functions()}
    chains = {c["name"]: c for c in api.list_chains()}
    assert sorted(fns) == ["fw1", "fwx"] and sorted(chains) == ["api-chain", "cfg-chain"]
    assert (fns["fwx"]["source"], fns["fw1"]["source"]) == ("api", "config")
    assert fns["fwx"]["options"] == {"rules": 10, "stateful": True}
    assert (chains["api-chain"]["source"], chains["cfg-chain"]["source"]) == ("api", "config")
    assert chains["api-chain"]["through"] == ["fwx"]

    # the start-up reconcile changed nothing: the same port row and ofport ...
    assert port_rows(lab, "compute2", port) == rows
    with open(ctl.log, errors="replace") as fh:
        fh.seek(log_start)
        log = fh.read()
    assert "relearned function fwx from node compute2" in log
    assert "relearned chain api-chain" in log
    assert "not relearning" not in log
    assert not re.search(r"^.*: \d+ OVSDB changes", log, re.M), log
    # ... and the same steering flows, never reinstalled: their counters kept counting
    for node, before in flows.items():
        after = steering(lab, node)
        assert set(after) == set(before), node
        for key, (packets, duration) in before.items():
            assert after[key][0] >= packets and after[key][1] >= duration + gap - 1, \
                (node, key, before[key], after[key])
    crosses(lab, "fwx", "web1", "web2")
    crosses(lab, "fw1", "web3", "web2")

    # and they can be removed as usual
    assert "forwarded directly again" in cli("chain", "del", "api-chain").stdout
    assert "removed from compute2" in cli("function", "del", "fwx").stdout
    crosses(lab, None, "web1", "web2", hops=0)
