"""Running one call per node or bridge side by side (the controller core's OVSDB
transactions and flow syncs), and a failure of one of them as a one-line reason."""

import concurrent.futures

from tenantnet.errors import TenantnetError


def parallel(func, items):
    """func(item) for every item, concurrently; results in order. The first error is raised
    once every call has finished (no work is left running behind the caller's back)."""
    items = list(items)
    if len(items) <= 1:
        return [func(i) for i in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        futures = [pool.submit(func, i) for i in items]
        concurrent.futures.wait(futures)
    return [f.result() for f in futures]


def settled(func, items):
    """Like parallel, but every call's exception is returned in its place."""
    def call(item):
        try:
            return func(item)
        except Exception as exc:  # noqa: BLE001 -- handed back to the caller
            return exc
    return parallel(call, items)


def reason(exc, node=None):
    """An exception as a one-line reason (without a leading "node NODE: ")."""
    if isinstance(exc, TenantnetError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    if node is not None and text.startswith(f"node {node}: "):
        text = text[len(f"node {node}: "):]
    return text
