"""Service chains on the lab, end to end (issue 11): a chain of two functions on two other
nodes, provider-programmed (acme/web) and programmed by a tenant's own controller running
ryu_apps.tenant_chain (initech/own).

configs/lab/chains.yaml. Each function counts what it saw; the order is read from the IPv4
TTL: every function is one routed hop, so the first sees the sender's TTL (64) and the
second 63, and the destination gets 62 through the chain and 64 without it."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import CONFIGS, lab_prerequisites, lab_up_and_down, wait_for_value
from tenantnet.errors import ApiError
from ryu_apps.tenant_chain import COOKIE_PREFIX as CHAIN_COOKIE_PREFIX

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))]

PREFIX = os.environ.get("TENANTNET_TEST_PREFIX_CHAIN", "tnch")
CONFIG = os.path.join(CONFIGS, "chains.yaml")
PINGS = 5


@pytest.fixture(scope="module")
def lab():
    yield from lab_up_and_down(PREFIX, CONFIG)


class TenantApi:
    """The provider's HTTPS API with *tenant*'s token, called from the management network
    (initech's controller host, the one tenant host of this lab): the unix socket is the
    provider's."""

    def __init__(self, lab, tenant):
        self.lab, self.token = lab, lab.topology().tenant_tokens[tenant]

    def __getattr__(self, method):
        def call(*args):
            lab = self.lab
            conf = open(os.path.join(lab.fabric.state_dir, "tenant-initech.conf")).read()
            ca = re.search(r"^api_ca = (.*)$", conf, re.M).group(1)
            c = lab.topology().controller
            script = (
                "import json, sys\n"
                "from tenantnet.controller.client import ApiClient\n"
                "from tenantnet.errors import ApiError\n"
                f"api = ApiClient('https://{c.management_ip}:{c.api_port}', timeout=60, "
                f"token={self.token!r}, ca_file={ca!r})\n"
                "try:\n"
                f"    print(json.dumps({{'ok': api.{method}(*{list(args)!r})}}))\n"
                "except ApiError as exc:\n"
                "    print(json.dumps({'status': exc.status, 'error': str(exc)}))\n")
            proc = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-tc-initech",
                                   sys.executable, "-c", script], capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if "status" in out:
                raise ApiError(out["status"], out["error"])
            return out["ok"]
        return call


def tenant_api(lab, tenant):
    return TenantApi(lab, tenant)


def ip_of(lab, name):
    return {v["name"]: v["ip"] for v in lab.api().list_vms()}[name]


def count_ttl(lab, endpoint, src, dst, chain="PREROUTING"):
    """Count (once) src->dst packets by TTL 62..64 in *endpoint*'s mangle *chain*."""
    for ttl in (62, 63, 64):
        lab.fabric.exec(endpoint, ["iptables", "-w", "-t", "mangle", "-A", chain, "-s", src,
                                   "-d", dst, "-p", "icmp", "-m", "ttl", "--ttl-eq", str(ttl),
                                   "-m", "comment", "--comment", f"ttl{ttl}"], check=True)


def ttl_counts(lab, endpoint, chain="PREROUTING"):
    out = lab.fabric.exec(endpoint, ["iptables", "-w", "-t", "mangle", "-L", chain, "-v",
                                     "-x", "-n"], check=True).stdout
    counts = {}
    for line in out.splitlines():
        m = re.search(r"/\* ttl(\d+) \*/", line)
        if m:
            counts[int(m.group(1))] = int(line.split()[0])
    return counts


def ping(lab, src, dst_ip, count=PINGS):
    proc = lab.fabric.exec(src, ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                                 dst_ip], check=False)
    assert proc.returncode == 0, f"{src} -> {dst_ip}: {proc.stdout}{proc.stderr}"


def snapshot(lab, names):
    return {n: (ttl_counts(lab, n), lab.function_counters(n)["forwarded"]) for n in names}


def delta(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in (62, 63, 64)}


def check_chain(lab, src, dst, first, second):
    """Traffic src -> dst crosses *first* then *second*; the destination sees TTL 62."""
    s_ip, d_ip = ip_of(lab, src), ip_of(lab, dst)
    for ep in (first, second):
        count_ttl(lab, ep, s_ip, d_ip)
    count_ttl(lab, dst, s_ip, d_ip, chain="INPUT")
    b1, b2, bd = ttl_counts(lab, first), ttl_counts(lab, second), ttl_counts(lab, dst, "INPUT")
    c1, c2 = lab.function_counters(first), lab.function_counters(second)
    ping(lab, src, d_ip)
    d1, d2 = delta(ttl_counts(lab, first), b1), delta(ttl_counts(lab, second), b2)
    dd = delta(ttl_counts(lab, dst, "INPUT"), bd)
    assert d1 == {62: 0, 63: 0, 64: PINGS}, (first, d1)      # first hop: the sender's TTL
    assert d2 == {62: 0, 63: PINGS, 64: 0}, (second, d2)     # second: after one hop
    assert dd == {62: PINGS, 63: 0, 64: 0}, (dst, dd)        # two routed hops on the way
    n1, n2 = lab.function_counters(first), lab.function_counters(second)
    assert n1["forwarded"] - c1["forwarded"] == PINGS
    assert n2["forwarded"] - c2["forwarded"] == PINGS
    return n1, c1, n2, c2


