"""Figures of the benches (matplotlib, no display): placement latency against the number
of VMs already placed (`tenantnet bench placement --levels ... --plot FILE`)."""

import csv
import os

from tenantnet.errors import TenantnetError


def placement_curve(details, path):
    """Draw tenantnet's p50 and p95, the raw tools' p50 of a placement on existing bridges
    and Open vSwitch's floor (a commit that only makes ovs-vswitchd reconfigure) against
    the number of existing VMs (*details*: bench.placement.run's second
    value) into the PNG *path*, and write the figures beside it (same name, `.csv`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    levels = sorted(details["levels"])
    if not levels:
        raise TenantnetError("bench placement: nothing measured to plot")
    rows = [details["levels"][lv] for lv in levels]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(levels, [r["p50_ms"] for r in rows], "o-", label="tenantnet p50")
    ax.plot(levels, [r["p95_ms"] for r in rows], "o:", label="tenantnet p95", alpha=0.6)
    ax.plot(levels, [r["raw_p50_ms"] for r in rows], "s--",
            label="ovs-vsctl + ovs-ofctl p50")
    ax.plot(levels, [r["floor_p50_ms"] for r in rows], "^-.", color="grey",
            label="OVS floor p50 (reconfiguration alone)")
    ax.set_xlabel("VMs already placed on the node")
    ax.set_ylabel("placement on existing bridges (ms)")
    ax.set_title(f"{details['vms']} placements per point, one userspace OVS node")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fig.savefig(path, dpi=120)
        with open(os.path.splitext(path)[0] + ".csv", "w", newline="") as out:
            table = csv.writer(out)
            table.writerow(["existing_vms", "p50_ms", "p95_ms", "raw_p50_ms", "floor_p50_ms"])
            for level, row in zip(levels, rows):
                table.writerow([level, row["p50_ms"], row["p95_ms"], row["raw_p50_ms"],
                                row["floor_p50_ms"]])
    except OSError as exc:
        raise TenantnetError(f"bench placement: cannot write the plot {path}: "
                             f"{exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
