"""python -m tenantnet.cli ... is the `tenantnet` command."""

import sys

from tenantnet.cli.main import main

sys.exit(main())
