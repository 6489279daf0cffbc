"""The API's wire types, declared once (pydantic v2).

The server (tenantnet.controller.api) validates requests and answers with them and generates
its OpenAPI document from them; the client (controller.client), the tenant's controller
(controller.tenant) and the lab parse the answers with the same types.

    VMRequest   POST /v1/vms body: the *shape* of a placement (types, required and unknown
                keys). Its *meaning* (network and node exist, MAC and IP are free, ...) is
                checked by model.config.vm_from_spec, shared with the YAML config.
    VMBatchRequest  POST /v1/vm-batches body: {"vms": [VMRequest, ...]}, 1..MAX_VM_BATCH;
                an error names the item ("vms[3] (web9): node: ...")
    VM          a placed VM (GET /v1/vms, /v1/vms/{name}; placement answers add timings)
    Topology    GET /v1/topology: nodes, networks (with probes), VMs
    Health      GET /v1/health
    Error       every error body: {"error": "<one-line message>"}

Answers allow fields beyond the declared ones (a newer controller may add some); requests
do not. Validation errors read like config errors: ConfigError(source, key path, problem),
e.g. "api: node: must be a string, not int" (see config_error)."""

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from tenantnet.errors import ConfigError
from tenantnet.model import naming

__all__ = ["VMRequest", "VMBatchRequest", "MAX_VM_BATCH", "batch_item", "VM", "FunctionRequest", "Function", "ChainRequest", "Chain", "Attachment", "TopologyNode", "TopologyNetwork", "Topology",
           "NodeState", "Health", "Error", "ValidationError", "config_error", "parse", "json_type"]


class _Answer(BaseModel):
    """An answer of the controller: declared fields are checked, others pass through."""
    model_config = ConfigDict(extra="allow")


class VMRequest(BaseModel):
    """Place a VM. Optional keys left out (or null) are chosen by the controller."""
    model_config = ConfigDict(extra="forbid", strict=True, title="VMRequest")

    name: str = Field(min_length=1, description="VM name", examples=["web1"])
    network: str = Field(min_length=1, description="tenant/network", examples=["acme/front"])
    node: str = Field(min_length=1, description="a compute node", examples=["node1"])
    mac: Optional[str] = Field(None, description="chosen by the controller when omitted; "
                               "a unicast, non-zero MAC", examples=["02:00:00:00:00:01"])
    ip: Optional[str] = Field(None, description="IPv4 address, optionally with /prefix; "
                              "chosen by the controller when omitted",
                              examples=["10.0.0.11/24"])

    def spec(self):
        """The request as the placement service takes it: a dict without the null keys."""
        return self.model_dump(exclude_none=True)


MAX_VM_BATCH = 1000        # VMs in one POST /v1/vm-batches


class VMBatchRequest(BaseModel):
    """Place many VMs in one request, realised together: all of them, or none."""
    model_config = ConfigDict(extra="forbid", strict=True, title="VMBatchRequest")

    vms: list[VMRequest] = Field(
        min_length=1, max_length=MAX_VM_BATCH,
        description=f"the VMs, 1 to {MAX_VM_BATCH}, with names unique in the batch",
        examples=[[{"name": "web1", "network": "acme/front", "node": "node1"},
                   {"name": "web2", "network": "acme/front", "node": "node2"}]])

    @model_validator(mode="before")
    @classmethod
    def _items(cls, data):
        """The first bad item as one error naming its index and name (pydantic's own
        would say `vms.3.node`), and the batch's size bounds in words."""
        items = data.get("vms") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return data
        if not items:
            raise PydanticCustomError("batch", "vms: must name at least one VM")
        if len(items) > MAX_VM_BATCH:
            raise PydanticCustomError(
                "batch", "vms: at most {limit} VMs in one batch (got {n}); send several "
                "batches", {"limit": MAX_VM_BATCH, "n": len(items)})
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise PydanticCustomError("batch", "{where}: must be a JSON object, not "
                                          "{kind}", {"where": batch_item(i, None),
                                                     "kind": json_type(item)})
            try:
                VMRequest.model_validate(item)
            except ValidationError as exc:
                err = config_error(exc, "", VMRequest)
                raise PydanticCustomError("batch", "{where}: {problem}", {
                    "where": batch_item(i, item.get("name")),
                    "problem": f"{err.key}: {err.problem}" if err.key else err.problem})
        return data

    def specs(self):
        """The requests as the placement service takes them (VMRequest.spec each)."""
        return [vm.spec() for vm in self.vms]


