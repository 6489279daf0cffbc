"""The results directory of one experiment run: JSON and CSV files side by side.

Shared by every part of the experiment (reachability, bandwidth, plots, report)::

    rd = ResultsDir("results/quick-20240101-120000")
    rd.write_json("meta.json", {...})          # ".json" may be left out
    rd.write_csv("reachability.csv", rows)     # rows: list of dicts
    rows = rd.read_csv("reachability.csv")     # list of dicts, values typed back
    rd.path("fig_reachability.png")            # absolute path of a file in the directory

CSV conventions (so that a CSV and its JSON twin read back alike):

- columns are in a stable order: *columns* if given, else the keys of the first row in
  their order, followed by keys first seen in later rows (in the order they appear);
- None is written as an empty cell, booleans as ``true``/``false``, lists and dicts as
  compact JSON, floats with ``repr`` (no rounding);
- ``read_csv`` turns cells back into None, bool, int, float or (for JSON-looking cells
  starting with ``[`` or ``{``) lists/dicts; everything else stays a string. Pass
  ``typed=False`` to get the raw strings.

Writes are atomic (temporary file + rename), so a crash never leaves half a file.
"""

import csv
import io
import json
import math
import os

from tenantnet.errors import TenantnetError


class ResultsError(TenantnetError):
    """A results directory or file that cannot be read or written."""


def _with_ext(name, ext):
    return name if os.path.splitext(name)[1] else name + ext


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=isinstance(value, dict))
    return str(value)


def _typed(text):
    if text == "":
        return None
    low = text.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def columns_of(rows, columns=None):
    """The stable column order for *rows* (see the module docstring)."""
    cols = list(columns or [])
    seen = set(cols)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                cols.append(key)
    return cols


def _json_default(obj):
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    return str(obj)


class ResultsDir:
    def __init__(self, path, create=True):
        self.root = os.path.abspath(path)
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise ResultsError(f"{self.root}: cannot create the results directory "
                                   f"({exc.strerror})") from None
        elif not os.path.isdir(self.root):
            raise ResultsError(f"{self.root}: no such results directory")

    def __repr__(self):
        return f"ResultsDir({self.root!r})"

    def path(self, name):
        """Absolute path of *name* inside the directory (subdirectories are created)."""
        full = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def exists(self, name):
        return os.path.exists(os.path.join(self.root, name))

    def _atomic_write(self, name, text):
        full = self.path(name)
        tmp = full + ".tmp"
        try:
            with open(tmp, "w", newline="") as fh:
                fh.write(text)
            os.replace(tmp, full)
        except OSError as exc:
            raise ResultsError(f"{full}: cannot write ({exc.strerror})") from None
        return full

    # -- JSON ----------------------------------------------------------------------
    def write_json(self, name, obj):
        name = _with_ext(name, ".json")
        text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
        return self._atomic_write(name, text)

    def read_json(self, name, default=...):
        """The parsed file; *default* (when given) if the file does not exist."""
        full = os.path.join(self.root, _with_ext(name, ".json"))
        try:
            with open(full) as fh:
                return json.load(fh)
        except FileNotFoundError:
            if default is not ...:
                return default
            raise ResultsError(f"{full}: missing") from None
        except ValueError as exc:
            raise ResultsError(f"{full}: not valid JSON ({exc})") from None
        except OSError as exc:
            raise ResultsError(f"{full}: cannot read ({exc.strerror})") from None

    def meta(self):
        """meta.json as a dict: {} when it is missing or not a JSON object."""
        meta = self.read_json("meta.json", default=None)
        return meta if isinstance(meta, dict) else {}

    # -- CSV -----------------------------------------------------------------------
    def write_csv(self, name, rows, columns=None):
        """Write *rows* (list of dicts). *columns* fixes the order of the first columns;
        with no rows and no columns an empty file is written."""
        name = _with_ext(name, ".csv")
        rows = list(rows)
        cols = columns_of(rows, columns)
        buf = io.StringIO()
        if cols:
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(cols)
            for row in rows:
                writer.writerow([_cell(row.get(c)) for c in cols])
        return self._atomic_write(name, buf.getvalue())

    def read_csv(self, name, typed=True, default=...):
        full = os.path.join(self.root, _with_ext(name, ".csv"))
        try:
            with open(full, newline="") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
        except FileNotFoundError:
            if default is not ...:
                return default
            raise ResultsError(f"{full}: missing") from None
        except (OSError, csv.Error) as exc:
            raise ResultsError(f"{full}: cannot read ({exc})") from None
        if typed:
            rows = [{k: _typed(v or "") for k, v in row.items()} for row in rows]
        return rows

    def write_table(self, name, rows, columns=None):
        """Write *rows* twice: <name>.json (a list of objects) and <name>.csv."""
        base = os.path.splitext(name)[0]
        rows = list(rows)
        self.write_json(base + ".json", rows)
        self.write_csv(base + ".csv", rows, columns)
