"""The `tenantnet` command: main (check-config, controller), lab and vm, node and cluster,
experiment; common holds what they share."""
