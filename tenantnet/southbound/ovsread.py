"""One-shot reads of a node's ovsdb-server over JSON-RPC (RFC 7047), without an IDL.

`Reader` opens one connection, bounded in time at every step, and asks it what it is asked:
the schema (`schema`), or whole tables (`select`: one read-only transaction of `select`
operations, so all tables come from the same moment, and nothing is written: ovs-vswitchd
is not made to reconfigure). The rows come back as plain Python, converted as python-ovs's
`Datum.to_python` converts them (a map is a dict, a set a sorted list, a scalar its value),
except that a reference is its row's uuid as the server wrote it (a string), not a row
object. Rows are keyed by that string too: a node's tables hold tens of thousands of uuids,
and making each a `uuid.UUID` (parsed in Python, hashed in Python) was a fifth of a read's
CPU. Only southbound.ovsview's plain view reads them: its rows name each other by name; the
uuids stay in its private `_`-keys (uuid.UUID from an IDL, strings from here).

Why without an IDL: python-ovs's IDL turns every column of every row into its own objects
(atoms, data, rows, ovsdbapp's indexes), about 0.5 ms of one interpreter per row; a node of
1,200 interfaces took 0.5 s to reach, and the six of a 1,000-VM lab 3 s after a restart
(docs/performance.md). Reading the same rows this way costs a small share of that, and a
node that needs no change needs nothing else (southbound.ovsdb's deferred connect)."""

import errno
import json
import os
import time

from ovs import poller as ovs_poller
from ovs import stream as ovs_stream

CHUNK = 1 << 20                     # bytes asked of the stream per read
_DECODER = json.JSONDecoder()


class Reader:
    """One connection to the OVSDB server at *remote*; every request must be answered
    before *timeout* seconds have passed since it was opened. OSError when the server cannot
    be reached or does not answer in time, ValueError when it refuses a request. Use it as a
    context manager (the connection is closed at the end).

    The connection is python-ovs's stream (unix:, tcp:, ssl: with the SSL files set for
    python-ovs), the JSON-RPC is this class's own: a request is one JSON object, an answer
    is parsed with the standard library's json, about 3.5 times faster than python-ovs's
    parser (its C one included) on a node's tables. The server's echo requests are
    answered."""

    def __init__(self, remote, timeout):
        self.remote = remote
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout
        err, strm = ovs_stream.Stream.open_block(ovs_stream.Stream.open(remote),
                                                 int(timeout * 1000))
        if err:
            raise OSError(err, os.strerror(err))
        self._stream = strm
        self._buf = bytearray()
        self._next_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stream.close()

    def schema(self, database):
        """The schema JSON of *database*."""
        return self.call("get_schema", [database])

    def select(self, schema_json, columns):
        """{table: {uuid: {column: value}}} of the tables and columns *columns*
        ({table: [column, ...]}) of the database whose schema is *schema_json*, read in one
        transaction."""
        tables = sorted(columns)
        ops = [{"op": "select", "table": t, "where": [], "columns": ["_uuid", *columns[t]]}
               for t in tables]
        answers = self.call("transact", [schema_json["name"], *ops])
        out = {}
        for table, answer in zip(tables, answers):
            if "error" in answer:
                raise ValueError(f"select from {table} refused: {answer['error']}")
            types = schema_json["tables"][table]["columns"]
            convert = [(c, f) for c in columns[table]
                       for f in [converter(types[c]["type"])] if f is not as_is]
            rows = out[table] = {}
            for row in answer["rows"]:           # converted in place: the answer is ours
                uid = row.pop("_uuid")
                for column, conv in convert:
                    row[column] = conv(row[column])
                rows[uid[1]] = row
        return out

    def call(self, method, params):
        """The result of one request."""
        self._next_id += 1
        rid = self._next_id
        self._send({"method": method, "params": params, "id": rid})
        while True:
            for msg in self._receive():
                if not isinstance(msg, dict):            # not JSON-RPC: not ours to answer
                    continue
                if msg.get("method") == "echo":          # the server's keepalive
                    self._send({"id": msg.get("id"), "result": msg.get("params"),
                                "error": None})
                elif msg.get("id") == rid:
                    if msg.get("error") is not None:
                        raise ValueError(f"{method} refused: {msg['error']}")
                    return msg.get("result")

    def _send(self, message):
        data = json.dumps(message, separators=(",", ":")).encode()
        while data:
            sent = self._stream.send(data)
            if sent == -errno.EAGAIN:
                self._wait(self._stream.send_wait)
            elif sent < 0:
                raise OSError(-sent, os.strerror(-sent))
            else:
                data = data[sent:]

    def _receive(self):
        """The next complete messages (at least one), in order."""
        while True:
            err, data = self._stream.recv(CHUNK)
            if err == errno.EAGAIN:
                self._wait(self._stream.recv_wait)
                continue
            if err:
                raise OSError(err, os.strerror(err))
            if not data:
                raise OSError(errno.ECONNRESET, "connection closed by the server")
            self._buf += data
            # A message ends with "}"; only then can the buffer hold a whole one (and end on
            # a character's boundary). A "}" inside a message ends a read now and then: the
            # parse below then finds it incomplete and the reading goes on.
            if data.rstrip()[-1:] != b"}":
                continue
            text = self._buf.decode("utf-8")
            out, pos = [], 0
            try:
                while True:
                    pos = len(text) - len(text[pos:].lstrip())
                    if pos == len(text):
                        break
                    msg, pos = _DECODER.raw_decode(text, pos)
                    out.append(msg)
            except json.JSONDecodeError:
                pass                                 # the rest has not all arrived yet
            if out:
                self._buf = bytearray(text[pos:].encode("utf-8"))
                return out

    def _wait(self, register):
        """Block until the stream is ready as *register* (its recv_wait or send_wait)
        asks, or the deadline; OSError ETIMEDOUT then."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise OSError(errno.ETIMEDOUT, f"no answer within {self.timeout:.0f}s")
        poll = ovs_poller.Poller()
        self._stream.run_wait(poll)
        register(poll)
        poll.timer_wait(int(remaining * 1000) + 1)
        poll.block()


def converter(column_type):
    """The function that converts a <value> of a column whose type is *column_type* (the
    schema's JSON for it), as the module's doc says. Made once per column: a node's tables
    have thousands of values of each."""
    if isinstance(column_type, str):
        column_type = {"key": column_type}
    key, value = _base(column_type["key"]), _base(column_type.get("value"))
    atom = _atom if "uuid" in (key, value) else None
    if value is not None:                                    # a map: ["map", [[k, v], ...]]
        if atom is None:
            return lambda json: dict(json[1])
        return lambda json: {atom(k): atom(v) for k, v in json[1]}
    if column_type.get("min", 1) == 1 and column_type.get("max", 1) == 1:   # a scalar
        return atom or as_is

    def members(json):                                       # a set: ["set", [...]] or one
        if isinstance(json, list) and json[0] == "set":
            return sorted(json[1] if atom is None else (atom(v) for v in json[1]))
        return [json if atom is None else atom(json)]
    return members


def as_is(json):
    """The converter of a scalar column that is not a reference: its JSON is its value."""
    return json


def _base(base_type):
    """The atomic type ("string", "uuid", ...) of a <base-type>, or None."""
    return base_type if base_type is None or isinstance(base_type, str) else base_type["type"]


def _atom(json):
    """An RFC 7047 <atom> of a uuid column: ["uuid", "..."] -> the uuid (a string)."""
    return json[1]
