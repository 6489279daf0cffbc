"""A node's Open vSwitch tables as plain Python, kept current from the IDL's row events.

`NodeOvsdb` diffs the desired state against what a node holds. Reading the IDL's rows into
plain dicts means converting every column of every row (`Datum.to_python`); doing that for
the whole Bridge/Port/Interface tables twice per placement was half of a placement's time
and grew with the node's size (docs/performance.md). `LiveView` converts each row once,
then again only when the IDL reports that the row changed (`TrackingIdl.notify`, called by
`Idl.run` for every row it inserts, modifies or deletes). A read costs the rows that
changed since the last read, not the node's size.

Consistency: the IDL calls `notify` from `Idl.run`, which ovsdbapp runs under the
connection's lock; `LiveView.read` runs under the same lock (a READ_ONLY command), so a
read sees every change the IDL has applied, and no half-applied one. A reconnect (the IDL
clears its tables without row events, then reloads them) is noticed by the session's
sequence number and rebuilds the view in full.

The view is shared, not copied: callers must not change what `read` returns.

Columns that tenantnet never reads or writes (the `statistics` of every interface, refreshed
every few seconds; every status column ovs-vswitchd keeps) are not monitored at all
(`monitored_columns`): they cost the IDL's thread a parse of every row and a view update per
refresh."""

from ovsdbapp.backend.ovs_idl import connection

from tenantnet.model.desired import CONTROLLER_OPTIONS

# Tables and columns read into the view (`Open_vSwitch` only for its external_ids).
TABLES = ("Interface", "Port", "Bridge", "Controller", "Open_vSwitch")
UNMONITORED = {"statistics"}      # in every table that has such a column
# The tables tenantnet reads and writes are monitored for the columns it uses only: what
# the view reads (below), what NodeOvsdb's diff sets, and what ovsdbapp's commands that it
# runs touch (add_br and del_br: Open_vSwitch bridges, Bridge name, ports, datapath_type;
# add_port and del_port: Port name, interfaces, Interface name, type; set_controller:
# Bridge controller, Controller target; a commit waits for Open_vSwitch cur_cfg to reach
# next_cfg). The rest (an interface's status, link speed, LACP, CFM and BFD state, a
# bridge's STP and RSTP status, a controller's connection state, ...) is ovs-vswitchd's
# own, changes all the time, and made the initial contents of a node of 1,100 interfaces
# about twice as long to parse: six of them took 11 s after a restart at 1,000 VMs.
MONITORED_ONLY = {
    "Open_vSwitch": {"bridges", "cur_cfg", "next_cfg", "external_ids"},
    "Bridge": {"name", "ports", "controller", "datapath_type", "fail_mode", "protocols",
               "other_config", "external_ids"},
    "Controller": {"target", "inactivity_probe", "max_backoff"},
    "Port": {"name", "interfaces", "tag", "external_ids"},
    "Interface": {"name", "type", "options", "external_ids", "ofport", "error", "mac_in_use",
                  "link_state"},
}


def monitored_columns(schema_json):
    """{table: [column, ...]} of *schema_json* (the server's schema): MONITORED_ONLY's
    columns of its tables, every column but those in UNMONITORED of the others."""
    out = {}
    for table, spec in schema_json["tables"].items():
        only = MONITORED_ONLY.get(table)
        out[table] = sorted(c for c in spec["columns"]
                            if (c in only if only is not None else c not in UNMONITORED))
    return out


class TrackingIdl(connection.OvsdbIdl):
    """ovsdbapp's IDL that also records which rows changed (for LiveView)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.changed_rows = set()     # (table name, uuid), since the view last read them

    def notify(self, event, row, updates=None):
        self.changed_rows.add((row._table.name, row.uuid))
        super().notify(event, row, updates)

    def cooperative_yield(self):
        """No yield per row: python-ovs's own default. ovsdbapp's sleep(0), for eventlet,
        gives up the interpreter on every row of an update, and with other threads busy
        (six nodes' initial contents at once, or a controller's connection threads) each
        costs a thread switch: reaching six nodes of 1,100 interfaces each took 11 s after
        a restart at 1,000 VMs (docs/performance.md). The controller runs native threads;
        the interpreter switches threads on its own."""


def _plain(value):
    """IDL column values -> plain Python (single-element optional columns unwrapped)."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else (None if not value else value)
    return value


