"""Raw-socket ICMP echo prober: when did each target answer for the first time?

Run inside a probe namespace (the network node's interface on a tenant network)::

    ip netns exec tn-p-probe.t1.net1.net1 python -m tenantnet.experiment.prober \\
        --iface eth0 --src-ip 10.1.0.1 --src-mac 02:70:e0:7c:2e:66 \\
        --target 10.1.0.11=02:74:6e:01:00:00 --target 10.1.0.12=02:74:6e:01:00:01 \\
        --interval-ms 5 --timeout 60

or with ``--targets FILE`` (JSON: ``[{"ip": ..., "mac": ...}, ...]`` or ``{ip: mac}``).

Every *interval* (default 5 ms) each armed target that has not answered yet gets one ICMP
echo request, sent as a complete Ethernet frame through an AF_PACKET socket straight to the
target's known MAC: no ARP by the probe, no neighbour-cache timing, no routing. Replies
are read from the same socket; the time of a reply is the kernel's receive timestamp
(SO_TIMESTAMPNS, wall clock, so comparable with time.time() in other processes), or
time.time() at read when the kernel gives none. The target answers the probe's IP, so it
ARPs for it: the probe's own kernel answers that (the probe interface has its address).

Output: a line ``ready`` on stdout once the socket is open (probing starts right after);
with ``--live`` a line ``reply IP TIME`` for each first reply as it arrives; at the end,
one JSON line ``{ip: first_reply_time_or_null, ...}``. A summary of what was sent goes to
stderr. The prober ends when every target has answered (or was dropped),
at the timeout/deadline, on ``stop``, or on SIGINT/SIGTERM (partial results are printed).

With ``--stdin`` the targets start unarmed and commands are read from stdin, one a line::

    arm IP          start probing IP (e.g. once its placement request was answered)
    drop IP         stop waiting for IP (e.g. its placement failed): reported as null
    deadline EPOCH  end at this wall-clock time at the latest
    stop            end now

Arming is an optimisation, not a measurement choice: a target whose interface is not yet
configured cannot answer, so probing it earlier only floods the tenant network with frames
for a MAC nobody has learnt yet. The recorded time is the first reply either way.

Standard library only (it starts in a fresh interpreter for every probe namespace).
"""

import argparse
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
PAYLOAD_LEN = 56                      # what ping sends


class ProberError(Exception):
    pass


