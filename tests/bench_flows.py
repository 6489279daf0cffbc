"""Flow programming speed, tenantnet against ovs-ofctl: a thin caller of
`tenantnet bench flows` (tenantnet.bench.flows), kept for old habits.

    sudo .venv/bin/python tests/bench_flows.py [N]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tenantnet.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "flows", "--flows", sys.argv[1] if len(sys.argv) > 1 else "10000"]))
