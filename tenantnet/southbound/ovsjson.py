"""python-ovs's JSON parser in C, where this machine has one.

Every OVSDB message the controller reads goes through python-ovs's JSON parser. The `ovs`
package from PyPI builds its parser in C (`ovs._json`) only where Open vSwitch's library and
headers are installed, which Debian has no package for; without them it parses in pure
Python, one character at a time. Reaching the six nodes of a 1,000-VM lab (1,200 interfaces
each) after a restart took 6.2 s that way and 3.7 s with the C parser (docs/performance.md).

Debian's and Ubuntu's `python3-openvswitch` (installed with `openvswitch-switch`, and listed
in scripts/setup) ship that C parser, built for the system's Python. `use_c_parser()` loads
it into the running python-ovs when python-ovs has none, if its file is built for this
interpreter's ABI and it parses a sample as the pure-Python parser does; otherwise
python-ovs keeps its own parser. `TENANTNET_OVS_JSON=python` keeps the pure-Python parser
(for comparisons)."""

import glob
import importlib.machinery
import importlib.util
import logging
import os
import sys

LOG = logging.getLogger(__name__)

SYSTEM_DIRS = ("/usr/lib/python3/dist-packages/ovs", "/usr/lib/python3/site-packages/ovs")
ENV = "TENANTNET_OVS_JSON"
SAMPLE = ('{"id":7,"result":{"Interface":{"7a1c6f9e-0000-4000-8000-00000000000a":'
          '{"initial":{"name":"tap-w\\u00e9b1","ofport":-1,"options":["map",[["key","v"]]],'
          '"external_ids":["map",[]],"mtu":1.5e3,"error":["set",[]],"ok":true,'
          '"nothing":null}}}},"error":null}')

_state = {"done": False, "reason": None}


def parser_in_use():
    """"C" or "PYTHON": the parser python-ovs uses now."""
    import ovs.json
    return ovs.json.PARSER


def use_c_parser(dirs=SYSTEM_DIRS):
    """Make python-ovs parse with a C parser (once per process; idempotent). Returns
    whether it does; the reason when not is logged once (debug) and kept in reason()."""
    import ovs
    import ovs.json
    if ovs.json.PARSER == ovs.json.PARSER_C:
        return True
    if _state["done"]:
        return False
    _state["done"] = True
    if os.environ.get(ENV, "").lower() == "python":
        return _keep(f"{ENV}=python")
    path = system_parser(dirs)
    if path is None:
        return _keep("no C parser of python-ovs for this interpreter "
                     f"({importlib.machinery.EXTENSION_SUFFIXES[0]}) in {', '.join(dirs)}")
    try:
        spec = importlib.util.spec_from_file_location("ovs._json", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if parse(SAMPLE, module.Parser) != parse(SAMPLE, None):
            return _keep(f"{path} parses differently from python-ovs's own parser")
    except Exception as exc:  # noqa: BLE001 -- any failure: keep the parser that works
        return _keep(f"{path} did not load: {exc}")
    sys.modules["ovs._json"] = module
    ovs._json = module
    # ovs.json reaches the parser as `ovs._json`; its own `import ovs._json` failed, so
    # the name `ovs` is not bound in it
    vars(ovs.json).setdefault("ovs", ovs)
    ovs.json.PARSER = ovs.json.PARSER_C
    LOG.debug("python-ovs parses JSON with %s", path)
    return True


def system_parser(dirs=SYSTEM_DIRS):
    """The path of a C parser module built for this interpreter in *dirs*, or None."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]     # e.g. .cpython-311-x86_64-linux-gnu.so
    for directory in dirs:
        for path in sorted(glob.glob(os.path.join(directory, "_json*"))):
            if path.endswith(suffix):
                return path
    return None


def parse(text, parser_class):
    """*text* parsed by *parser_class* (a C parser's class), or by python-ovs's pure-Python
    parser when it is None."""
    import ovs.json
    if parser_class is None:
        parser = object.__new__(ovs.json.Parser)
        parser.__init__(check_trailer=True)
    else:
        parser = parser_class(check_trailer=True)
    parser.feed(text)
    return parser.finish()


def reason():
    return _state["reason"]


def _keep(why):
    _state["reason"] = why
    LOG.info("python-ovs parses OVSDB messages in pure Python, which is slower at scale: %s "
             "(python3-openvswitch provides a C parser)", why)
    return False