def _mac_bytes(mac):
    parts = str(mac).split(":")
    if len(parts) != 6:
        raise ProberError(f"bad MAC {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ProberError(f"bad MAC {mac!r}") from None


def _ip_bytes(ip):
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise ProberError(f"bad IPv4 address {ip!r}") from None


def checksum(data):
    """The Internet checksum (RFC 1071) of *data*."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_frame(src_mac, dst_mac, src_ip, dst_ip, ident, seq, ip_id=0):
    """A complete Ethernet/IPv4/ICMP echo-request frame (checksums filled in)."""
    payload = struct.pack("!d", time.time()) + bytes(range(PAYLOAD_LEN - 8))
    icmp = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    total_len = 20 + len(icmp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total_len, ip_id & 0xFFFF, 0x4000, 64, 1, 0,
                     src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + icmp


def parse_reply(frame, ident, my_ip):
    """Source IP (packed) of an ICMP echo reply to us with our identifier, else None."""
    if len(frame) < 14 + 20 + 8:
        return None
    if frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != 1 or ip[16:20] != my_ip or len(ip) < ihl + 8:
        return None
    icmp = ip[ihl:]
    if icmp[0] != ICMP_ECHO_REPLY:
        return None
    if struct.unpack("!H", icmp[4:6])[0] != ident:
        return None
    return ip[12:16]


def load_targets(path=None, items=()):
    """[(ip, mac)] from a JSON file and/or IP=MAC strings."""
    targets = []
    if path:
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ProberError(f"{path}: cannot read targets ({exc})") from None
        if isinstance(data, dict):
            data = [{"ip": k, "mac": v} for k, v in data.items()]
        if not isinstance(data, list):
            raise ProberError(f"{path}: expected a list of {{ip, mac}} or a mapping ip -> mac")
        for i, t in enumerate(data):
            if not isinstance(t, dict) or "ip" not in t or "mac" not in t:
                raise ProberError(f"{path}: entry {i}: expected {{\"ip\": ..., \"mac\": ...}}")
            targets.append((str(t["ip"]), str(t["mac"])))
    for item in items:
        ip, sep, mac = str(item).partition("=")
        if not sep:
            raise ProberError(f"--target {item!r}: expected IP=MAC")
        targets.append((ip, mac))
    seen = set()
    for ip, mac in targets:
        _ip_bytes(ip)
        _mac_bytes(mac)
        if ip in seen:
            raise ProberError(f"target {ip} is given twice")
        seen.add(ip)
    return targets


class Prober:
    def __init__(self, iface, src_ip, src_mac, targets, interval_ms=5.0, armed=True,
                 live=None):
        self.iface = iface
        self.live = live                      # a file: "reply IP TIME" per first reply
        self.src_ip = _ip_bytes(src_ip)
        self.src_mac = _mac_bytes(src_mac)
        self.interval = max(0.0005, float(interval_ms) / 1000.0)
        self.ident = os.getpid() & 0xFFFF
        self.targets = {ip: _mac_bytes(mac) for ip, mac in targets}
        self.by_packed = {_ip_bytes(ip): ip for ip in self.targets}
        self.first_reply = {ip: None for ip in self.targets}
        self.armed = {ip: None for ip in self.targets}       # ip -> time armed (or None)
        self.dropped = set()
        self.sent = {ip: 0 for ip in self.targets}
        self.seq = {ip: 0 for ip in self.targets}
        self.ip_id = 0
        if armed:
            now = time.time()
            for ip in self.targets:
                self.armed[ip] = now
        self.sock = None

    def open(self):
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            sock.bind((self.iface, ETH_P_IP))
        except PermissionError:
            raise ProberError("raw sockets need root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise ProberError(f"cannot open a packet socket on {self.iface}: "
                              f"{exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        sock.setblocking(False)
        self.sock = sock

    # -- commands --------------------------------------------------------------------
    def arm(self, ip):
        if ip in self.targets and self.armed[ip] is None:
            self.armed[ip] = time.time()

    def drop(self, ip):
        if ip in self.targets:
            self.dropped.add(ip)

    def pending(self):
        return [ip for ip in self.targets
                if self.first_reply[ip] is None and ip not in self.dropped]

    def done(self):
        return not self.pending()

    # -- I/O -------------------------------------------------------------------------
    def send_round(self):
        for ip in self.pending():
            if self.armed[ip] is None:
                continue
            self.seq[ip] = (self.seq[ip] + 1) & 0xFFFF
            self.ip_id += 1
            frame = echo_frame(self.src_mac, self.targets[ip], self.src_ip, _ip_bytes(ip),
                               self.ident, self.seq[ip], self.ip_id)
            try:
                self.sock.send(frame)
                self.sent[ip] += 1
            except (BlockingIOError, InterruptedError):
                pass                            # the queue is full: next round
            except OSError as exc:              # e.g. ENETDOWN while eth0 is being set up
                if exc.errno not in (100, 105):   # ENETDOWN, ENOBUFS
                    raise

    def read_all(self):
        while True:
            try:
                frame, ancdata, _flags, addr = self.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            now = time.time()
            if addr and len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            src = parse_reply(frame, self.ident, self.src_ip)
            if src is None:
                continue
            ip = self.by_packed.get(src)
            if ip is None or self.first_reply[ip] is not None:
                continue
            stamp = now
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    if sec > 0:
                        stamp = sec + nsec / 1e9
            self.first_reply[ip] = stamp
            if self.live is not None:
                print(f"reply {ip} {stamp:.6f}", file=self.live, flush=True)

    def run(self, deadline, commands=None, out=sys.stdout):
        """Probe until done, *deadline* (epoch seconds) or a stop; *commands*: a readable
        file object with command lines (see the module docstring), or None."""
        print("ready", file=out, flush=True)
        next_send = time.monotonic()
        buf = b""
        cmd_fd = commands.fileno() if commands is not None else None
        while not self.done():
            now_wall = time.time()
            if now_wall >= deadline:
                break
            wait = max(0.0, min(next_send - time.monotonic(), deadline - now_wall))
            fds = [self.sock] + ([cmd_fd] if cmd_fd is not None else [])
            readable, _, _ = select.select(fds, [], [], wait)
            if self.sock in readable:
                self.read_all()
            if cmd_fd is not None and cmd_fd in readable:
                chunk = os.read(cmd_fd, 65536)
                if not chunk:               # the caller closed stdin: no more commands
                    cmd_fd = None
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word, _, arg = line.decode(errors="replace").strip().partition(" ")
                    if word == "arm":
                        self.arm(arg.strip())
                    elif word == "drop":
                        self.drop(arg.strip())
                    elif word == "deadline":
                        try:
                            deadline = float(arg)
                        except ValueError:
                            pass
                    elif word == "stop":
                        return
            if time.monotonic() >= next_send:
                self.send_round()
                next_send += self.interval
                if next_send < time.monotonic():          # fell behind: no burst catch-up
                    next_send = time.monotonic() + self.interval
        self.read_all()

    def result(self):
        return {ip: self.first_reply[ip] for ip in self.targets}

    def summary(self):
        answered = sum(1 for t in self.first_reply.values() if t is not None)
        return (f"prober {self.iface}: {answered}/{len(self.targets)} targets answered, "
                f"{sum(self.sent.values())} echo requests sent")


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tenantnet.experiment.prober",
                                description="first ICMP echo reply time of each target")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--src-ip", required=True, help="the probe's own IP")
    p.add_argument("--src-mac", help="the probe's own MAC (default: the interface's)")
    p.add_argument("--targets", help="JSON file: [{ip, mac}] or {ip: mac}")
    p.add_argument("--target", action="append", default=[], metavar="IP=MAC")
    p.add_argument("--interval-ms", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds from start")
    p.add_argument("--deadline", type=float, help="wall-clock end (epoch seconds)")
    p.add_argument("--stdin", action="store_true",
                   help="targets start unarmed; read arm/drop/deadline/stop from stdin")
    p.add_argument("--live", action="store_true",
                   help="also print 'reply IP TIME' on stdout as each first reply arrives")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    prober = None
    try:
        targets = load_targets(args.targets, args.target)
        if not targets:
            raise ProberError("no targets: give --targets FILE or --target IP=MAC")
        src_mac = args.src_mac
        if not src_mac:
            with open(f"/sys/class/net/{args.iface}/address") as fh:
                src_mac = fh.read().strip()
        prober = Prober(args.iface, args.src_ip, src_mac, targets, args.interval_ms,
                        armed=not args.stdin, live=sys.stdout if args.live else None)
        prober.open()
        deadline = time.time() + args.timeout
        if args.deadline is not None:
            deadline = min(deadline, args.deadline)
        prober.run(deadline, commands=sys.stdin if args.stdin else None)
    except _Stop:
        pass
    except (ProberError, OSError) as exc:
        print(f"prober: {exc}", file=sys.stderr)
        return 2
    if prober is None:
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        print(json.dumps(prober.result()), flush=True)
    except BrokenPipeError:
        return 1
    print(prober.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
