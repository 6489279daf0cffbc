"""`firewall`: iptables in the FORWARD chain with *rules* rules that never match (as seed
000's rule-count experiment), then one counting ACCEPT. *stateful*: a conntrack rule first,
so packets of known connections skip the list."""

from tenantnet.lab.functions.base import NetworkFunction

ACCEPT = "tenantnet-accept"
ESTABLISHED = "tenantnet-established"


class Firewall(NetworkFunction):
    kind = "firewall"

    def configure(self):
        lines = []
        if self.options.get("stateful", True):
            lines.append(f"-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED "
                         f"-m comment --comment {ESTABLISHED} -j ACCEPT")
        for i in range(int(self.options.get("rules", 0))):
            # 100.64.0.0/10 (shared address space): never a tenant VM's source here
            lines.append(f"-A FORWARD -s 100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32 "
                         "-j DROP")
        lines.append(f"-A FORWARD -m comment --comment {ACCEPT} -j ACCEPT")
        self.restore("filter", lines)

    def kind_counters(self):
        out = {"accepted": self.rule_packets("filter", "FORWARD", ACCEPT)}
        if self.options.get("stateful", True):
            out["established"] = self.rule_packets("filter", "FORWARD", ESTABLISHED)
        return out
