"""Open vSwitch's datapath as `bench datapath` reads it (pure: text in, data out).

- ``parse_dump(text)``: the lines of `ovs-appctl dpctl/dump-flows -m --names` (userspace
  datapath) as ``DpFlow`` records: ufid, recirculation id, input port, match, packets,
  bytes and the top-level actions (``tnl_pop(gre_sys)``, ``push_vlan(...)``, a port, ...).
- ``delta(before, after)``: the flows of one run, from dumps taken before and after it
  (flows are never deleted by hand: `dpctl/del-flows` leaves ovs-vswitchd's ukeys behind,
  and the flows it removed are then not installed again, every packet becoming an upcall).
- ``summary(flows)``: what a path's flows say, for the bench's JSON: how many datapath
  flows carried the run, how many of them match on a second pass (after recirc() or
  tnl_pop()) and how many packets did, and each busy flow ("hop") with its actions.
- ``parse_pmd_stats(text)``: `ovs-appctl dpif-netdev/pmd-stats-show`, {thread: {counter:
  number}} (packets received, packet recirculations, avg. datapath passes per packet,
  megaflow hits, avg. subtable lookups per megaflow hit, upcalls, ...).
"""

import re
from dataclasses import dataclass, field

# A flow is "busy" (a hop of the measured traffic) when it carried at least this share of
# the busiest flow's packets: ARP, the TCP handshake's own flows and leftovers stay out.
BUSY_SHARE = 0.01

_STATS_RE = re.compile(r",?\s*packets:(\d+), bytes:(\d+), used:([^,]+)(?:, flags:([^,]*))?"
                       r"(?:, dp:\w+)?,\s*actions:(.*)$")


@dataclass
class DpFlow:
    ufid: str
    match: str
    recirc_id: str
    in_port: str
    packets: int
    bytes: int
    actions: list = field(default_factory=list)

    @property
    def recirculated(self):
        """True when the flow matches packets on a second pass through the datapath: after
        a recirc() (recirc_id not 0) or after a tnl_pop() (tunnel metadata in the match;
        the userspace datapath keeps recirc_id 0 then)."""
        return self.recirc_id not in ("0", "0x0") or self.match.startswith("tunnel(") \
            or ",tunnel(" in self.match

    @property
    def recirculates(self):
        """True when the flow sends its packets through the datapath once more."""
        return any(a.startswith(("recirc(", "tnl_pop(")) for a in self.actions)