def _col(row, column):
    """A committed row's column as Python. Row.__getattr__ also folds in a transaction's
    pending changes, converting every value there and back; the view only ever sees
    committed rows, under the connection lock. A row read without an IDL is a dict (its
    references already uuids: strings, southbound.ovsread's)."""
    if type(row) is dict:
        return row[column]
    datum = row._data.get(column)
    if datum is None:
        return getattr(row, column)
    return datum.to_python(row._uuid_to_row)


def _uuids(row, column):
    if type(row) is dict:
        return list(row[column])
    return [r.uuid for r in _col(row, column)]


class _Table:
    def __init__(self, rows):
        self.rows = rows


class _SelectedTables:
    """Rows read without an IDL (southbound.ovsread: {table: {uuid: {column: value}}}),
    where LiveView reads an IDL's: `tables[name].rows`."""

    def __init__(self, rows):
        self.tables = {name: _Table(table) for name, table in rows.items()}
        self.changed_rows = set()


def read_selected(rows):
    """The view (as `LiveView.read` returns it) of rows read without an IDL: *rows* is
    southbound.ovsread's {table: {uuid: {column: value}}} of `TABLES` and at least the
    columns of MONITORED_ONLY. A point-in-time copy: it is not kept current."""
    view = LiveView()
    return view.read(_SelectedTables(rows), seqno=None)