def test_chain_crosses_both_functions_in_order(lab):
    n1, c1, n2, c2 = check_chain(lab, "web1", "web2", "fw1", "sh1")
    # each kind counted it its own way: the firewall's rules, the shaper's qdisc
    assert (n1["accepted"] + n1["established"]) - (c1["accepted"] + c1["established"]) \
        == PINGS
    assert n2["shaped_packets"] - c2["shaped_packets"] >= PINGS


def test_traffic_outside_the_chain_and_other_tenants_never_cross(lab):
    names = ("fw1", "sh1", "ofw1", "ofw2")
    before = {n: lab.function_counters(n)["forwarded"] for n in names}
    ping(lab, "web3", ip_of(lab, "web2"))        # same network, not the chain's source
    ping(lab, "app1", ip_of(lab, "app2"))        # globex: the very same addresses as web1/2
    after = {n: lab.function_counters(n)["forwarded"] for n in names}
    assert after == before
    # the reverse direction: web2's requests go straight to web1; only web1's replies
    # (web1 -> web2: the chain's own traffic) cross the functions
    ping(lab, "web2", ip_of(lab, "web1"))
    reverse = {n: lab.function_counters(n)["forwarded"] - after[n] for n in names}
    assert reverse == {"fw1": PINGS, "sh1": PINGS, "ofw1": 0, "ofw2": 0}


def test_isolation_over_the_api(lab):
    globex = tenant_api(lab, "globex")
    with pytest.raises(ApiError) as err:          # not its network
        globex.add_chain("steal", "acme/web", "web1", "web2", ["fw1"])
    assert err.value.status == 403
    with pytest.raises(ApiError) as err:          # its network, another tenant's function
        globex.add_chain("steal", "globex/app", "app1", "app2", ["fw1"])
    assert err.value.status == 400 and "through[0]" in str(err.value)
    with pytest.raises(ApiError) as err:
        globex.del_chain("web1-to-web2")
    assert err.value.status == 404
    assert [c["name"] for c in globex.list_chains()] == []


def test_deleting_the_chain_restores_direct_forwarding(lab):
    acme = tenant_api(lab, "acme")
    acme.del_chain("web1-to-web2")
    d_ip = ip_of(lab, "web2")
    before = snapshot(lab, ["fw1", "sh1"])
    bd = ttl_counts(lab, "web2", "INPUT")
    ping(lab, "web1", d_ip)
    assert snapshot(lab, ["fw1", "sh1"]) == before
    assert delta(ttl_counts(lab, "web2", "INPUT"), bd) == {62: 0, 63: 0, 64: PINGS}
    # and back, with the tenant's own credential
    acme.add_chain("web1-to-web2", "acme/web", "web1", "web2", ["fw1", "sh1"])
    bd = ttl_counts(lab, "web2", "INPUT")
    ping(lab, "web1", d_ip)
    assert delta(ttl_counts(lab, "web2", "INPUT"), bd)[62] == PINGS


def test_deleting_a_function_fails_open(lab):
    """Removing sh1: the chain skips it (on_failure: open), nothing goes to a dead port."""
    lab.del_function("sh1")
    d_ip = ip_of(lab, "web2")
    b1, bd = ttl_counts(lab, "fw1"), ttl_counts(lab, "web2", "INPUT")
    ping(lab, "web1", d_ip)
    assert delta(ttl_counts(lab, "fw1"), b1)[64] == PINGS
    assert delta(ttl_counts(lab, "web2", "INPUT"), bd) == {62: 0, 63: PINGS, 64: 0}


def chain_cookies(lab, node, bridge):
    out = lab.fabric.ovs(node).ofctl("dump-flows", bridge).stdout
    return [line for line in out.splitlines()
            if f"cookie=0x{CHAIN_COOKIE_PREFIX:08x}" in line]


def test_tenant_controller_runs_the_chain_app(lab):
    from tenantnet.model import naming
    bridge = naming.brint_name("initech/own")
    wait_for_value("tenant_chain's flows", lambda: chain_cookies(lab, "compute1", bridge), 20)
    check_chain(lab, "own1", "own2", "ofw1", "ofw2")
    initech = tenant_api(lab, "initech")
    initech.del_chain("own1-to-own2")
    wait_for_value("flows removed", lambda: not chain_cookies(lab, "compute1", bridge), 20)
    before = snapshot(lab, ["ofw1", "ofw2"])
    bd = ttl_counts(lab, "own2", "INPUT")
    ping(lab, "own1", ip_of(lab, "own2"))
    assert snapshot(lab, ["ofw1", "ofw2"]) == before
    assert delta(ttl_counts(lab, "own2", "INPUT"), bd) == {62: 0, 63: 0, 64: PINGS}
