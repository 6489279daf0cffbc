"""Raw Ethernet reachability probe, run inside an endpoint namespace.

IP pings cannot tell tenants with overlapping CIDRs apart (10.0.0.2 exists in both), so
isolation is checked at layer 2: every endpoint sends one unicast frame to every other
endpoint's MAC, plus one broadcast, with a local experimental EtherType, and every
endpoint reports which senders it heard. Usage (inside a namespace):
  python -m tenantnet.lab.l2probe recv IFACE SECONDS [--until-stdin]
  python -m tenantnet.lab.l2probe send IFACE DSTMAC[,DSTMAC...]
  python -m tenantnet.lab.l2probe garp IFACE IP     (gratuitous ARP, as a booting VM sends)
"""

import json
import select
import socket
import struct
import sys
import time

ETHERTYPE = 0x88B5          # IEEE 802 local experimental EtherType
MAGIC = b"tenantnet-l2probe"


def _mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def _mac_str(raw):
    return ":".join(f"{b:02x}" for b in raw)


def recv(iface, seconds, until_stdin=False, grace=0.5):
    """Report the senders heard on *iface* within *seconds*. *until_stdin*: listen until a
    line (or EOF) arrives on standard input -- the caller's word that every sender is done
    -- plus *grace* seconds, with *seconds* as the limit: on slow hosts (node VMs under
    emulation, senders started over SSH) a fixed window would end before the frames came."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    sock.bind((iface, 0))
    own = _mac_str(sock.getsockname()[4][:6])
    heard = {}
    print("ready", flush=True)          # the caller starts senders only after this line
    deadline = time.time() + seconds
    watch = [sock, sys.stdin] if until_stdin else [sock]
    while True:
        left = deadline - time.time()
        if left <= 0:
            break
        ready, _, _ = select.select(watch, [], [], left)
        if sys.stdin in ready:
            sys.stdin.readline()
            watch = [sock]
            deadline = min(deadline, time.time() + grace)
            continue
        if not ready:
            continue
        frame = sock.recv(2048)
        if len(frame) < 14 or frame[14:14 + len(MAGIC)] != MAGIC:
            continue
        dst, src = _mac_str(frame[0:6]), _mac_str(frame[6:12])
        if dst == "ff:ff:ff:ff:ff:ff":
            kind = "broadcast"
        elif dst == own:
            kind = "unicast"
        else:
            # A packet socket also sees frames for other MACs (flooded unknown unicast):
            # those say nothing about reaching *this* endpoint.
            continue
        heard.setdefault(src, set()).add(kind)
    print(json.dumps({src: sorted(kinds) for src, kinds in heard.items()}), flush=True)


def send(iface, dsts, repeat=3):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    src = sock.getsockname()[4][:6]
    for _ in range(repeat):      # a few copies: the first may race MAC learning
        for dst in dsts + ["ff:ff:ff:ff:ff:ff"]:
            sock.send(_mac_bytes(dst) + src + struct.pack("!H", ETHERTYPE) + MAGIC
                      + b"\0" * 30)
        time.sleep(0.05)


def garp(iface, ip):
    """Announce IP at this interface's MAC, so neighbours drop a stale entry for the address
    (an address reused by a new VM with a new MAC would otherwise stay unreachable for
    seconds, until the neighbours' cache entries time out)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    mac = sock.getsockname()[4][:6]
    addr = socket.inet_aton(ip)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + b"\0" * 6 + addr
    sock.send(b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp)


def main(argv):
    if len(argv) >= 3 and argv[0] == "recv":
        recv(argv[1], float(argv[2]), until_stdin="--until-stdin" in argv[3:])
    elif len(argv) >= 2 and argv[0] == "send":
        send(argv[1], [m for m in (argv[2] if len(argv) > 2 else "").split(",") if m])
    elif len(argv) == 3 and argv[0] == "garp":
        garp(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
