"""One-shot reads of a node's ovsdb-server over JSON-RPC (RFC 7047), without an IDL.

`Reader` opens one connection, bounded in time at every step, and asks it what it is asked:
the schema (`schema`), or whole tables (`select`: one read-only transaction of `select`
operations, so all tables come from the same moment, and nothing is written: ovs-vswitchd
is not made to reconfigure). The rows come back as plain Python, converted as python-ovs's
`Datum.to_python` converts them (a map is a dict, a set a sorted list, a scalar its value),
except that a reference is its row's `uuid.UUID`, not a row object. Rows are keyed by their
`uuid.UUID` too.

Why without an IDL: python-ovs's IDL turns every column of every row into its own objects
(atoms, data, rows, ovsdbapp's indexes), about 0.5 ms of one interpreter per row; a node of
1,200 interfaces took 0.5 s to reach, and the six of a 1,000-VM lab 3 s after a restart
(docs/performance.md). Reading the same rows this way costs a small share of that, and a
node that needs no change needs nothing else (southbound.ovsdb's deferred connect)."""

import errno
import os
import time
import uuid

from ovs import jsonrpc
from ovs import poller as ovs_poller
from ovs import stream as ovs_stream


class Reader:
    """One connection to the OVSDB server at *remote*; every request must be answered
    before *timeout* seconds have passed since it was opened. OSError when the server cannot
    be reached or does not answer in time, ValueError when it refuses a request. Use it as a
    context manager (the connection is closed at the end)."""

    def __init__(self, remote, timeout):
        self.remote = remote
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout
        err, strm = ovs_stream.Stream.open_block(ovs_stream.Stream.open(remote),
                                                 int(timeout * 1000))
        if err:
            raise OSError(err, os.strerror(err))
        self._rpc = jsonrpc.Connection(strm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._rpc.close()

    def schema(self, database):
        """The schema JSON of *database*."""
        return self.call("get_schema", [database])

    def select(self, schema_json, columns):
        """{table: {uuid.UUID: {column: value}}} of the tables and columns *columns*
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
                rows[uuid.UUID(uid[1])] = row
        return out

    def call(self, method, params):
        """The result of one request."""
        rpc = self._rpc
        req = jsonrpc.Message.create_request(method, params)
        err = rpc.send(req)
        while not err:
            err, msg = rpc.recv()
            if err == errno.EAGAIN:
                err = 0
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise OSError(errno.ETIMEDOUT, f"no answer within {self.timeout:.0f}s")
                rpc.run()
                poll = ovs_poller.Poller()
                rpc.wait(poll)
                rpc.recv_wait(poll)
                poll.timer_wait(int(remaining * 1000) + 1)
                poll.block()
                continue
            if msg is not None and msg.id == req.id and msg.type in (
                    jsonrpc.Message.T_REPLY, jsonrpc.Message.T_ERROR):
                if msg.error:
                    raise ValueError(f"{method} refused: {msg.error}")
                return msg.result
        raise OSError(err, os.strerror(err) if err > 0 else "connection closed")


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
    """An RFC 7047 <atom> of a uuid column: ["uuid", "..."] -> its uuid.UUID."""
    return uuid.UUID(json[1])
