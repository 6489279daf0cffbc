"""`shaper`: a token bucket (tc tbf) at *rate* on the function's egress."""

import re

from tenantnet.lab.functions.base import NetworkFunction


class Shaper(NetworkFunction):
    kind = "shaper"

    def configure(self):
        self.run(["tc", "qdisc", "replace", "dev", self.interface, "root", "tbf", "rate",
                  str(self.options.get("rate", "100mbit")), "burst", "64kb",
                  "latency", "100ms"])

    def kind_counters(self):
        text = self.run(["tc", "-s", "qdisc", "show", "dev", self.interface]).stdout
        m = re.search(r"Sent (\d+) bytes (\d+) pkt", text)
        return {"shaped_packets": int(m.group(2)) if m else 0,
                "shaped_bytes": int(m.group(1)) if m else 0}
