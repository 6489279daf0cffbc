"""`tenantnet bench flows`: flow programming, tenantnet's controller against `ovs-ofctl`.

On one throwaway bridge (tenantnet.bench.switch), in one run, with the same N flows:
  * tenantnet: FlowPusher.sync through os-ken (the controller's own code path) installs
    them into an empty table as one ONF bundle; a second sync is a no-op resync (dump and
    compare); a sync to nothing deletes them (one bundle);
  * ovs-ofctl: `ovs-ofctl -O OpenFlow13 --bundle add-flows` installs the same flows (same
    cookies) from a file, `--bundle del-flows` deletes them one cookie at a time, as the
    controller does.
After every step the table is dumped: it must hold exactly the expected flows (count,
cookies, and the same text for both installs) or nothing. Each figure is the median of
*repeat* rounds."""

import os
import statistics
import tempfile
import time

from tenantnet.bench.switch import BRIDGE, DPID, PORTS, BenchSwitch
from tenantnet.errors import TenantnetError
from tenantnet.model.flowspec import COOKIE_PREFIX, RESERVED_PORTS, Flow

P1, P2 = sorted(PORTS)
KEYS = ("flows", "tenantnet_install_s", "ofctl_install_s", "install_ratio",
        "tenantnet_delete_s", "ofctl_delete_s", "noop_resync_s")


def make_flows(n):
    """N distinct flows shaped like tenantnet's own rule types (local ingress/egress,
    remote egress): every one matches a MAC of its own."""
    flows = []
    for i in range(n):
        mac = f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        vid = 100 + i % 100
        kind = i % 3
        if kind == 0:
            flows.append(Flow.make(0, 100, {"in_port": P1, "eth_dst": mac},
                                   [("output", P2)], rule="bench-ingress"))
        elif kind == 1:
            flows.append(Flow.make(0, 90, {"eth_dst": mac, "vlan_vid": vid},
                                   [("pop_vlan",), ("output", P1)], rule="bench-egress"))
        else:
            flows.append(Flow.make(1, 80, {"in_port": P2, "eth_dst": mac},
                                   [("push_vlan",), ("set_field", "vlan_vid", vid),
                                    ("set_field", "tunnel_id", vid), ("output", P1)],
                                   rule="bench-remote"))
    return flows


# -- the same flows as ovs-ofctl text --------------------------------------------------

_MATCH = {"in_port": "in_port", "eth_dst": "dl_dst", "eth_src": "dl_src",
          "eth_type": "dl_type", "tunnel_id": "tun_id", "ipv4_dst": "nw_dst",
          "arp_tpa": "arp_tpa"}


def _ofctl_value(key, value):
    if key == "vlan_vid":
        return f"{0x1000 | int(value)}"
    if isinstance(value, int) and key in ("eth_type", "tunnel_id"):
        return f"0x{value:x}"
    return str(value)


def ofctl_text(flow, prefix=COOKIE_PREFIX):
    """One `ovs-ofctl add-flows` line for a Flow, with the cookie of *prefix* (tenantnet's
    by default). Ports may be numbers (a resolved flow) or names (ovs-ofctl looks them
    up)."""
    parts = [f"cookie=0x{flow.cookie(prefix):x}", f"table={flow.table}",
             f"priority={flow.priority}"]
    for key, value in flow.match:
        if key == "vlan_vid":
            parts.append(f"vlan_vid={0x1000 | int(value)}/0x1fff")
        elif key in _MATCH:
            parts.append(f"{_MATCH[key]}={_ofctl_value(key, value)}")
        else:
            raise ValueError(f"ofctl_text: match field {key!r} not supported")
    actions = []
    for act in flow.actions:
        if act[0] == "output":
            reserved = isinstance(act[1], str) and act[1] in RESERVED_PORTS
            actions.append(str(act[1]) if reserved else f"output:{act[1]}")
        elif act[0] == "push_vlan":
            actions.append("push_vlan:0x8100")
        elif act[0] == "pop_vlan":
            actions.append("pop_vlan")
        elif act[0] == "set_field":
            field = {"tunnel_id": "tun_id"}.get(act[1], act[1])
            actions.append(f"set_field:{_ofctl_value(act[1], act[2])}->{field}")
        else:
            raise ValueError(f"ofctl_text: action {act!r} not supported")
    if flow.goto is not None:
        actions.append(f"goto_table:{flow.goto}")
    return ",".join(parts) + " actions=" + (",".join(actions) or "drop")


# -- looking at the table ----------------------------------------------------------------

def dump(sw):
    """Sorted lines of our flows on the bridge, as `ovs-ofctl dump-flows --no-stats`."""
    out = sw.ofctl("dump-flows", "--no-stats", BRIDGE,
                   f"cookie=0x{COOKIE_PREFIX << 32:x}/0xffffffff00000000").stdout
    return sorted(line.strip() for line in out.splitlines()
                  if line.strip() and not line.lstrip().startswith(("OFPST", "NXST")))


