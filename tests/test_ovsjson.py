"""python-ovs's C JSON parser loaded from the system's python3-openvswitch
(southbound.ovsjson): it parses what the pure-Python parser parses, the same way, real
OVSDB answers included; a module built for another interpreter is not loaded; and
TENANTNET_OVS_JSON=python keeps the pure-Python parser. Each case in a fresh interpreter
(the choice is made once per process)."""

import json
import os
import subprocess
import sys

import pytest

from tenantnet.southbound import ovsjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_system_parser = pytest.mark.skipif(
    ovsjson.system_parser() is None,
    reason="no python3-openvswitch C parser for this interpreter (scripts/setup installs it)")


def run(code, **env):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, **env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_system_parser
def test_the_c_parser_is_used_and_parses_as_python_does():
    with open("/usr/share/openvswitch/vswitch.ovsschema") as fh:
        text = fh.read()
    out = run("""
import json, sys
from tenantnet.southbound import ovsjson
import ovs.json
text = open("/usr/share/openvswitch/vswitch.ovsschema").read()
samples = [ovsjson.SAMPLE, text, '[1, -2.5e-3, "\\\\u00e9\\\\n", {"a": [true, false, null]}]']
used = ovsjson.use_c_parser()
c = [ovsjson.parse(s, ovs._json.Parser) for s in samples]
py = [ovsjson.parse(s, None) for s in samples]
print(json.dumps({"used": used, "parser": ovsjson.parser_in_use(),
                  "type": type(ovs.json.Parser()).__module__, "same": c == py,
                  "schema_tables": len(c[1]["tables"])}))
""")
    assert out == {"used": True, "parser": "C", "type": "ovs._json", "same": True,
                   "schema_tables": len(json.loads(text)["tables"])}


def test_pure_python_when_asked():
    out = run("""
import json
from tenantnet.southbound import ovsjson
print(json.dumps([ovsjson.use_c_parser(), ovsjson.parser_in_use(), ovsjson.reason()]))
""", TENANTNET_OVS_JSON="python")
    assert out == [False, "PYTHON", "TENANTNET_OVS_JSON=python"]


def test_a_module_for_another_interpreter_is_not_loaded(tmp_path):
    (tmp_path / "_json.cpython-299-x86_64-linux-gnu.so").write_bytes(b"not a module")
    out = run(f"""
import json
from tenantnet.southbound import ovsjson
print(json.dumps([ovsjson.use_c_parser(dirs=({str(tmp_path)!r},)), ovsjson.parser_in_use(),
                  ovsjson.reason()]))
""")
    assert out[:2] == [False, "PYTHON"] and "no C parser of python-ovs" in out[2]


def test_a_broken_module_is_not_loaded(tmp_path):
    import importlib.machinery
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / f"_json{suffix}").write_bytes(b"not a module")
    out = run(f"""
import json
from tenantnet.southbound import ovsjson
print(json.dumps([ovsjson.use_c_parser(dirs=({str(tmp_path)!r},)), ovsjson.parser_in_use(),
                  ovsjson.reason()]))
""")
    assert out[:2] == [False, "PYTHON"] and "did not load" in out[2]
