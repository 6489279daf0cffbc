"""An OpenFlow switch connection as the controller keeps it, under os-ken's native hub.

- `datapath_class`: os-ken's Datapath, declared dead as soon as its receive loop ends
  (its send thread woken), its TLS session used by one thread at a time (SerializedTls),
  and its echo requests within the controller's budget (echo_interval).
- TLS: `handshake_first` does the handshake (bounded), then gives the connection a thread
  of its own; a refused one is closed so that the peer reads the alert
  (close_after_alert); `refusing_bad_handshakes` makes any other failure before the
  connection starts one log line. controller.runner's stream server runs the handshakes
  on HANDSHAKE_WORKERS threads.

What these fix was found at scale (bench resync with 1,000 VMs: docs/performance.md)."""

import contextlib
import logging
import socket
import threading

LOG = logging.getLogger("tenantnet.controller.runner")

_CLASS = None

# Echo requests per second, at most, over all of the controller's switch connections. Each
# one is a message each way through TLS and os-ken's event loop: at a 1 s interval, 1,000
# bridges made 2,000 messages a second, more than the controller's one interpreter thread
# could keep up with beside its real work on this 2-core machine (bench resync at 1,000
# VMs): echo replies came late, the controller and the switches each declared the other
# dead, and the reconnections made it worse.
ECHO_BUDGET = 200.0


def echo_interval(configured, connections, budget=ECHO_BUDGET):
    """The interval between one connection's echo requests: *configured*, or longer when
    *connections* at that interval would exceed *budget* requests a second."""
    return max(float(configured), connections / budget)