def _cookie_of(line):
    head = line.split(",", 1)[0]
    if not head.startswith("cookie="):
        raise TenantnetError(f"bench: cannot read the cookie of {line!r}")
    return int(head[len("cookie="):], 16)


def verify(sw, expected_cookies, step, same_as=None):
    """Dump the table: exactly *expected_cookies*, and (if given) the same text as
    *same_as*; TenantnetError naming *step* otherwise. Returns the dump."""
    rows = dump(sw)
    got = {_cookie_of(r) for r in rows}
    if len(rows) != len(expected_cookies) or got != expected_cookies:
        missing = len(expected_cookies - got)
        extra = len(got - expected_cookies)
        raise TenantnetError(f"bench flows: after {step} the table holds {len(rows)} of our "
                             f"flows, expected {len(expected_cookies)} ({missing} missing, "
                             f"{extra} unexpected)")
    if same_as is not None and rows != same_as:
        diff = next(a for a, b in zip(rows, same_as) if a != b)
        raise TenantnetError(f"bench flows: after {step} the table differs from tenantnet's "
                             f"install, e.g. {diff!r}")
    return rows


# -- one round -----------------------------------------------------------------------------

def _timed(func):
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def one_round(sw, flows, files, timeout):
    """Seconds of each step of one round; the table is empty before and after."""
    cookies = {f.resolve(PORTS).cookie() for f in flows}
    n = len(cookies)
    out = {}

    t, r = _timed(lambda: sw.pusher.sync(DPID, flows, PORTS, timeout=timeout))
    if (r["added"], r["removed"], r["mode"]) != (n, 0, "bundle"):
        raise TenantnetError(f"bench flows: tenantnet install: unexpected result {r}")
    out["tenantnet_install_s"] = t
    reference = verify(sw, cookies, "tenantnet's install")

    t, r = _timed(lambda: sw.pusher.sync(DPID, flows, PORTS, timeout=timeout))
    if (r["added"], r["removed"]) != (0, 0):
        raise TenantnetError(f"bench flows: no-op resync changed something: {r}")
    out["noop_resync_s"] = t
    verify(sw, cookies, "the no-op resync", same_as=reference)

    t, r = _timed(lambda: sw.pusher.sync(DPID, [], PORTS, timeout=timeout))
    if (r["added"], r["removed"]) != (0, n):
        raise TenantnetError(f"bench flows: tenantnet delete: unexpected result {r}")
    out["tenantnet_delete_s"] = t
    verify(sw, set(), "tenantnet's delete")

    t, _ = _timed(lambda: sw.ofctl("--bundle", "add-flows", BRIDGE, files["add"],
                                   timeout=timeout))
    out["ofctl_install_s"] = t
    verify(sw, cookies, "ovs-ofctl add-flows", same_as=reference)

    t, _ = _timed(lambda: sw.ofctl("--bundle", "del-flows", BRIDGE, "-",
                                   stdin=files["del"], timeout=timeout))
    out["ofctl_delete_s"] = t
    verify(sw, set(), "ovs-ofctl del-flows")
    return out


def run(n=10000, repeat=3, timeout=300, progress=None):
    """The figures (KEYS) for *n* flows, each the median of *repeat* rounds."""
    if n < 1:
        raise TenantnetError("bench flows: --flows must be at least 1")
    if repeat < 1:
        raise TenantnetError("bench flows: --repeat must be at least 1")
    flows = make_flows(n)
    resolved = [f.resolve(PORTS) for f in flows]
    rounds = []
    with BenchSwitch() as sw, tempfile.TemporaryDirectory(prefix="tnbench-flows-",
                                                          dir=sw.base) as tmp:
        files = {"add": os.path.join(tmp, "add.txt"), "del": os.path.join(tmp, "del.txt")}
        with open(files["add"], "w") as fh:
            fh.writelines(ofctl_text(f) + "\n" for f in resolved)
        with open(files["del"], "w") as fh:
            fh.writelines(f"cookie=0x{f.cookie():x}/-1\n" for f in resolved)
        verify(sw, set(), "start-up")
        for i in range(repeat):
            if progress:
                progress(f"round {i + 1} of {repeat}: {n} flows")
            rounds.append(one_round(sw, flows, files, timeout))
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "flows": n,
        "tenantnet_install_s": round(med["tenantnet_install_s"], 4),
        "ofctl_install_s": round(med["ofctl_install_s"], 4),
        "install_ratio": round(med["ofctl_install_s"] / med["tenantnet_install_s"], 3),
        "tenantnet_delete_s": round(med["tenantnet_delete_s"], 4),
        "ofctl_delete_s": round(med["ofctl_delete_s"], 4),
        "noop_resync_s": round(med["noop_resync_s"], 4),
    }