def batch_item(i, name):
    """How an error names item *i* of a batch: `vms[3] (web9)`, or `vms[3]` without a
    usable name."""
    return f"vms[{i}] ({name})" if isinstance(name, str) and name else f"vms[{i}]"


class Attachment(_Answer):
    """An endpoint on a tenant network: a VM or a network's probe."""
    name: str
    kind: Literal["vm", "probe"] = "vm"
    network: str = Field(description="tenant/network")
    node: str
    mac: str
    ip: Optional[str] = None
    port: str = Field(description="its port on the node's bridge")
    source: Optional[Literal["config", "api"]] = Field(
        None, description="where the VM was declared")


class VM(Attachment):
    """A VM. Placement answers (POST, DELETE) also say what the placement did."""
    kind: Literal["vm"] = "vm"
    mode: Optional[Literal["dnb", "cnb"]] = Field(
        None, description="the network's mode (placement answers)")
    bridges_created: Optional[bool] = Field(
        None, description="placement answers: the VM is its network's first on the node and "
                          "(DNB) the tenant bridge pair, ex- endpoint and tunnels were created")
    network_new_on_node: Optional[bool] = None
    nodes_updated: Optional[list[str]] = None
    deleted: Optional[bool] = None
    timings: Optional[dict[str, float]] = Field(
        None, description="durations of the placement's steps, step name -> milliseconds")


class TopologyNode(_Answer):
    name: str
    role: Literal["compute", "network"]
    management_ip: Optional[str] = None
    transport_ip: Optional[str] = None
    networks: Optional[list[str]] = Field(None, description="networks hosted on the node")


class TopologyNetwork(_Answer):
    key: str = Field(None, description="tenant/network (derived from tenant and name when "
                                       "left out)")
    tenant: str
    name: str
    segmentation_id: int
    cidr: str
    transport_cidr: Optional[str] = None
    mode: Literal["dnb", "cnb"] = "dnb"
    controller: Optional[str] = Field(None, description="the tenant's own OpenFlow "
                                                        "controller for the network's bridges")
    hosting_nodes: list[str] = []
    probes: list[Attachment] = []

    @model_validator(mode="after")
    def _key(self):
        if self.key is None:
            self.key = naming.network_key(self.tenant, self.name)
        return self


class Topology(_Answer):
    """Nodes, tenant networks and VMs. A tenant's credential sees only its own networks and
    VMs, and nodes by name and role (tenant is then set)."""
    mode: Literal["dnb", "cnb"] = "dnb"
    tenant: Optional[str] = None
    nodes: list[TopologyNode]
    networks: list[TopologyNetwork]
    vms: list[VM]
    functions: list["Function"] = []
    chains: list["Chain"] = []

    def network(self, key):
        return next((n for n in self.networks if n.key == key), None)


class FunctionRequest(BaseModel):
    """Add a network function: an endpoint on the network (one port, IP forwarding) that
    chains steer traffic through. *kind*'s own settings go beside the others (firewall:
    rules, stateful; shaper: rate); the controller checks them (model.config)."""
    model_config = ConfigDict(extra="allow", strict=True, title="FunctionRequest")

    name: str = Field(min_length=1, description="function name", examples=["fw1"])
    network: str = Field(min_length=1, description="tenant/network", examples=["acme/web"])
    node: str = Field(min_length=1, description="a compute node", examples=["compute2"])
    kind: str = Field(min_length=1, description="forward, firewall or shaper",
                      examples=["firewall"])
    mac: Optional[str] = Field(None, description="chosen by the controller when omitted")
    ip: Optional[str] = Field(None, description="chosen by the controller when omitted")

    def spec(self):
        return self.model_dump(exclude_none=True)


class Function(_Answer):
    """A network function on a tenant network."""
    name: str
    kind: Literal["function"] = "function"
    network: str
    node: str
    mac: str
    ip: Optional[str] = None
    port: str
    source: Optional[Literal["config", "api"]] = None
    function: str = Field(description="its kind: forward, firewall, shaper")
    options: dict[str, Any] = {}
    deleted: Optional[bool] = None
    chains_affected: Optional[list[str]] = Field(
        None, description="delete answers: chains that named it (they fail open or closed)")

    def to_model(self):
        """The model's Function (tenantnet.model.topology) this answer describes."""
        from tenantnet.model.topology import Function as ModelFunction
        return ModelFunction(name=self.name, network=self.network, node=self.node,
                             mac=self.mac, ip=self.ip, port=self.port, nf=self.function,
                             options=tuple(sorted(self.options.items())),
                             source=self.source or "api")