class LiveView:
    """The plain view of one IDL (see the module's doc). `read(idl, seqno)` returns
    {system, bridges, ports, interfaces, changed_at}: bridges, ports and interfaces by name,
    each a dict of the columns NodeOvsdb uses (a bridge's `ports` and a port's `interfaces`
    as sorted names, a bridge's `controller` as sorted targets); `changed_at`: bridge name
    -> a number that grows whenever the bridge, one of its ports or one of their interfaces
    changes (so a bridge found in order once stays in order while its number stays)."""

    def __init__(self):
        self._seqno = None
        self._rows = {t: {} for t in TABLES}    # table -> {uuid: plain row}
        self._names = {t: {} for t in TABLES}   # table -> {uuid: name}, rows removed too
        self._owner = {}                        # port or interface uuid -> bridge/port uuid
        self._tick = 0
        self.result = None

    def read(self, idl, seqno):
        """The view, brought up to date (under the connection's lock). *seqno*: the IDL
        session's sequence number; when it moved, the view is rebuilt in full."""
        if seqno != self._seqno or self.result is None:
            self._rebuild(idl, seqno)
            return self.result
        changed = idl.changed_rows
        if changed:
            idl.changed_rows = set()
            self._apply(idl, changed)
        return self.result

    def _rebuild(self, idl, seqno):
        idl.changed_rows = set()
        self._seqno = seqno
        self._rows = {t: {} for t in TABLES}
        self._names = {t: {} for t in TABLES}
        self._owner = {}
        self.result = {"system": {}, "bridges": {}, "ports": {}, "interfaces": {},
                       "changed_at": {}}
        self._apply(idl, {(t, u) for t in TABLES if t in idl.tables
                          for u in idl.tables[t].rows})

    def _apply(self, idl, changed):
        by_table = {t: [] for t in TABLES}
        for table, uuid in changed:
            if table in by_table:
                by_table[table].append(uuid)
        dirty_bridges = set(by_table["Bridge"])
        # Rows first, then what refers to them: interfaces, ports, controllers, bridges.
        for uuid in by_table["Interface"]:
            self._put_interface(idl, uuid)
        for uuid in by_table["Port"]:
            self._put_port(idl, uuid)
        retargeted = {uuid for uuid in by_table["Controller"] if self._put_controller(idl, uuid)}
        if retargeted:             # a target changed in place: its bridges' lists change
            dirty_bridges.update(b for b, br in self._rows["Bridge"].items()
                                 if retargeted & set(br["_controller"]))
        # The bridges touched: changed themselves, or through a port or an interface.
        touched = set(dirty_bridges)
        for uuid in by_table["Interface"]:
            touched.add(self._owner.get(self._owner.get(uuid)))
        for uuid in by_table["Port"]:
            touched.add(self._owner.get(uuid))
        for uuid in dirty_bridges:
            self._put_bridge(idl, uuid)
        self._tick += 1
        for uuid in touched:
            name = self._names["Bridge"].get(uuid)
            if name is not None:
                self.result["changed_at"][name] = self._tick
        if by_table["Open_vSwitch"]:
            self.result["system"] = {}
            for row in idl.tables["Open_vSwitch"].rows.values():
                self.result["system"] = {"external_ids": _col(row, "external_ids")}

    def _put(self, table, uuid, plain, by_name):
        """Store (or, *plain* None, drop) one row; keep the by-name map in step."""
        rows, names = self._rows[table], self._names[table]
        old = names.get(uuid)
        if old is not None and by_name is not None and by_name.get(old) is rows.get(uuid):
            del by_name[old]
        if plain is None:
            rows.pop(uuid, None)
            self._owner.pop(uuid, None)
            return
        rows[uuid] = plain
        names[uuid] = plain["name"]
        if by_name is not None:
            by_name[plain["name"]] = plain

    def _put_interface(self, idl, uuid):
        row = idl.tables["Interface"].rows.get(uuid)
        plain = None if row is None else {
            "name": _col(row, "name"), "type": _col(row, "type"),
            "options": _col(row, "options"), "external_ids": _col(row, "external_ids"),
            "ofport": _plain(_col(row, "ofport")), "error": _plain(_col(row, "error")),
            "mac_in_use": _plain(_col(row, "mac_in_use")),
            "link_state": _plain(_col(row, "link_state"))}
        self._put("Interface", uuid, plain, self.result["interfaces"])

    def _put_port(self, idl, uuid):
        # A new or removed port changes its bridge's `ports` column: the bridge is in the
        # same update (names are immutable in the schema).
        row = idl.tables["Port"].rows.get(uuid)
        plain = None if row is None else {
            "name": _col(row, "name"), "tag": _plain(_col(row, "tag")),
            "external_ids": _col(row, "external_ids"),
            "_interfaces": _uuids(row, "interfaces")}
        if plain is not None:
            plain["interfaces"] = sorted(self._names["Interface"][i]
                                         for i in plain["_interfaces"]
                                         if i in self._rows["Interface"])
            self._owner.update((i, uuid) for i in plain["_interfaces"])
        self._put("Port", uuid, plain, self.result["ports"])

    def _put_controller(self, idl, uuid):
        """Returns whether an existing controller's target or inactivity probe changed."""
        row = idl.tables["Controller"].rows.get(uuid)
        before = self._rows["Controller"].get(uuid)
        plain = None if row is None else {
            "name": _col(row, "target"),
            "options": {c: _plain(_col(row, c)) for c in CONTROLLER_OPTIONS}}
        self._put("Controller", uuid, plain, None)
        return plain is not None and before is not None and before != plain

    def _put_bridge(self, idl, uuid):
        row = idl.tables["Bridge"].rows.get(uuid)
        plain = None
        if row is not None:
            plain = {
                "name": _col(row, "name"), "external_ids": _col(row, "external_ids"),
                "fail_mode": _plain(_col(row, "fail_mode")),
                "protocols": list(_col(row, "protocols")),
                "other_config": _col(row, "other_config"),
                "datapath_type": _col(row, "datapath_type"),
                "_ports": _uuids(row, "ports"), "_controller": _uuids(row, "controller")}
            plain["ports"] = sorted(self._names["Port"][p] for p in plain["_ports"]
                                    if p in self._rows["Port"])
            self._owner.update((p, uuid) for p in plain["_ports"])
            ctls = sorted((self._rows["Controller"][c] for c in plain["_controller"]
                           if c in self._rows["Controller"]), key=lambda c: c["name"])
            plain["controller"] = [c["name"] for c in ctls]
            plain["controller_options"] = [c["options"] for c in ctls]
        self._put("Bridge", uuid, plain, self.result["bridges"])
