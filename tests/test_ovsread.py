"""southbound.ovsread.Reader's own JSON-RPC, against a scripted peer on a real unix socket.

A real ovsdb-server answers in one piece, never echoes within a read and never errs on a
good request (tests/test_ovsdb.py reads real ones). The peer here makes what a server may
also do: send its echo request first, split its answer where a "}" ends a read in the
middle of the message, put two messages in one write, refuse, stall, hang up."""

import errno
import json
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

from tenantnet.southbound.ovsread import Reader

RESULT = [{"rows": [{"_uuid": ["uuid", "5c9e0b2e-1111-4a4a-8b8b-000000000001"],
                     "name": "br-tun", "external_ids": ["map", [["k", "{v}"]]]}]}]


class Peer:
    """A unix socket server that answers one connection with *script*(conn, request)."""

    def __init__(self, script):
        self.dir = tempfile.mkdtemp(prefix="tn-ovsread-")
        self.path = os.path.join(self.dir, "db.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.script = script
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            self.script(conn, self.read_message(conn))

    def read_message(self, conn):
        buf = b""
        decoder = json.JSONDecoder()
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
            try:
                msg, _ = decoder.raw_decode(buf.decode())
            except ValueError:
                continue
            self.received.append(msg)
            return msg

    def close(self):
        self.sock.close()
        self.thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def peer():
    made = []

    def make(script):
        made.append(Peer(script))
        return made[-1]
    yield make
    for p in made:
        p.close()


def test_an_answer_in_pieces_after_an_echo_and_with_braces_inside_is_read_whole(peer):
    def script(conn, request):
        conn.sendall(json.dumps({"method": "echo", "params": ["hi"], "id": "echo"}).encode())
        server.read_message(conn)             # the echo's answer, checked below
        answer = json.dumps({"id": request["id"], "result": RESULT, "error": None}).encode()
        cut = answer.index(b"}") + 1          # the first read ends on a "}" inside it
        assert answer[:cut].endswith(b"{v}") and cut < len(answer)
        conn.sendall(answer[:cut])
        time.sleep(0.1)
        conn.sendall(answer[cut:])
        time.sleep(0.2)                       # the client closes first

    server = peer(script)
    with Reader(f"unix:{server.path}", timeout=5) as reader:
        assert reader.call("transact", ["Open_vSwitch"]) == RESULT
    assert server.received[0]["method"] == "transact"
    assert server.received[1] == {"id": "echo", "result": ["hi"], "error": None}


def test_two_messages_in_one_write(peer):
    def script(conn, request):
        notice = {"method": "update", "params": [None, {}], "id": None}
        answer = {"id": request["id"], "result": {"ok": 1}, "error": None}
        conn.sendall((json.dumps(notice) + json.dumps(answer)).encode())
        time.sleep(0.2)

    server = peer(script)
    with Reader(f"unix:{server.path}", timeout=5) as reader:
        assert reader.call("get_schema", ["Open_vSwitch"]) == {"ok": 1}


def test_a_refusal_is_a_value_error(peer):
    def script(conn, request):
        conn.sendall(json.dumps({"id": request["id"], "result": None,
                                 "error": "unknown database"}).encode())
        time.sleep(0.2)

    server = peer(script)
    with Reader(f"unix:{server.path}", timeout=5) as reader:
        with pytest.raises(ValueError, match="get_schema refused: unknown database"):
            reader.schema("Nope")


def test_no_answer_is_a_timeout_within_the_bound(peer):
    gone = threading.Event()
    server = peer(lambda conn, request: gone.wait(5))
    start = time.monotonic()
    try:
        with Reader(f"unix:{server.path}", timeout=1) as reader:
            with pytest.raises(OSError) as err:
                reader.schema("Open_vSwitch")
    finally:
        gone.set()
    assert err.value.errno == errno.ETIMEDOUT
    assert 0.9 <= time.monotonic() - start < 3


def test_a_hang_up_is_an_os_error(peer):
    server = peer(lambda conn, request: None)       # closes without answering
    with Reader(f"unix:{server.path}", timeout=5) as reader:
        with pytest.raises(OSError, match="closed"):
            reader.schema("Open_vSwitch")


def test_nobody_listening_is_an_os_error():
    with tempfile.TemporaryDirectory(prefix="tn-ovsread-") as d:
        with pytest.raises(OSError):
            Reader(f"unix:{os.path.join(d, 'none.sock')}", timeout=1)
