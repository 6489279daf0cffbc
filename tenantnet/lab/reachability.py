"""Reachability in the lab: a ping from an endpoint, waiting until VMs answer their
network's probe, and the layer-2 matrix between every pair of endpoints
(tenantnet.lab.l2probe run in each). `LabReachability` is that part of
tenantnet.lab.lab.Lab (it uses the Lab's `fabric`, `api()` and `controller_log()`)."""

import concurrent.futures
import json
import subprocess
import time

from tenantnet.errors import LabError


class LabReachability:
    """Pings and layer-2 probes between a Lab's endpoints."""

    def ping(self, src_endpoint, ip, count=1, wait=1.0):
        proc = self.fabric.exec(src_endpoint, ["ping", "-n", "-q", "-c", str(count), "-W",
                                               str(max(1, int(wait))), ip], timeout=wait + 10)
        return proc.returncode == 0

    def wait_reachable(self, topo, vm_names, timeout=60.0, interval=0.01):
        """Ping each VM from its network's probe until it answers. Returns per-VM seconds."""
        deadline = time.time() + timeout
        start = time.perf_counter()

        def one(name):
            vm = topo.vm(name)
            probe = topo.probes(vm.network)[0].name
            while time.time() < deadline:
                # A short wait per echo: a lost first echo must not cost a whole second.
                proc = self.fabric.exec(probe, ["ping", "-n", "-q", "-c", "1", "-W", "0.2",
                                                vm.ip], timeout=10)
                if proc.returncode == 0:
                    return round(time.perf_counter() - start, 3)
                time.sleep(interval)
            return None

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            times = dict(zip(vm_names, pool.map(one, vm_names)))
        failed = sorted(n for n, t in times.items() if t is None)
        if failed:
            raise LabError(f"not reachable from their probes within {timeout:.0f}s: "
                           f"{', '.join(failed)}; see {self.controller_log()}")
        return {"reachable_after_s": times}

    def matrix(self, listen=1.0, limit=120.0):
        """Layer-2 reachability between every pair of endpoints (VMs and probes), plus an
        IP ping for every same-network pair. Returns {rows: [...], names: [...]}.

        Receivers listen until every sender is done plus *listen* seconds (at most
        *limit* in all): senders started over SSH on slow nodes take their time."""
        topo_api = self.api().topology(typed=True)          # a controller.wire.Topology
        atts = {v.name: v.model_dump() for v in topo_api.vms}
        for net in topo_api.networks:
            for p in net.probes:
                atts[p.name] = p.model_dump()
        names = sorted(atts, key=lambda n: (atts[n]["network"], atts[n]["kind"] != "vm", n))
        fabric = self.fabric
        receivers = {}
        for name in names:
            receivers[name] = fabric.endpoint_executor(name).popen(
                [fabric.endpoint_python(name), "-m", "tenantnet.lab.l2probe", "recv", "eth0",
                 str(limit), "--until-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True)
        for proc in receivers.values():
            proc.stdout.readline()          # "ready"
        senders = []
        for name in names:
            dsts = ",".join(atts[o]["mac"] for o in names if o != name)
            senders.append(fabric.endpoint_executor(name).popen(
                [fabric.endpoint_python(name), "-m", "tenantnet.lab.l2probe", "send", "eth0",
                 dsts]))
        for proc in senders:
            proc.wait(timeout=limit)
        time.sleep(listen)                  # frames in flight, flooded copies
        for proc in receivers.values():
            proc.stdin.write("done\n")
            proc.stdin.close()
        heard = {}
        for name, proc in receivers.items():
            out = proc.stdout.read()
            proc.wait(timeout=30)
            heard[name] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}

        pairs = [(a, b) for a in names for b in names if a != b
                 and atts[a]["network"] == atts[b]["network"]]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            pings = dict(zip(pairs, pool.map(lambda p: self.ping(p[0], atts[p[1]]["ip"]), pairs)))
        rows = []
        for a in names:
            for b in names:
                if a == b:
                    continue
                got = heard[b].get(atts[a]["mac"], [])
                rows.append({"src": a, "dst": b, "same_network": atts[a]["network"] ==
                             atts[b]["network"], "unicast": "unicast" in got,
                             "broadcast": "broadcast" in got, "ping": pings.get((a, b)),
                             "src_network": atts[a]["network"], "dst_network": atts[b]["network"]})
        return {"names": names, "networks": {n: atts[n]["network"] for n in names},
                "rows": rows}
