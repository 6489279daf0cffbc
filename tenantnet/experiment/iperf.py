"""iperf3 between two network namespaces, with its JSON output parsed into flat records.

One measurement = one iperf3 server (``iperf3 -s -1 -J``: it serves one test, then exits)
started in the receiving namespace, bound to that namespace's address on a port of its own,
and one client (``iperf3 -c ... -J --get-server-output``) in the sending namespace. The
server is a child process of ours and is stopped by its pid if it is still there afterwards.
``measure_both_directions`` runs the client in each namespace in turn, as the paper measured
"in both directions individually".

What iperf3 3.12 (Debian 12) emits, and what is taken from where:

TCP, client JSON ``end``:
    ``sum_received.bits_per_second`` -> bits_per_second (what the receiver got),
    ``sum_sent.bits_per_second``     -> sender_bits_per_second,
    ``sum_sent.retransmits``         -> retransmits,
    ``sender_tcp_congestion``        -> tcp_congestion.
UDP, client JSON ``end`` (the client merges the server's counters into it):
    ``sum_received.bits_per_second`` -> bits_per_second (received; ``sum`` carries the
    *sent* rate in 3.12, kept as sender_bits_per_second), ``sum.jitter_ms``,
    ``sum.packets`` (datagrams sent), ``sum.lost_packets``, ``sum.lost_percent``.
    ``out_of_order`` is **not** in ``sum`` in 3.12: it is only per stream, in
    ``end.streams[i].udp.out_of_order`` (and in the server's own JSON, which
    ``--get-server-output`` embeds as ``server_output_json``); the streams are summed.
    Older/newer versions that put it in ``sum`` are read from there first.
Errors: iperf3 -J reports them as a top-level ``"error"`` string (3.12 may even exit 0 with
it, e.g. "unable to connect to server: Connection refused"), so that key is always checked.
"""

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from tenantnet.errors import TenantnetError

IPERF3 = "iperf3"
DEFAULT_PORT_BASE = 15201

_port_lock = threading.Lock()
_port_counter = itertools.count()


class IperfError(TenantnetError):
    """iperf3 could not be run, failed, or produced output we cannot read."""


# -- parsing ---------------------------------------------------------------------------
def _num(value):
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value):
    v = _num(value)
    return None if v is None else int(round(v))


def load_json(text, what="iperf3"):
    """Parse iperf3's -J output; raise IperfError with the text's start when it is not JSON."""
    text = (text or "").strip()
    if not text:
        raise IperfError(f"{what}: no output")
    try:
        doc = json.loads(text)
    except ValueError:
        # iperf3 sometimes prints a plain-text line before/after the JSON object.
        start, end = text.find("{"), text.rfind("}")
        try:
            doc = json.loads(text[start:end + 1]) if 0 <= start < end else None
        except ValueError:
            doc = None
        if doc is None:
            raise IperfError(f"{what}: output is not JSON: {text[:300]!r}") from None
    if not isinstance(doc, dict):
        raise IperfError(f"{what}: unexpected JSON (not an object)")
    return doc


def error_of(doc):
    """The error iperf3 reported in *doc* (client, or embedded server output), or None."""
    if not isinstance(doc, dict):
        return None
    if doc.get("error"):
        return str(doc["error"])
    srv = doc.get("server_output_json")
    if isinstance(srv, dict) and srv.get("error"):
        return "server: " + str(srv["error"])
    return None


def protocol_of(doc):
    proto = (((doc.get("start") or {}).get("test_start") or {}).get("protocol") or "")
    return proto.lower() or None


def _out_of_order(end, server_doc=None):
    s = end.get("sum") or {}
    if "out_of_order" in s:
        return _int(s["out_of_order"])
    for source in (end, ((server_doc or {}).get("end") or {})):
        vals = [((st or {}).get("udp") or {}).get("out_of_order")
                for st in source.get("streams") or []]
        vals = [v for v in vals if v is not None]
        if vals:
            return int(sum(_int(v) for v in vals))
    return None


def _common(doc):
    start = doc.get("start") or {}
    ts = start.get("test_start") or {}
    end = doc.get("end") or {}
    cpu = end.get("cpu_utilization_percent") or {}
    return {
        "iperf_version": start.get("version"),
        "duration_s": _num(ts.get("duration")),
        "streams": _int(ts.get("num_streams")),
        "blksize": _int(ts.get("blksize")),
        "cpu_sender_pct": _num(cpu.get("host_total")),
        "cpu_receiver_pct": _num(cpu.get("remote_total")),
    }