def datapath_class(connections):
    """os-ken's Datapath whose send thread is woken when the connection ends, whose TLS
    session is used by one thread at a time, and whose echo interval keeps the controller
    within ECHO_BUDGET (*connections*: a callable, the number of connections now)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_datapath_class()
    _CLASS.connections = staticmethod(connections)
    return _CLASS


def _make_datapath_class():
    from os_ken.controller import controller
    from os_ken.controller.handler import DEAD_DISPATCHER

    class TenantnetDatapath(controller.Datapath):
        connections = staticmethod(lambda: 1)

        def __init__(self, sock, address):
            super().__init__(sock, address)
            import ssl
            if isinstance(self.socket, ssl.SSLSocket):
                self.socket = SerializedTls(self.socket)

        # os-ken's echo loop sleeps this long between requests, reading it every time:
        # the configured interval, stretched so that the controller as a whole sends at
        # most ECHO_BUDGET requests a second
        @property
        def echo_request_interval(self):
            return echo_interval(self._echo_configured, self.connections())

        @echo_request_interval.setter
        def echo_request_interval(self, value):
            self._echo_configured = value

        def _wake_send_loop(self):
            q = self.send_q
            # take a queue slot like send() does, but never block for it: if the queue
            # is full the send thread is awake anyway and will see DEAD / the error.
            if q is not None and self._send_q_sem.acquire(blocking=False):
                q.put((b"", True))

        def _recv_loop(self):
            try:
                super()._recv_loop()
            finally:
                # the peer is gone: say so now (stock os-ken only does after joining the
                # send and echo threads, i.e. up to an echo interval later, or never)
                self.set_state(DEAD_DISPATCHER)
                self._wake_send_loop()

        def set_state(self, state):
            super().set_state(state)
            if state == DEAD_DISPATCHER:
                self._wake_send_loop()

    return TenantnetDatapath


def refusing_bad_handshakes(handle):
    """*handle* for an accepted socket, where a failed TLS handshake (no certificate, one
    from another CA, not TLS at all) or a connection that breaks before it starts is one
    log line and a closed socket, not a traceback."""
    import ssl

    def guarded(sock, addr):
        try:
            handle(sock, addr)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            LOG.warning("OpenFlow connection from %s refused: %s", addr[0] if addr else "?",
                        exc)
            with contextlib.suppress(OSError):
                sock.close()
    return guarded


# TLS handshakes done at once, at most. After a controller restart every bridge connects
# within a second or two (1,200 at 1,000 VMs); a thread each made them all compete for the
# interpreter with the start-up's own work, and most timed out on the switches' side (1 s
# for a first attempt), again and again. A few workers finish the handshakes one after
# another; a switch that gives up meanwhile costs nothing but an EOF, and it retries.
HANDSHAKE_WORKERS = 4
# A switch's whole TLS handshake, at most (seconds). Open vSwitch gives up on an attempt
# after its back-off (1 s at first, at most the Controller's max_backoff: 2 s as tenantnet
# sets it), so a handshake still going after that is a peer that stalls: with a longer
# bound, HANDSHAKE_WORKERS such peers would hold up every other switch's handshake.
HANDSHAKE_TIMEOUT = 3.0


def handshake_first(handle, timeout=HANDSHAKE_TIMEOUT):
    """*handle* for a TLS socket wrapped without its handshake: do the handshake here (at
    most *timeout* seconds in all), and on failure close so that the peer reads why. On
    success *handle* runs in a thread of its own: this one returns to take the next
    handshake."""
    import ssl

    def handshaken(sock, addr):
        try:
            sock.settimeout(timeout)      # for the whole handshake, however it is paced
            sock.do_handshake()
            sock.settimeout(None)
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError) as exc:
            # the switch gave up (its first attempt waits 1 s) and will try again: not a
            # refusal, and after a restart there are hundreds
            LOG.debug("OpenFlow connection from %s closed during the TLS handshake: %s",
                      addr[0] if addr else "?", exc)
            with contextlib.suppress(OSError):
                sock.close()
            return
        except socket.timeout as exc:     # a peer that stalls: nothing to tell it
            LOG.warning("OpenFlow connection from %s closed: %s", addr[0] if addr else "?",
                        exc)
            with contextlib.suppress(OSError):
                sock.close()
            return
        except (ssl.SSLError, OSError) as exc:
            LOG.warning("OpenFlow connection from %s refused: %s", addr[0] if addr else "?",
                        exc)
            close_after_alert(sock)
            return
        from os_ken.lib import hub
        hub.spawn(handle, sock, addr)      # the connection's own thread, for its life
    return handshaken


def close_after_alert(sock, linger=1.0):
    """Close a socket whose TLS handshake we refused so that the peer reads our alert.

    With TLS 1.3 a client finishes its side of the handshake before we have checked its
    certificate, and its first message (a switch's HELLO) may already be here when we
    refuse it. A plain close() with unread input sends an RST, and the peer's stack may
    throw our alert ("unknown ca", "certificate required") away with it: the switch would
    log a bare reset. So: send FIN after the alert, read what is left until the peer
    closes (at most *linger* seconds), then close."""
    import time
    deadline = time.monotonic() + linger
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(4096):
                break
    with contextlib.suppress(OSError):
        sock.close()


class SerializedTls:
    """A TLS socket shared by os-ken's receive and send threads, one at a time.

    OpenSSL's connection object must not be used by two threads at once, and Python's ssl
    module does not serialise SSL_read against SSL_write: with the native-thread hub the
    two threads would each drive the session, and under load a switch sees a corrupt record
    and drops the connection. Reads wait for data outside the lock (poll), then read
    without blocking inside it; sends hold the lock."""

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()

    def recv(self, n):
        import select
        import ssl
        timeout = self._sock.gettimeout()
        # poll, not select: a controller of 1,000 bridges has socket numbers above 1,023,
        # which select() refuses
        waiter = select.poll()
        waiter.register(self._sock, select.POLLIN)
        while True:
            if not self._sock.pending():
                if not waiter.poll(None if timeout is None else timeout * 1000):
                    raise socket.timeout("timed out")
            with self._lock:
                self._sock.setblocking(False)
                try:
                    return self._sock.recv(n)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue          # a partial record: wait for the rest outside the lock
                finally:
                    self._sock.settimeout(timeout)

    def sendall(self, data):
        with self._lock:
            return self._sock.sendall(data)

    def __getattr__(self, name):      # shutdown, close, fileno, ...: the socket's own
        return getattr(self._sock, name)
