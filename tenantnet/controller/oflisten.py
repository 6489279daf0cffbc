"""The controller's OpenFlow listener: os-ken's stream server, replaced so that the running
controller (controller.runner.ControllerRuntime) can stop its accept loop, keep its
connections, and open the port only when the controller is ready for switches.

- `install(runtime_of)` puts `ListeningServer` in place of os-ken's StreamServer (once per
  process); *runtime_of* returns the runtime it serves, or None.
- `ListenGate`: the port stays closed while someone holds the gate. tenantnet.app holds it
  until its core has reached the nodes and reconciled them: after a restart, every bridge
  (1,200 at 1,000 VMs) reconnects within seconds, and their TLS handshakes on 2 cores
  delayed the nodes' OVSDB connections by 14 s (bench resync, docs/performance.md). With the
  port closed a switch's connect is refused and Open vSwitch tries again after its back-off
  (1 s, doubling to its max_backoff, 8 s by default), keeping its flows (fail_mode=secure).
- With TLS, the handshakes run on HANDSHAKE_WORKERS threads (controller.ofconn).

The runtime gives the server: `handle_connection(sock, address)`, `listening_on(server)`,
`listen_failed(listen_info, exc)`, `stopping` and `listen_gate`."""

import concurrent.futures
import threading

from tenantnet.controller import ofconn


class ListenGate:
    """Open unless held. hold() returns the release function of that hold (idempotent);
    the gate opens when every hold is released, or at once by force_open() (stopping)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holds = 0
        self._open = threading.Event()
        self._open.set()

    def hold(self):
        with self._lock:
            self._holds += 1
            self._open.clear()
        released = []

        def release():
            with self._lock:
                if released:
                    return
                released.append(True)
                self._holds -= 1
                if self._holds <= 0:
                    self._open.set()
        return release

    def force_open(self):
        with self._lock:
            self._holds = 0
            self._open.set()

    def wait(self, timeout=None):
        return self._open.wait(timeout)


def install(runtime_of):
    """Replace os-ken's StreamServer (used by its OpenFlowController) by ListeningServer,
    serving the runtime *runtime_of()* returns when the server is made."""
    from os_ken.controller import controller
    if getattr(controller.StreamServer, "tenantnet_runtime_of", None) is not None:
        controller.StreamServer.tenantnet_runtime_of = staticmethod(runtime_of)
        return
    controller.StreamServer = _server_class(runtime_of)


def _server_class(runtime_of):
    from os_ken.lib import hub

    class ListeningServer(hub.StreamServer):
        """os-ken's StreamServer whose accept loop the runtime can stop, which binds only
        once the runtime's listen gate is open, and which hands TLS handshakes to a pool."""
        tenantnet_runtime_of = staticmethod(runtime_of)

        def __init__(self, listen_info, handle=None, *args, **kwargs):
            runtime = self.tenantnet_runtime_of()
            if runtime is not None:
                handle = runtime.handle_connection
                runtime.listen_gate.wait()     # opened when ready, or when stopping
            if kwargs:                # TLS: hub wraps each socket; we do the handshake
                kwargs["do_handshake_on_connect"] = False
                handle = ofconn.handshake_first(handle)
            try:
                # with TLS arguments hub's server wraps each accepted socket, then calls
                # *handle*: the runtime's, so that it keeps the connection
                super().__init__(listen_info, handle, *args, **kwargs)
            except Exception as exc:  # hub swallows it: keep it for the runtime to report
                if runtime is not None:
                    runtime.listen_failed(listen_info, exc)
                raise
            self.runtime = runtime
            self.handle = ofconn.refusing_bad_handshakes(self.handle)
            self.handshakes = None
            if kwargs:
                self.handshakes = concurrent.futures.ThreadPoolExecutor(
                    ofconn.HANDSHAKE_WORKERS, thread_name_prefix="tenantnet-tls")
            if runtime is not None:
                runtime.listening_on(self)

        def serve_forever(self):
            try:
                while not (self.runtime and self.runtime.stopping):
                    try:
                        sock, addr = self.server.accept()
                    except OSError:
                        if self.runtime and self.runtime.stopping:
                            return
                        raise
                    if self.handshakes is not None:
                        self.handshakes.submit(self.handle, sock, addr)
                    else:
                        hub.spawn(self.handle, sock, addr)
            finally:
                if self.handshakes is not None:
                    self.handshakes.shutdown(wait=False, cancel_futures=True)

    return ListeningServer