def split_top(text, sep=","):
    """*text* split at *sep* outside parentheses: 'a(b,c),d' -> ['a(b,c)', 'd']."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def _field(match_parts, name, default=""):
    for part in match_parts:
        if part.startswith(name + "(") and part.endswith(")"):
            return part[len(name) + 1:-1]
    return default


def parse_dump(text):
    """[DpFlow] of a `dpctl/dump-flows` text; header lines ('flow-dump from ...') and
    anything without a packets/actions part are skipped."""
    flows = []
    for line in (text or "").splitlines():
        line = line.strip()
        m = _STATS_RE.search(line)
        if not m:
            continue
        match, ufid = line[:m.start()].strip().rstrip(","), ""
        if match.startswith("ufid:"):
            ufid, _, match = match.partition(",")
            ufid, match = ufid[5:].strip(), match.strip()
        parts = split_top(match)
        actions = m.group(5).strip()
        actions = re.sub(r",\s*dp-extra-info:.*$", "", actions)
        flows.append(DpFlow(ufid=ufid, match=match, recirc_id=_field(parts, "recirc_id", "0"),
                            in_port=_field(parts, "in_port", "?"),
                            packets=int(m.group(1)), bytes=int(m.group(2)),
                            actions=[] if actions == "drop" else split_top(actions)))
    return flows


BARE_ACTIONS = ("pop_vlan", "pop_eth", "pop_nsh", "ct_clear", "drop")


def action_name(action):
    """'tnl_push(tnl_port(3),...)' -> 'tnl_push'; 'pop_vlan' stays; a bare port ('3',
    'pb') -> 'output:pb'."""
    if "(" in action:
        return action.split("(", 1)[0]
    return action if action in BARE_ACTIONS else f"output:{action}"


def delta(before, after):
    """[DpFlow] of dump text *after* with the packets and bytes each flow carried since dump
    text *before* (flows matched by ufid: dump with -m), leaving out flows that carried
    none. A flow that was not in *before* counts whole."""
    old = {f.ufid: f for f in parse_dump(before) if f.ufid}
    out = []
    for f in parse_dump(after):
        prev = old.get(f.ufid) if f.ufid else None
        if prev is not None and prev.packets <= f.packets:
            f.packets -= prev.packets
            f.bytes -= prev.bytes
        if f.packets > 0:
            out.append(f)
    return out


def summary(flows_by_where):
    """What the datapath flows of one path say. *flows_by_where*: {where (node or switch):
    [DpFlow]} (``delta``: the flows of one run). Returns flows (how many carried packets),
    recirc_flows (those matching on a second pass: after recirc() or tnl_pop()),
    recirculations (packets on second passes), packets (all flows' packets), and hops: the
    busy flows, busiest first, each with where, in_port, recirc_id, second_pass, packets,
    actions (names, in order) and n_actions."""
    every = [(where, f) for where, flows in flows_by_where.items() for f in flows]
    top = max((f.packets for _, f in every), default=0)
    busy = sorted(((w, f) for w, f in every if top and f.packets >= BUSY_SHARE * top),
                  key=lambda wf: -wf[1].packets)
    return {
        "flows": len(every),
        "recirc_flows": sum(1 for _, f in every if f.recirculated),
        "recirculations": sum(f.packets for _, f in every if f.recirculated),
        "packets": sum(f.packets for _, f in every),
        "hops": [{"where": w, "in_port": f.in_port, "recirc_id": f.recirc_id,
                  "second_pass": f.recirculated, "packets": f.packets,
                  "actions": [action_name(a) for a in f.actions],
                  "n_actions": len(f.actions)} for w, f in busy],
    }


def _number(text):
    text = text.strip().split()[0] if text.strip() else ""
    try:
        return float(text)
    except ValueError:
        return None


def parse_pmd_stats(text):
    """{thread ('main thread', 'pmd thread numa_id 0 core_id 1', ...): {counter: number}}
    of `dpif-netdev/pmd-stats-show`; counters without a number are left out."""
    out, cur = {}, None
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")) and line.rstrip().endswith(":"):
            cur = out.setdefault(line.strip().rstrip(":"), {})
            continue
        if cur is None or ":" not in line:
            continue
        key, _, value = line.strip().partition(":")
        num = _number(value)
        if num is not None:
            cur[key.strip()] = num
    return out


def pmd_summary(stats_by_where):
    """{where: {packets, recirculations, passes_per_packet, megaflow_hits, emc_hits,
    upcalls, lookups_per_megaflow_hit}} summed over each switch's threads."""
    out = {}
    for where, text in stats_by_where.items():
        threads = parse_pmd_stats(text)
        total = {}
        for counters in threads.values():
            for key, value in counters.items():
                total[key] = total.get(key, 0.0) + value
        packets = total.get("packets received", 0.0)
        recirc = total.get("packet recirculations", 0.0)
        mf_hits = total.get("megaflow hits", 0.0)
        # per-thread averages are weighted by the thread's megaflow hits
        lookups = sum(c.get("avg. subtable lookups per megaflow hit", 0.0)
                      * c.get("megaflow hits", 0.0) for c in threads.values())
        out[where] = {
            "packets": int(packets), "recirculations": int(recirc),
            "passes_per_packet": round((packets + recirc) / packets, 3) if packets else None,
            "emc_hits": int(total.get("emc hits", 0.0)),
            "megaflow_hits": int(mf_hits),
            "upcalls": int(total.get("miss with success upcall", 0.0)
                           + total.get("miss with failed upcall", 0.0)),
            "lookups_per_megaflow_hit": round(lookups / mf_hits, 2) if mf_hits else None,
        }
    return out
