"""Placement speed on the one-machine lab, side by side in one run (not part of pytest):
N VMs placed one request at a time, then N VMs sent as one concurrent batch (realised
together by the controller's group commit). Prints ms per VM and the ratio.

    sudo .venv/bin/python tests/bench_placement.py [N]
"""

import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tenantnet.model import naming  # noqa: E402
from tenantnet.lab.lab import Lab  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "lab", "two-tenants.yaml")


def main(n=12):
    lab = Lab(prefix="tnbp")
    lab.down()
    lab.up(CONFIG, timeout=120)
    try:
        api = lab.api()
        nodes = ["compute1", "compute2", "compute3"]

        # The hypervisor's part (the VMs' namespaces and links) is done before the clock.
        for prefix in ("seq", "bat"):
            for i in range(n):
                lab.fabric.add_endpoint(f"{prefix}{i}", nodes[i % 3],
                                        naming.vm_port_name(f"{prefix}{i}"))

        def place(i, prefix):
            return api.add_vm(f"{prefix}{i}", "acme/web", nodes[i % 3])

        t0 = time.perf_counter()
        for i in range(n):
            place(i, "seq")
        sequential = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            groups = [r["timings"].get("group_size", 1)
                      for r in pool.map(lambda i: place(i, "bat"), range(n))]
        batch = (time.perf_counter() - t0) / n
        print(f"{n} placements (controller only: OVSDB + OpenFlow, no VM namespaces)")
        print(f"  one at a time : {sequential * 1000:7.1f} ms per VM")
        print(f"  one batch     : {batch * 1000:7.1f} ms per VM (groups of up to {max(groups)})")
        print(f"  ratio         : {sequential / batch:7.1f}x")
    finally:
        lab.down()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
