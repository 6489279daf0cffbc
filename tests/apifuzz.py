"""Property-based fuzzing of a live controller API, driven by the OpenAPI document it
serves (schemathesis builds hypothesis strategies from it: valid requests, and requests
that break the schema).

Every answer must be one the document describes: no 5xx other than the documented 502
(a switch refused) and 503 (a node is down), every error body exactly {"error": "<one
line>"}, and every success body of the documented schema."""

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from tenantnet.controller.client import ApiClient

ALLOWED_5XX = (502, 503)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz(base_url, token=None, max_examples=150, skip=(), seen=None):
    """Send *max_examples* generated requests (both modes, every operation) to *base_url*.
    *skip*: (METHOD, path) operations left out. *seen*: a list that gets every
    (method, path, status). Raises AssertionError naming the first bad answer."""
    doc = ApiClient(base_url, token=token, timeout=30).openapi()
    schema = schemathesis.openapi.from_dict(doc)
    for method, path in skip:
        schema = schema.exclude(method=method, path=path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    seen = [] if seen is None else seen
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE),
                      schema.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(case=cases)
    def run(case):
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=base_url, timeout=60)
        status = response.status_code
        seen.append((case.method, case.path, status))
        where = f"{case.method} {case.formatted_path} -> {status}: {response.text[:300]!r}"
        assert status < 500 or status in ALLOWED_5XX, where
        if status >= 400:
            body = json.loads(response.content)
            assert set(body) == {"error"} and body["error"] and "\n" not in body["error"], where
        case.validate_response(response, checks=CHECKS)

    run()
    return seen


class UnixForwarder:
    """127.0.0.1:PORT -> a unix socket, for tools that speak HTTP over TCP only (the lab's
    API is its controller's owner-only unix socket on this side of its namespace)."""

    def __init__(self, path):
        import socket
        import threading
        self.path = path
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import socket
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._thread.join(5)

    def _accept(self):
        import socket
        import threading
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.path)
            except OSError:
                conn.close()
                continue
            pair = {"open": 2, "lock": threading.Lock(), "socks": (conn, upstream)}
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    @staticmethod
    def _pump(src, dst, pair):
        import socket
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with pair["lock"]:
            pair["open"] -= 1
            last = pair["open"] == 0
        if last:
            for s in pair["socks"]:
                s.close()
