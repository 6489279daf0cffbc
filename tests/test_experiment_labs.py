"""The labs an experiment runs on (tenantnet.experiment.labs), without building any: one
shared lab of node VMs per run (built once, reset and checked between parts, modes switched
by a controller restart, torn down after a failed reset or an error), and the helpers that
compare a reset lab with its fresh self."""

import pytest

from tenantnet.errors import LabError
from tenantnet.experiment import labs, runner
from tenantnet.experiment.spec import load_spec_text
from tenantnet.model import config as config_mod

SPEC = """
name: t
modes: [dnb, cnb]
lab: {compute_nodes: 2, network_nodes: 1, nodes: vm}
reachability: {instances: [2, 4], networks: [1, 2]}
bandwidth: {duration_s: 1}
"""


class FakeLab:
    made = []

    def __init__(self, prefix="tn", state_dir=None):
        self.prefix, self.state_dir = prefix, state_dir
        self.configs, self.restarts, self.down = [], [], False
        FakeLab.made.append(self)

    def is_up(self):
        return False

    @property
    def fabric(self):
        return self

    def is_empty(self):
        return True

    def up(self, path, timeout=None):
        self.configs.append(path)

    def restart_controller(self, path, timeout=None):
        self.restarts.append(path)

    def status(self):
        return {"nodes": {"net1": {"accel": "tcg"}}}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    import tenantnet.lab.lab as labmod
    FakeLab.made = []
    calls = {"reset": [], "teardown": [], "fail_reset": False}
    monkeypatch.setattr(labmod, "Lab", FakeLab)
    monkeypatch.setattr(labs, "settled_state", lambda lab: {"net1": f"ref {len(lab.restarts)}"})

    def reset(lab, reference):
        calls["reset"].append(reference)
        if calls["fail_reset"]:
            raise LabError("bridge brint-x left on compute1")
    monkeypatch.setattr(labs, "reset_lab", reset)
    monkeypatch.setattr(labs, "teardown", lambda lab: calls["teardown"].append(lab))
    spec = load_spec_text(SPEC)
    shared = labs.SharedLab(spec, runner.lab_networks(spec), str(tmp_path / "labs"))
    accel = []

    def factory(mode):
        return labs.LabFactory(spec, mode, prefix="tnq", config_dir=str(tmp_path / "labs"),
                               shared=shared, on_vm_accel=accel.append)
    return shared, factory, calls, accel, tmp_path


def test_one_lab_for_the_whole_run(fake):
    shared, factory, calls, accel, tmp = fake
    assert shared.networks == 2                       # the grid's largest network count
    for mode in ("dnb", "cnb"):
        f = factory(mode)
        for k in (1, 2, 1):
            with f(networks=k, label=f"{mode} k{k}") as lab:
                assert lab is FakeLab.made[0]
    shared.close()
    lab = FakeLab.made[0]
    assert len(FakeLab.made) == 1 and lab.configs == [str(tmp / "labs" / "dnb-k2.yaml")]
    assert lab.restarts == [str(tmp / "labs" / "cnb-k2.yaml")]
    # every part is followed by a reset against the current mode's fresh state
    assert calls["reset"] == [{"net1": "ref 0"}] * 3 + [{"net1": "ref 1"}] * 3
    assert calls["teardown"] == [lab] and accel == ["tcg"]
    kinds = [e["event"] for e in shared.events]
    assert kinds == ["built"] + ["reset"] * 3 + ["mode switched"] + ["reset"] * 3 + ["torn down"]
    assert (tmp / "labs" / "dnb-state.txt").read_text() == "== net1\nref 0"
    assert (tmp / "labs" / "cnb-state.txt").read_text() == "== net1\nref 1"
    with pytest.raises(Exception, match="asks for 3"):
        with factory("dnb")(networks=3, label="too many"):
            pass


def test_a_failed_reset_or_an_error_means_a_fresh_lab(fake):
    shared, factory, calls, _, _ = fake
    f = factory("dnb")
    calls["fail_reset"] = True
    with f(networks=1, label="first"):
        pass
    assert calls["teardown"] == [FakeLab.made[0]]
    calls["fail_reset"] = False
    with pytest.raises(RuntimeError):
        with f(networks=1, label="second"):
            raise RuntimeError("boom")
    assert len(FakeLab.made) == 2 and calls["teardown"] == FakeLab.made
    with f(networks=1, label="third"):
        pass
    assert len(FakeLab.made) == 3
    events = shared.events
    assert events[1]["event"] == "torn down after a failed reset"
    assert "brint-x" in events[1]["why"] and events[1]["after"] == "first"


def test_state_diff_and_transport_prefixes():
    ref = {"c1": "bridge br-int\n  port a\n", "c2": "bridge br-tun\n"}
    now = {"c1": "bridge br-int\n  port a\n  port b\n", "c2": "bridge br-tun\n"}
    assert labs.state_diff(ref, ref) == ""
    assert labs.state_diff(ref, now) == "c1: +  port b"
    topo = config_mod.load_text(load_spec_text(SPEC).lab_config_text("dnb", 2))
    assert labs.transport_prefixes(topo) == ["198.19.0.0/24", "198.19.101.0/24",
                                             "198.19.102.0/24"]
    topo = config_mod.load_text(load_spec_text(SPEC).lab_config_text("cnb", 1))
    assert "198.19.0.0/24" in labs.transport_prefixes(topo)
