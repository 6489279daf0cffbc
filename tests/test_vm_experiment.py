"""The `vm-ci` experiment (vm-quick cut down: one grid point, 1 s iperf runs) on node VMs
(QEMU, kernel-datapath Open vSwitch), in both modes, with the VM baselines: one lab of 2
compute + 1 network VM for the whole run (reset and checked after every part, modes switched
by restarting the controller). Checks the results, not the figures. Its time under TCG on 2
cores is printed at the end, with the numbers."""

import os
import shutil
import time

import pytest

from conftest import ROOT, lab_namespaces, lab_prerequisites
from tenantnet.experiment import analysis, baseline, runner
from tenantnet.experiment import bandwidth as bw
from tenantnet.experiment.spec import load_spec
from tenantnet.lab.lab import Lab

PREFIX = os.environ.get("TENANTNET_VM_EXPERIMENT_PREFIX", "tnve")
SPEC = os.path.join(ROOT, "configs", "experiments", "vm-ci.yaml")


def _vm_problem():
    problem = lab_prerequisites()
    if problem:
        return problem
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap", "iperf3"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup installs it)"
    return None


pytestmark = [pytest.mark.vm, pytest.mark.lab,
              pytest.mark.skipif(_vm_problem() is not None, reason=str(_vm_problem()))]


def _ours():
    return lab_namespaces(PREFIX)


@pytest.fixture
def clean_lab():
    Lab(prefix=PREFIX).down()                 # a leftover of an interrupted run
    yield
    Lab(prefix=PREFIX).down()
    assert not _ours()
    assert not os.path.exists(f"/var/lib/tenantnet/vms/{PREFIX}")


def test_vm_experiment_both_modes_with_vm_baselines(tmp_path, clean_lab):
    spec = load_spec(SPEC)
    assert spec.lab.nodes == "vm" and spec.bandwidth.baselines
    t0 = time.perf_counter()
    rd = runner.run(spec, str(tmp_path / "results"), modes=["dnb", "cnb"], progress=False,
                    prefix=PREFIX)
    took = time.perf_counter() - t0
    print(f"{spec.name}, both modes and the VM baselines: {took:.0f}s")
    assert not _ours()                        # the shared lab came down at the end

    meta = rd.read_json("meta.json")
    assert meta["status"] == "complete" and meta["modes"] == ["dnb", "cnb"], meta["errors"]
    assert not meta["errors"], meta["errors"]
    nodes = meta["nodes"]
    assert nodes["kind"] == "vm" and nodes["datapath"].startswith("system")
    assert nodes["virtualisation"] in ("kvm", "tcg")

    # one lab for the whole run: built once, the mode switched, reset after every part
    events = meta["labs"]["events"]
    kinds = [e["event"] for e in events]
    assert kinds.count("built") == 1 and kinds.count("mode switched") == 1, events
    parts = len(spec.reachability.grid()) + 1          # per mode: the grid + bandwidth
    assert kinds.count("reset") == 2 * parts + 1, events   # + the baselines
    assert kinds[-1] == "torn down"
    for mode in ("dnb", "cnb"):
        assert rd.exists(f"labs/{mode}-state.txt") and rd.exists(f"labs/{mode}-k1.yaml")
        assert "bridge br-tun" in open(rd.path(f"labs/{mode}-state.txt")).read()

    # reachability: every instance of every sub-experiment reachable, in both modes
    rows = rd.read_csv("reachability_instances.csv")
    r = spec.reachability
    assert len(rows) == 2 * sum(r.instances) * len(r.networks) * r.repeats
    for row in rows:
        assert row["status"] == "success", row
        assert row["reachability_ms"] > 0
        assert row["node"].startswith("compute")
    for mode in ("dnb", "cnb"):
        mine = [x for x in rows if x["mode"] == mode]
        # the tenant bridges of a reused lab are made again by every batch's first VMs
        assert any(x["bridges_existed"] is False for x in mine) == (mode == "dnb"), mine
    records = rd.read_csv("reachability.csv")
    assert {(x["mode"], x["instances"]) for x in records} == \
        {(m, n) for m in ("dnb", "cnb") for n in r.instances}

    # bandwidth: a row for every mode, protocol and direction, baselines included
    bw_rows = rd.read_csv("bandwidth.csv")
    seen = {(x["mode"], x["protocol"], x["direction"]) for x in bw_rows}
    modes = ("dnb", "cnb", *baseline.VM_MODES)
    assert seen == {(m, p, d) for m in modes for p in spec.bandwidth.protocols
                    for d in bw.DIRECTIONS}, seen
    for x in bw_rows:
        assert x["bits_per_second"] > 1e6, x
        assert x["mtu"] == 1400, x
    assert not {x["mode"] for x in bw_rows} & set(baseline.MODES)    # no host baselines
    assert {x["node"] for x in bw_rows if x["mode"] == "vm-transport"} == {"net1<->compute1"}
    assert {x["node"] for x in bw_rows if x["mode"] == "vm-ovs-flat"} == {"compute1"}
    assert meta["baselines"]["kind"] == "vm"
    assert meta["baselines"]["nodes"] == ["net1", "compute1"]

    summary = analysis.summarise(bw_rows)
    for x in records:
        print(f"reachability {x['mode']} n={x['instances']}: mean {x['mean_ms']:.0f} ms")
    for m in modes:
        tcp = summary[m]["tcp"]
        print(f"TCP {m}: " + ", ".join(f"{d} {tcp[d]['mean'] / 1e6:.1f} Mbit/s"
                                       for d in bw.DIRECTIONS))
    print("lab: " + ", ".join(f"{e['event']} {e.get('seconds', '-')}s" for e in events))

    text = open(rd.path("report.md")).read()
    assert "on the lab's node VMs: the same path without tenantnet" in text
    assert "% of VM-VM transport" in text and "% of flat OVS in a VM" in text
    assert "`vm-transport`" in text and "`vm-ovs-flat`" in text
    assert "| kind | vm |" in text and "| datapath | system (kernel) |" in text
