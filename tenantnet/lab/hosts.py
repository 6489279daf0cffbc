"""Where the lab's commands run, and the namespaces it claims there.

A *host* is this machine ('local') or one reached over SSH ('ssh:root@198.18.0.21'), named
by an executor spec as node records carry it. Executors are cached per process: one SSH
control connection per host, however many LabFabric objects come and go.

A namespace is the lab's once it is in the books (tenantnet.lab.state): `claim_namespace`
refuses one that exists without being ours (left over from another lab), records it, and
only then creates it."""

import threading

from tenantnet.errors import LabError, TenantnetError
from tenantnet.lab import netns as ns
from tenantnet.node.hostexec import executor_for

_EXECUTORS = {}
_EXECUTORS_LOCK = threading.Lock()


def host_executor(spec="local", identity=None, options=None, via=None):
    """The executor of host *spec*, cached per process. *via*: executor spec of where the
    ssh client runs (e.g. 'netns:NAME'; default this host)."""
    key = (spec or "local", identity, tuple(sorted((options or {}).items())), via)
    with _EXECUTORS_LOCK:
        ex = _EXECUTORS.get(key)
        if ex is None:
            kwargs = {}
            try:
                if (spec or "").startswith("ssh:"):
                    kwargs = {"identity": identity, "options": options,
                              "base": executor_for(via) if via else None}
                ex = executor_for(spec or "local", **kwargs)
            except TenantnetError as exc:
                raise LabError(str(exc)) from exc
            _EXECUTORS[key] = ex
        return ex


def node_host(rec):
    """The executor of the host node record *rec* (a NodeRec) lives on, with its SSH
    settings."""
    if rec.exec == "local":
        return host_executor("local")
    return host_executor(rec.exec, rec.ssh_identity, rec.ssh_options, rec.ssh_via)


def spec_host(state, spec):
    """The executor of host *spec*, with the SSH settings of the node that uses it."""
    if not spec or spec == "local":
        return host_executor("local")
    rec = state.node_with_exec(spec)
    if rec is None:
        return host_executor(spec)
    return node_host(rec)


def check_free(state, name, spec="local", host=None):
    """LabError when namespace *name* exists on host *spec* without being the lab's."""
    if state.owns_namespace(name, spec):
        return
    if spec == "local":
        if ns.exists(name):
            raise LabError(f"network namespace {name} already exists (left over from another "
                           f"lab?): remove it with `ip netns del {name}`")
    elif ns.exists(name, executor=host or spec_host(state, spec)):
        raise LabError(f"network namespace {name} already exists on {spec} (left over from "
                       f"another lab?): remove it there with `ip netns del {name}`")


def claim_namespace(store, name, spec="local", host=None, create=True):
    """Record namespace *name* on host *spec* (saved), then create it unless create=False
    (the caller creates it). Refuses one that is not the lab's."""
    state = store.state
    check_free(state, name, spec, host)
    state.record_namespace(name, spec)
    store.save()
    if create:
        ns.add(name, executor=host or spec_host(state, spec))