def parse_tcp(doc):
    """Flat record of a TCP client JSON (see the module docstring for the sources)."""
    err = error_of(doc)
    if err:
        raise IperfError(f"iperf3: {err}")
    end = doc.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if "bits_per_second" not in received:
        raise IperfError("iperf3 TCP JSON has no end.sum_received.bits_per_second")
    rec = {"protocol": "tcp", **_common(doc),
           "bits_per_second": _num(received.get("bits_per_second")),
           "sender_bits_per_second": _num(sent.get("bits_per_second")),
           "bytes": _int(received.get("bytes")),
           "retransmits": _int(sent.get("retransmits")),
           "tcp_congestion": end.get("sender_tcp_congestion")}
    rtts = [((st or {}).get("sender") or {}).get("mean_rtt") for st in end.get("streams") or []]
    rtts = [_num(r) for r in rtts if _num(r) is not None]
    rec["mean_rtt_us"] = sum(rtts) / len(rtts) if rtts else None
    return rec


def parse_udp(doc):
    """Flat record of a UDP client JSON (see the module docstring for the sources)."""
    err = error_of(doc)
    if err:
        raise IperfError(f"iperf3: {err}")
    end = doc.get("end") or {}
    s = end.get("sum") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if "bits_per_second" not in s and "bits_per_second" not in received:
        raise IperfError("iperf3 UDP JSON has no end.sum / end.sum_received")
    bps = received.get("bits_per_second", s.get("bits_per_second"))
    server_doc = doc.get("server_output_json")
    target = ((doc.get("start") or {}).get("test_start") or {}).get("target_bitrate")
    return {"protocol": "udp", **_common(doc),
            "bits_per_second": _num(bps),
            "sender_bits_per_second": _num(sent.get("bits_per_second", s.get("bits_per_second"))),
            "target_bits_per_second": _num(target),
            "bytes": _int(received.get("bytes", s.get("bytes"))),
            "jitter_ms": _num(s.get("jitter_ms", received.get("jitter_ms"))),
            "packets": _int(sent.get("packets", s.get("packets"))),
            "lost_packets": _int(s.get("lost_packets", received.get("lost_packets"))),
            "lost_percent": _num(s.get("lost_percent", received.get("lost_percent"))),
            "out_of_order": _out_of_order(end, server_doc if isinstance(server_doc, dict)
                                          else None)}


def parse(doc):
    """parse_tcp or parse_udp, chosen by the test's protocol."""
    err = error_of(doc)
    if err:
        raise IperfError(f"iperf3: {err}")
    proto = protocol_of(doc)
    if proto == "tcp":
        return parse_tcp(doc)
    if proto == "udp":
        return parse_udp(doc)
    raise IperfError(f"iperf3 JSON: unknown protocol {proto!r}")


# -- running ---------------------------------------------------------------------------
def check_installed():
    if not shutil.which(IPERF3):
        raise IperfError("iperf3 not found: install the 'iperf3' package")


