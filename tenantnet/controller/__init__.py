"""The controller process: settings, the os-ken runtime and `ryu-manager`, the core that
realises placements, the HTTP API and its client, and a tenant's own core.

The os-ken app itself is tenantnet.app (the name `ryu-manager tenantnet.app` loads)."""
