"""A TLS client for the refusal tests: open a TLS connection from inside a network
namespace with a given certificate and CA, speak one request of the server's protocol, and
say whether the server answered.

    python3 tests/tlsprobe.py HOST PORT ovsdb|openflow CERT KEY CAFILE

Prints one JSON object: {"ok": true} when the handshake held and the server answered the
request (OVSDB: an `echo`; OpenFlow: its HELLO), else {"ok": false, "error": "..."}. With
TLS 1.3 a server that refuses the client's certificate says so only after the handshake,
so answering a request is the only proof of acceptance."""

import json
import socket
import ssl
import struct
import sys

OFP_HELLO = struct.pack("!BBHI", 4, 0, 8, 1)       # OpenFlow 1.3 HELLO, xid 1


def probe(host, port, proto, cert, key, cafile, timeout=5.0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False              # OVS peers are checked by CA, as OVS does
    ctx.load_verify_locations(cafile)
    if cert:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as sock:
                if proto == "ovsdb":
                    sock.sendall(json.dumps({"method": "echo", "params": [], "id": 1}).encode())
                    data = sock.recv(4096)
                    if not data:
                        return {"ok": False, "error": "closed by the server"}
                    json.loads(data.decode())
                else:
                    sock.sendall(OFP_HELLO)
                    data = sock.recv(8)
                    if len(data) < 8 or data[1] != 0:
                        return {"ok": False, "error": f"no HELLO: {data!r}"}
                return {"ok": True}
    except (ssl.SSLError, OSError, ValueError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    host, port, proto, cert, key, cafile = sys.argv[1:7]
    print(json.dumps(probe(host, port, proto, cert if cert != "-" else None,
                           key if key != "-" else None, cafile)))