def version():
    """iperf3's version line, e.g. 'iperf 3.12 (cJSON 1.7.15)', or None."""
    if not shutil.which(IPERF3):
        return None
    try:
        out = subprocess.run([IPERF3, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    line = (out.stdout or out.stderr or "").strip().splitlines()
    return line[0] if line else None


def _nsexec(netns, cmd):
    """argv running *cmd* in *netns*: a namespace name on this host, None (this host's own
    namespace), or an executor (an endpoint on another host, e.g. inside a node VM: the
    lab's endpoint_executor), whose wrap() gives the argv."""
    if hasattr(netns, "wrap"):
        return netns.wrap([str(c) for c in cmd])
    return (["ip", "netns", "exec", netns] if netns else []) + list(cmd)


def _run_in(netns, cmd, timeout):
    return subprocess.run(_nsexec(netns, cmd), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def _name(netns):
    return getattr(netns, "description", netns)


def _listening(netns, port):
    proc = _run_in(netns, ["ss", "-Hltn", f"sport = :{port}"], timeout=10)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _in_use(netns, port):
    proc = _run_in(netns, ["ss", "-Htuan", f"sport = :{port}"], timeout=10)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def pick_port(netns, base=DEFAULT_PORT_BASE, span=2000):
    """A TCP/UDP port free in *netns*: successive calls in one process never repeat one."""
    for _ in range(span):
        with _port_lock:
            port = base + next(_port_counter) % span
        if not _in_use(netns, port):
            return port
    raise IperfError(f"no free port in {base}..{base + span - 1} in {_name(netns)}")


def _read(path):
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _stop(proc, timeout=5.0):
    """Stop our own server process (by its Popen handle, i.e. its pid)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def run_iperf(server_netns, server_ip, client_netns, client_ip=None, protocol="tcp",
              duration=10, udp_rate="1M", port=None, omit=0, parallel=1,
              connect_timeout_ms=5000, start_timeout=10.0, raw=None):
    """One iperf3 test: data flows from *client_netns* to *server_netns* (server on
    *server_ip*). Returns the parsed record (parse_tcp / parse_udp) plus the port and the
    command line. *raw*, when a dict, receives the client's and server's raw JSON text.

    Raises IperfError with iperf3's own error text when anything fails."""
    check_installed()
    protocol = protocol.lower()
    if protocol not in ("tcp", "udp"):
        raise IperfError(f"protocol {protocol!r}: use 'tcp' or 'udp'")
    duration = int(duration)
    if duration < 1:
        raise IperfError(f"iperf3 duration {duration}s: use at least 1 s")
    port = int(port) if port else pick_port(server_netns)
    server_cmd = [IPERF3, "-s", "-1", "-J", "-B", server_ip, "-p", str(port)]
    client_cmd = [IPERF3, "-c", server_ip, "-p", str(port), "-t", str(duration), "-J",
                  "--get-server-output", "--connect-timeout", str(int(connect_timeout_ms))]
    if client_ip:
        client_cmd += ["-B", client_ip]
    if omit:
        client_cmd += ["-O", str(int(omit))]
    if parallel and int(parallel) > 1:
        client_cmd += ["-P", str(int(parallel))]
    if protocol == "udp":
        client_cmd += ["-u", "-b", str(udp_rate)]
    where = (f"iperf3 {protocol} {_name(client_netns)} -> {_name(server_netns)} "
             f"({server_ip}:{port})")

    tmp = tempfile.mkdtemp(prefix="tnb-iperf-")
    out_path, err_path = os.path.join(tmp, "server.json"), os.path.join(tmp, "server.err")
    server = None
    try:
        with open(out_path, "w") as out, open(err_path, "w") as err:
            server = subprocess.Popen(_nsexec(server_netns, server_cmd), stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=err)
        deadline = time.time() + start_timeout
        while not _listening(server_netns, port):
            if server.poll() is not None:
                text = _read(out_path) + _read(err_path)
                try:
                    msg = error_of(load_json(_read(out_path))) or text.strip()
                except IperfError:
                    msg = text.strip()
                raise IperfError(f"{where}: the server exited at start-up "
                                 f"(rc {server.returncode}): {msg or 'no output'}")
            if time.time() > deadline:
                raise IperfError(f"{where}: the server did not listen within "
                                 f"{start_timeout:.0f}s")
            time.sleep(0.02)
        limit = duration + int(omit) + 30
        try:
            client = _run_in(client_netns, client_cmd, timeout=limit)
        except subprocess.TimeoutExpired:
            raise IperfError(f"{where}: the client did not finish within {limit}s") from None
        except OSError as exc:
            raise IperfError(f"{where}: cannot run the client: {exc}") from None
        if isinstance(raw, dict):
            raw["client"] = client.stdout
        try:
            doc = load_json(client.stdout, what=where)
        except IperfError as exc:
            extra = (client.stderr or "").strip()
            raise IperfError(f"{exc} (rc {client.returncode}{'; ' + extra if extra else ''})") \
                from None
        err = error_of(doc)
        if err or client.returncode != 0:
            srv_text = _read(err_path).strip()
            detail = err or (client.stderr or "").strip() or f"exit status {client.returncode}"
            raise IperfError(f"{where}: {detail}" + (f" (server: {srv_text})" if srv_text else ""))
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if isinstance(raw, dict):
            raw["server"] = _read(out_path)
        rec = parse(doc)
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    rec.update(port=port, client_cmd=" ".join(client_cmd))
    return rec


def measure_both_directions(a, b, protocol="tcp", duration=10, udp_rate="1M",
                            names=("a->b", "b->a"), **kwargs):
    """Run iperf3 in each direction in turn between endpoints *a* and *b*, each a pair
    (netns, ip). Returns two records, each with ``direction`` set from *names*: the first
    sends from a to b (client in a), the second from b to a."""
    out = []
    for (src, dst), name in zip(((a, b), (b, a)), names):
        rec = run_iperf(dst[0], dst[1], src[0], src[1], protocol=protocol, duration=duration,
                        udp_rate=udp_rate, **kwargs)
        rec["direction"] = name
        out.append(rec)
    return out


def tcp_congestion_control(netns):
    """The namespace's net.ipv4.tcp_congestion_control (it is per namespace), or None."""
    try:
        proc = _run_in(netns, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"], timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None
