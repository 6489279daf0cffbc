"""The model and the desired state: pure functions, no sockets, no processes.

config (YAML/API input) -> topology (networkx model) -> desired (per-node OVSDB state) and
flows (per-bridge flows as flowspec data); naming derives every name, equations the
paper's counts."""
