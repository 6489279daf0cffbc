"""The controller's side of an OpenFlow TLS handshake (controller.ofconn.handshake_first):
bounded in all, not per read, so that a peer that stalls or trickles its bytes cannot hold
a handshake worker; a good handshake goes on to the connection's handler. Real sockets on
127.0.0.1, certificates from tenantnet.pki."""

import socket
import ssl
import threading
import time

import pytest

from tenantnet import pki
from tenantnet.controller import ofconn


@pytest.fixture(scope="module")
def idents(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pki"))
    return pki.init(root), pki.issue_node(root, "compute1")


@pytest.fixture
def server(idents):
    """(port, run_one(timeout) -> (seconds the handshake worker took, handled sockets))"""
    provider, _ = idents
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(provider.cert, provider.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(provider.ca("node"))       # switches: node certificates
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    handled = []

    def handle(sock, addr):
        handled.append(sock.recv(5))
        sock.sendall(b"hello")
        sock.close()

    def run_one(timeout):
        sock, addr = listener.accept()
        tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        t0 = time.monotonic()
        ofconn.handshake_first(handle, timeout=timeout)(tls, addr)
        return time.monotonic() - t0, handled

    yield listener.getsockname()[1], run_one
    listener.close()


def client_context(idents):
    _, node = idents
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(node.cert, node.key)
    ctx.load_verify_locations(node.ca("openflow"))
    ctx.check_hostname = False
    return ctx


def client_hello(idents):
    """The first bytes a real client sends (its ClientHello), made in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(idents).wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_a_good_handshake_goes_on_to_the_handler(server, idents):
    port, run_one = server
    out = {}

    def client():
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with client_context(idents).wrap_socket(raw) as tls:
                tls.sendall(b"ofp13")
                out["reply"] = tls.recv(5)
    thread = threading.Thread(target=client)
    thread.start()
    took, handled = run_one(timeout=5.0)
    thread.join(10)
    assert out.get("reply") == b"hello"
    for _ in range(100):                      # the handler runs in a thread of its own
        if handled:
            break
        time.sleep(0.05)
    assert handled == [b"ofp13"]


@pytest.mark.parametrize("pace", ["silent", "trickle"])
def test_a_stalling_peer_is_closed_after_the_bound_in_all(server, idents, pace):
    """A peer that sends nothing, or its ClientHello one byte every 0.1 s (each read would
    succeed within a per-read timeout, and the whole would take tens of seconds), is
    closed at the bound, and never reaches the handler."""
    port, run_one = server
    hello = client_hello(idents)
    assert len(hello) > 100
    seen = {}
    done = threading.Event()

    def client():
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.settimeout(0.1)
            for i in range(len(hello) if pace == "trickle" else 0):
                if done.is_set():
                    break
                try:
                    raw.sendall(hello[i:i + 1])
                    if raw.recv(1) == b"":
                        seen["eof"] = True
                        return
                except socket.timeout:
                    continue
                except OSError:
                    seen["eof"] = True
                    return
            raw.settimeout(10)
            try:
                seen["eof"] = raw.recv(1) == b""
            except OSError:
                seen["eof"] = True
    thread = threading.Thread(target=client)
    thread.start()
    took, handled = run_one(timeout=1.0)
    done.set()
    thread.join(15)
    assert 1.0 <= took < 0.1 * len(hello), took   # bounded in all, not per read
    assert seen.get("eof") and handled == []
