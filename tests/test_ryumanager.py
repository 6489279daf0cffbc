"""`ryu-manager` (tenantnet.controller.ryumanager): Ryu's usage on os-ken.

Each case runs the installed console script as a user would, in a fresh process (oslo's
CONF is parsed once per process). The OpenFlow case uses a real ovs-vswitchd in a
namespace of its own."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, lab_prerequisites

BIN = os.path.join(os.path.dirname(sys.executable), "ryu-manager")
RYU_MANAGER = [BIN] if os.access(BIN, os.X_OK) else \
    [sys.executable, "-m", "tenantnet.controller.ryumanager"]


def ryu_manager(*args, timeout=30, **kwargs):
    return subprocess.run([*RYU_MANAGER, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def no_traceback(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def test_version_and_help():
    proc = ryu_manager("--version")
    assert proc.returncode == 0
    out = proc.stdout + proc.stderr
    assert "ryu-manager" in out and "os-ken" in out
    proc = ryu_manager("--help")
    assert proc.returncode == 0
    for flag in ("--ofp-listen-host", "--ofp-tcp-listen-port", "--config-file", "--verbose",
                 "--default-log-level", "--log-file", "--tenantnet-config"):
        assert flag in proc.stdout, flag


def test_app_needing_a_dropped_ryu_module_names_it(tmp_path):
    app = tmp_path / "rest_app.py"
    app.write_text(textwrap.dedent("""
        from ryu.app.wsgi import WSGIApplication
        from ryu.base import app_manager

        class RestApp(app_manager.RyuApp):
            _CONTEXTS = {"wsgi": WSGIApplication}
    """))
    proc = ryu_manager(str(app))
    assert proc.returncode == 1
    no_traceback(proc)
    assert "ryu.app.wsgi" in proc.stderr
    assert "os-ken" in proc.stderr


@pytest.mark.parametrize("args, expect", [
    (["no_such_module_xyz"], "no_such_module_xyz"),
    (["/nonexistent/app.py"], "no such file"),
    (["--config-file", "/nonexistent.conf", "tenantnet.app"], "/nonexistent.conf"),
    (["tenantnet.app", "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", "1"],
     "[tenantnet] config"),
])
def test_errors_are_one_line(args, expect):
    proc = ryu_manager(*args)
    assert proc.returncode != 0
    no_traceback(proc)
    assert expect in proc.stderr


def test_app_import_error_is_one_line(tmp_path):
    app = tmp_path / "broken.py"
    app.write_text("from ryu.base import app_manager\nraise ValueError('boom in the app')\n")
    proc = ryu_manager(str(app))
    assert proc.returncode == 1
    no_traceback(proc)
    assert "boom in the app" in proc.stderr and "broken.py" in proc.stderr


def settings_in_subprocess(argv):
    """Settings.from_conf after ryu-manager's own parsing of *argv*, in a fresh process."""
    code = textwrap.dedent(f"""
        import json, sys
        from tenantnet.controller import ryumanager, settings
        from os_ken import cfg
        ryumanager.parse({argv!r})
        try:
            s = settings.Settings.from_conf(cfg.CONF)
        except Exception as exc:
            print(json.dumps({{"error": str(exc)}})); sys.exit(0)
        print(json.dumps({{"config": s.config, "echo": s.echo_interval,
                           "api_listen": s.api_listen, "remotes": s.ovsdb_remotes,
                           "netns": {{k: [v.netns, v.rundir] for k, v in s.node_netns.items()}},
                           "listen": cfg.CONF.ofp_listen_host}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    import json
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_config_file_options_and_command_line_override(tmp_path):
    conf = tmp_path / "tenantnet.conf"
    conf.write_text(textwrap.dedent("""
        [DEFAULT]
        ofp_listen_host = 127.0.0.9

        [tenantnet]
        config = /etc/tenantnet/config.yaml
        api_listen = 127.0.0.9:8080
        echo_interval = 5
        ovsdb_remote = compute1:unix:/run/c1/db.sock,net1:tcp:127.0.0.2:6640
        node_netns = compute1:tn-compute1@/tmp/tn/compute1
    """))
    got = settings_in_subprocess(["tenantnet.app", "--config-file", str(conf)])
    assert got == {"config": "/etc/tenantnet/config.yaml", "echo": 5.0,
                   "api_listen": "127.0.0.9:8080", "listen": "127.0.0.9",
                   "remotes": {"compute1": "unix:/run/c1/db.sock", "net1": "tcp:127.0.0.2:6640"},
                   "netns": {"compute1": ["tn-compute1", "/tmp/tn/compute1"]}}
    got = settings_in_subprocess(["tenantnet.app", "--config-file", str(conf),
                                  "--tenantnet-echo-interval", "2", "--ofp-listen-host",
                                  "127.0.0.7"])
    assert got["echo"] == 2.0 and got["listen"] == "127.0.0.7"
    assert got["config"] == "/etc/tenantnet/config.yaml"


def test_unknown_key_in_tenantnet_section_is_refused(tmp_path):
    conf = tmp_path / "typo.conf"
    conf.write_text("[tenantnet]\nconfig = x.yaml\napi_lisen = 127.0.0.1:1\n")
    got = settings_in_subprocess(["tenantnet.app", "--config-file", str(conf)])
    assert str(conf) in got["error"] and "api_lisen" in got["error"]
    assert "unknown option" in got["error"]


def test_bad_api_listen_is_refused(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[tenantnet]\nconfig = x.yaml\napi_listen = 127.0.0.1\n")
    got = settings_in_subprocess(["tenantnet.app", "--config-file", str(conf)])
    assert "api_listen" in got["error"] and "HOST:PORT" in got["error"]


# -- a classic Ryu app, unchanged, on a real switch ---------------------------------------
CLASSIC_APP = """
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, set_ev_cls
from ryu.ofproto import ofproto_v1_3


class MarkerApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def features(self, ev):
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        match = parser.OFPMatch(eth_type=0x0806)
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, cookie=0x77, priority=4321, match=match,
                                      instructions=inst))
        self.logger.info("classic app programmed dpid %016x", dp.id)
