"""Time to install N flows (default 10000) on a real userspace OVS: bundle vs flow-mods.

Not part of the pytest run. Uses the same harness as tests/test_ofswitch.py (private
OVS in netns tnx-b-<pid>, os-ken controller in-process inside that namespace):

    /tmp/venv0/bin/python tests/bench_flows.py [N]

Prints, for each way of sending: install from empty, then delete them all again.
  bundle     FlowPusher.sync: one atomic ONF bundle (OPEN, N ADDs, barrier, COMMIT)
  flowmod    FlowPusher.sync(use_bundle=False): N flow-mods pipelined + one barrier
  1-by-1     each flow-mod followed by a barrier round trip (N round trips)
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from test_ofswitch import BRIDGE, DPID, PORTS, Lab   # noqa: E402
from tenantnet.southbound import ofctl  # noqa: E402
from tenantnet.model.flowspec import Flow                  # noqa: E402


def make_flows(n):
    return [Flow.make(0, 100, {"eth_dst": f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                                          f"{i >> 8 & 255:02x}:{i & 255:02x}"},
                      [("output", "tnx-b-p1")]) for i in range(n)]


def count_ours(lab):
    return len(lab.pusher.installed_cookies(DPID, timeout=60))


def one_by_one(lab, flows, delete=False):
    dp = lab.pusher.datapath(DPID)
    for f in flows:
        r = f.resolve(PORTS)
        msg = ofctl.delete_cookie_msg(dp, r.cookie()) if delete else ofctl.to_flow_mod(dp, r)
        lab.pusher._send_flowmods(dp, [(msg, str(r))], time.monotonic() + 10, "bench")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    flows = make_flows(n)
    lab = Lab()
    try:
        lab.start()
        lab.ovs.ofctl("del-flows", BRIDGE)
        print(f"{n} flows, OVS userspace datapath, controller in-process (os-ken native hub)")
        for name in ("bundle", "flowmod", "1-by-1"):
            t0 = time.perf_counter()
            if name == "1-by-1":
                one_by_one(lab, flows)
            else:
                r = lab.pusher.sync(DPID, flows, PORTS, timeout=300,
                                    use_bundle=(name == "bundle"))
                assert r["added"] == n, r
            t_add = time.perf_counter() - t0
            assert count_ours(lab) == n
            t0 = time.perf_counter()
            if name == "1-by-1":
                one_by_one(lab, flows, delete=True)
            else:
                r = lab.pusher.sync(DPID, [], PORTS, timeout=300,
                                    use_bundle=(name == "bundle"))
                assert r["removed"] == n, r
            t_del = time.perf_counter() - t0
            assert count_ours(lab) == 0
            print(f"  {name:8s} install {t_add:7.2f} s ({n / t_add:8.0f} flows/s)   "
                  f"delete {t_del:7.2f} s ({n / t_del:8.0f} flows/s)")
        t0 = time.perf_counter()
        lab.pusher.sync(DPID, flows, PORTS, timeout=300)
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = lab.pusher.sync(DPID, flows, PORTS, timeout=300)
        t_noop = time.perf_counter() - t0
        assert r["added"] == r["removed"] == 0
        print(f"  no-op resync of {n} installed flows (dump + compare): {t_noop:.2f} s")
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