class ChainRequest(BaseModel):
    """Steer IPv4 traffic from one VM (to one VM, or to `any`) through network functions,
    in order. on_failure: open (a missing function is skipped) or closed (dropped)."""
    model_config = ConfigDict(extra="forbid", strict=True, title="ChainRequest",
                              populate_by_name=True)

    name: str = Field(min_length=1, examples=["web-to-db"])
    network: str = Field(min_length=1, examples=["acme/web"])
    src: str = Field(alias="from", min_length=1, description="a VM of the network",
                     examples=["web1"])
    dst: str = Field(alias="to", min_length=1, description="a VM of the network, or any",
                     examples=["db1"])
    through: list[str] = Field(min_length=1, examples=[["fw1", "shaper1"]])
    on_failure: Optional[Literal["open", "closed"]] = None

    def spec(self):
        return self.model_dump(exclude_none=True, by_alias=True)


class Chain(_Answer):
    """A service chain."""
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str
    network: str
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    through: list[str]
    on_failure: Literal["open", "closed"] = "open"
    source: Optional[Literal["config", "api"]] = None
    deleted: Optional[bool] = None

    def to_model(self):
        """The model's Chain (tenantnet.model.topology) this answer describes."""
        from tenantnet.model.topology import Chain as ModelChain
        return ModelChain(name=self.name, network=self.network, src=self.src, dst=self.dst,
                          through=tuple(self.through), on_failure=self.on_failure,
                          source=self.source or "api")


Topology.model_rebuild()


class NodeState(_Answer):
    """One node's state, with the time of its last change and the reason."""
    node: str
    state: str = Field(description="up, down or reconciling", examples=["up"])
    since: Optional[str] = Field(None, description="ISO 8601 UTC time of the last change")
    since_epoch: Optional[float] = None
    reason: Optional[str] = None


class Health(_Answer):
    """Controller health. `status` is "ok" once the controller serves placements."""
    status: str = Field(examples=["ok", "starting"])
    nodes: Optional[int] = Field(None, description="nodes this controller programs")
    vms: Optional[int] = None
    node_states: Optional[list[NodeState]] = None
    counters: Optional[dict[str, int]] = Field(
        None, description="resyncs, audits, repairs, refused placements (also in /metrics)")


class Error(BaseModel):
    """Every error answer."""
    error: str = Field(description="one-line message")


# -- validation errors as config errors ----------------------------------------------------
_ORDER = {"extra_forbidden": 0, "missing": 1}


def _key(loc):
    return ".".join(str(p) for p in loc) or None


def _problem(err, model):
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        allowed = ", ".join(f.alias or n for n, f in model.model_fields.items()) \
            if model is not None else ""
        return "unknown field" + (f" (allowed: {allowed})" if allowed else "")
    if kind == "missing" or (err["loc"] and value in (None, "")
                             and kind in ("string_type", "string_too_short")):
        return "required"
    if kind in ("model_type", "model_attributes_type", "dict_type") and not err["loc"]:
        return f"the request body must be a JSON object, not {json_type(value)}"
    if kind == "string_type":
        return f"must be a string, not {json_type(value)}"
    if kind in ("int_type", "int_parsing"):
        return f"must be an integer, not {json_type(value)}"
    if kind in ("list_type", "list_parsing"):
        return f"must be a list, not {json_type(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, not {json_type(value)}"
    if kind == "literal_error":
        return f"must be one of {err.get('ctx', {}).get('expected', '?')}, not {value!r}"
    return err["msg"][:1].lower() + err["msg"][1:]


def json_type(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "int",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def config_error(errors, source, model=None, strip=0):
    """The ConfigError for a pydantic ValidationError (or its list of errors): the first
    error (unknown keys first, then missing ones, then the rest, as the config loader
    reports them), with the key path. *strip*: leading loc parts to drop (FastAPI's
    "body")."""
    if hasattr(errors, "errors"):
        errors = errors.errors()
    errors = [dict(e, loc=tuple(e["loc"])[strip:]) for e in errors]
    errors.sort(key=lambda e: _ORDER.get(e["type"], 2))
    first = errors[0]
    return ConfigError(source, _key(first["loc"]), _problem(first, model))


def parse(model, data, source):
    """*data* (decoded JSON) as *model*, or a ConfigError naming the key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source, model) from None