"""


@pytest.mark.lab
@pytest.mark.skipif(lab_prerequisites() is not None, reason=str(lab_prerequisites()))
def test_classic_ryu_app_programs_a_real_switch(tmp_path):
    from tenantnet.lab import netns as ns
    from tenantnet.lab.ovs import OvsInstance
    netns = f"tnrm-{os.getpid() % 100000}"
    app = tmp_path / "marker_app.py"
    app.write_text(CLASSIC_APP)
    log = tmp_path / "ryu.log"
    ovs = OvsInstance(str(tmp_path / "ovs"), netns=netns)
    proc = None
    ns.add(netns)
    try:
        ns.run(["ip", "link", "set", "lo", "up"], netns=netns)
        ovs.start()
        with open(log, "w") as fh:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, *RYU_MANAGER, str(app),
                                     "--ofp-listen-host", "127.0.0.1",
                                     "--ofp-tcp-listen-port", "16653"],
                                    stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        ovs.vsctl("add-br", "brm", "--", "set", "bridge", "brm", "datapath_type=netdev",
                  "protocols=OpenFlow13", "fail_mode=secure")
        ovs.vsctl("set-controller", "brm", "tcp:127.0.0.1:16653")
        deadline = time.time() + 30
        flows = ""
        while time.time() < deadline:
            flows = ovs.ofctl("dump-flows", "brm", check=False).stdout
            if "priority=4321" in flows:
                break
            time.sleep(0.2)
        assert "cookie=0x77" in flows and "priority=4321,arp" in flows, \
            f"{flows}\n{log.read_text()}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
        proc = None
        assert "Traceback" not in log.read_text()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        ovs.stop()
        ns.delete(netns)
