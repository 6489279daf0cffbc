"""ovs-vsctl and ovs-ofctl on a host, and reading their answers.

`local_vsctl()` and `local_ofctl()` give the *vsctl(*args)* and *ofctl(*args)* callables
node bootstrap takes, for a real host (the lab hands its OvsInstance's instead); `output`,
`unquote` and `parse_map` read what ovs-vsctl prints."""

import re

from tenantnet.node.hostexec import LocalExecutor


def output(proc):
    """A finished command's stdout, stripped ('' when it has none)."""
    return (getattr(proc, "stdout", "") or "").strip()


def unquote(value):
    """ovs-vsctl's "quoted value" -> quoted value (other values stripped only)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_map(text):
    """ovs-vsctl's {k=v, k2="v 2"} -> dict."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    out = {}
    for m in re.finditer(r'\s*([^=,\s]+)=("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)', text):
        out[unquote(m.group(1))] = unquote(m.group(2))
    return out


def local_vsctl(db=None, executor=None, timeout=20):
    """vsctl(*args) for a real host: `ovs-vsctl [--db=DB] --timeout=T ARGS`."""
    ex = executor or LocalExecutor()
    head = ["ovs-vsctl"] + ([f"--db={db}"] if db else []) + [f"--timeout={timeout}"]

    def vsctl(*args):
        return ex.run([*head, *args], timeout=timeout + 10)
    return vsctl


def local_ofctl(executor=None, timeout=20):
    """ofctl(*args) for a real host: `ovs-ofctl -O OpenFlow13 ARGS`."""
    ex = executor or LocalExecutor()

    def ofctl(*args):
        return ex.run(["ovs-ofctl", "-O", "OpenFlow13", *args], timeout=timeout)
    return ofctl
